"""``timm-selfcon`` command line: each sub-command's handler calls the Python function of the same job.

The arguments are parsed by :mod:`timm_selfcon_cli` (outside the package, so ``--help`` and ``--version`` need no
torch); ``main`` and ``build_parser`` here are the same, for ``python -m timm_selfcon.cli`` and Python callers.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

# recipes/quickstart.yaml in the repository; timm_selfcon/quickstart.yaml links to it and wheels ship a copy
QUICKSTART_RECIPE = Path(__file__).resolve().parent / "quickstart.yaml"


@contextlib.contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Show each warning raised inside as one line: ``timm-selfcon COMMAND: warning: MESSAGE (Category at FILE:LINE)``.

    Python's own format names the line the warning is attributed to and echoes it, which for a warning about the
    run (an undecodable image, a launcher mismatch) is a line of this CLI or of the engine, not something the user
    wrote; the category and the package file that raised it are what to search for. Printed through tqdm, so a
    progress bar is redrawn below the line instead of being cut by it. The filters and the previous display are
    restored on exit.
    """
    with warnings.catch_warnings():
        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: object = None, line: str | None = None) -> None:
            from tqdm.auto import tqdm

            tqdm.write(f"timm-selfcon {command}: warning: {message} ({category.__name__} at "
                       f"{_short_origin(filename)}:{lineno})", file=file or sys.stderr)

        warnings.showwarning = show
        yield


def _short_origin(filename: str) -> str:
    """``.../timm_selfcon/engine/train.py`` -> ``timm_selfcon/engine/train.py``; ``.../site-packages/torch/x.py`` ->
    ``torch/x.py``; anything else unchanged."""
    path = Path(filename)
    package_root = Path(__file__).resolve().parent.parent
    try:
        return path.resolve().relative_to(package_root).as_posix()
    except (ValueError, OSError):
        pass
    parts = path.parts
    return Path(*parts[parts.index("site-packages") + 1:]).as_posix() if "site-packages" in parts else filename


def _demo(args: argparse.Namespace) -> int:
    from .config import parse_overrides
    from .demo import run_demo

    run_demo(args.model, num_images=args.num_images, **parse_overrides(args.model_kwargs))
    return 0


def _train(args: argparse.Namespace) -> int:
    """``train RECIPE`` and ``quickstart`` (which has no recipe argument: the shipped quickstart recipe)."""
    from .config import resolve_config
    from .engine.train import train

    train(resolve_config(getattr(args, "recipe", QUICKSTART_RECIPE), args.overrides))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from .config import resolve
    from .engine.evaluate import EvalConfig, evaluate
    from .engine.evaluation.report import SUMMARY_KEYS

    report = evaluate(args.source, resolve(EvalConfig, args.overrides))
    # which weights were evaluated comes first: a randomly initialised encoder says "random init"
    if "protocol" in report:
        summary = {k: report[k] for k in SUMMARY_KEYS if k in report}
    else:  # protocol=all: one report per protocol, all of the same weights
        summary = {"weights": next(iter(report.values())).get("weights"),
                   **{p: r.get("results") for p, r in report.items()}}
    print(json.dumps(summary, indent=2))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from .config import resolve
    from .engine.finetune import FinetuneConfig, finetune

    finetune(args.source, resolve(FinetuneConfig, args.overrides))
    return 0


def _export(args: argparse.Namespace) -> int:
    from .hub import export

    # export() warns about what it also returns among its notes, printed below: each is said once, as a note
    with warnings.catch_warnings(record=True) as caught:
        result = export(args.checkpoint, args.out_dir, protocol=args.protocol, classifiers=not args.encoder_only,
                        exits=not args.no_exits, eval_dir=args.eval_dir, repo_id=args.repo_id, license=args.license,
                        base_model=args.base_model, overwrite=args.overwrite)
    for warning in caught:
        if str(warning.message) not in result.notes:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    for note in result.notes:
        print(f"note: {note}")
    heads = "encoder only (num_classes=0)" if result.encoder_only else (
        f"{result.num_classes} classes, classifiers from eval/{result.classifiers_protocol}")
    print(f"exported {result.architecture} ({heads}; {'with' if result.with_exits else 'without'} exits) to "
          f"{result.out_dir}: {', '.join(result.files)}")
    print(f"suggested repository: ORG/{result.suggested_name}; next: timm-selfcon push {result.out_dir} "
          f"--repo-id ORG/{result.suggested_name}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from .hub import HubPushError, push

    try:
        result = push(args.out_dir, args.repo_id, token=args.token, private=args.private, revision=args.revision,
                      create_pr=args.create_pr, commit_message=args.commit_message, dry_run=args.dry_run)
    except HubPushError as err:
        print(f"timm-selfcon push: error: {err}", file=sys.stderr)
        return 2
    if not result.dry_run:
        print(f"pushed {', '.join(result.files)} to {result.url}" + (f" ({result.commit_url})" if result.commit_url
                                                                      else ""))
    return 0


def _convert_official(args: argparse.Namespace) -> int:
    from .hub import convert_official

    out = convert_official(args.checkpoint, args.out_dir, model=args.model, data=args.data)
    print(f"converted {args.checkpoint} to {out} (config.yaml, ckpt-0/, last); next: timm-selfcon eval {out} "
          f"protocol=linear, then timm-selfcon export {out} OUT_DIR")
    return 0


def _models(args: argparse.Namespace) -> int:
    import timm

    import timm_selfcon  # noqa: F401  (registers the models)

    for name in sorted(set(timm.list_models("*selfcon*") + timm.list_models("*mixco*"))):
        print(name)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``timm-selfcon`` command (argument parsing lives in :mod:`timm_selfcon_cli`, which imports no torch)."""
    from timm_selfcon_cli import main as launch

    return launch(argv)


def build_parser() -> argparse.ArgumentParser:
    from timm_selfcon_cli import build_parser as parser

    return parser()


if __name__ == "__main__":
    sys.exit(main())
