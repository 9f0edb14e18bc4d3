"""``timm-selfcon`` command line: each sub-command parses its arguments and calls the Python function of the same job."""
from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import UserInputError

# recipes/quickstart.yaml in the repository; timm_selfcon/quickstart.yaml links to it and wheels ship a copy
QUICKSTART_RECIPE = Path(__file__).resolve().parent / "quickstart.yaml"


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed as Python literals when they are (``3``, ``(2,)``, ``True``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserInputError(f"expected key=value, got {item!r}")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def _demo(args: argparse.Namespace) -> int:
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

    from .engine.evaluate import EvalConfig, evaluate

    report = evaluate(args.source, EvalConfig(**_typed_overrides(EvalConfig, args.overrides)))
    print(json.dumps({k: report[k] for k in ("protocol", "results", "early_exit") if k in report} if "protocol" in report
                     else {p: r.get("results") for p, r in report.items()}, indent=2))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from .engine.finetune import FinetuneConfig, finetune

    finetune(args.source, FinetuneConfig(**_typed_overrides(FinetuneConfig, args.overrides)))
    return 0


def _export(args: argparse.Namespace) -> int:
    from .hub import export

    result = export(args.checkpoint, args.out_dir, protocol=args.protocol, classifiers=not args.encoder_only,
                    exits=not args.no_exits, eval_dir=args.eval_dir, repo_id=args.repo_id, license=args.license,
                    base_model=args.base_model)
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


def _typed_overrides(config_cls: type, items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` items for a dataclass config; an unknown key names the nearest valid one."""
    import dataclasses
    import difflib

    from .config import parse_override

    valid = [f.name for f in dataclasses.fields(config_cls)]
    out = {}
    for item in items:
        key, value = parse_override(item)
        if key not in valid:
            nearest = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {nearest[0]!r}?" if nearest else f"; valid keys: {', '.join(valid)}"
            raise UserInputError(f"unknown key {key!r}{hint}")
        out[key] = value
    return out


def _models(args: argparse.Namespace) -> int:
    import timm

    import timm_selfcon  # noqa: F401  (registers the models)

    for name in sorted(set(timm.list_models("*selfcon*") + timm.list_models("*mixco*"))):
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="timm-selfcon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build a multi-exit model and run it on shipped CIFAR-10 test images")
    demo.add_argument("--model", default="selfcon_resnet18_cifar")
    demo.add_argument("--num-images", type=int, default=8)
    demo.add_argument("model_kwargs", nargs="*", help="model kwargs as key=value, e.g. sub_network=same")
    demo.set_defaults(func=_demo)
    train = sub.add_parser("train", help="train from a YAML recipe through Accelerate")
    train.add_argument("recipe", help="path to a recipe YAML (see recipes/README.md)")
    train.add_argument("overrides", nargs="*", help="recipe keys as key=value, e.g. epochs=10 lr=0.1")
    train.set_defaults(func=_train)
    quick = sub.add_parser("quickstart", help="SelfCon on the shipped CIFAR-10 subset, then a probe vs random init")
    quick.add_argument("overrides", nargs="*", help="recipe keys as key=value")
    quick.set_defaults(func=_train)
    evaluate = sub.add_parser("eval", help="linear probe / kNN / per-exit, ensemble and early-exit accuracy")
    evaluate.add_argument("source", help="checkpoint dir, training output_dir (its 'last'), or a timm model name")
    evaluate.add_argument("overrides", nargs="*", help="data=... protocol=linear_fast|linear|knn|early_exit|all ...")
    evaluate.set_defaults(func=_eval)
    fine = sub.add_parser("finetune", help="fine-tune the encoder (exits removed) on a datasets dataset")
    fine.add_argument("source", help="checkpoint dir, training output_dir, or a timm model name")
    fine.add_argument("overrides", nargs="*", help="data=... epochs=... lr=... layer_decay=0.75 ...")
    fine.set_defaults(func=_finetune)
    models = sub.add_parser("models", help="list the registered models")
    models.set_defaults(func=_models)
    exp = sub.add_parser("export", help="write a timm Hub folder (config.json, model.safetensors, model card)")
    exp.add_argument("checkpoint", help="training checkpoint dir, training output_dir (its 'last'), or finetune output")
    exp.add_argument("out_dir", help="folder to write")
    exp.add_argument("--protocol", default=None, help="eval protocol whose classifiers to include: linear, "
                     "early_exit or linear_fast (default: the first found; none found = encoder only)")
    exp.add_argument("--encoder-only", action="store_true", help="no classifiers (num_classes=0)")
    exp.add_argument("--no-exits", action="store_true", help="remove the exits and their classifiers")
    exp.add_argument("--eval-dir", default=None, help="folder holding <protocol>/ evaluations (default <run>/eval)")
    exp.add_argument("--repo-id", default=None, help="ORG/NAME for the card's usage snippet")
    exp.add_argument("--license", default="apache-2.0")
    exp.add_argument("--base-model", default=None, help="Hub id of the model this one was fine-tuned from")
    exp.set_defaults(func=_export)
    push = sub.add_parser("push", help="upload an export folder to the Hugging Face Hub (HfApi)")
    push.add_argument("out_dir", help="a folder written by `timm-selfcon export`")
    push.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub")
    push.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the `hf auth login` token)")
    push.add_argument("--private", action="store_true")
    push.add_argument("--revision", default=None)
    push.add_argument("--create-pr", action="store_true")
    push.add_argument("--commit-message", default=None)
    push.add_argument("--dry-run", action="store_true", help="print the files and the card; no network")
    push.set_defaults(func=_push)
    conv = sub.add_parser("convert-official", help="convert an official SelfCon checkpoint to this package's format")
    conv.add_argument("checkpoint", help="official .pth file ({'opt', 'model', ...})")
    conv.add_argument("out_dir", help="training output_dir to write (config.yaml, ckpt-0/, last)")
    conv.add_argument("--model", default=None, help="this package's model name (default: from the official options)")
    conv.add_argument("--data", default=None, help="recipe data (default: from the official --dataset)")
    conv.set_defaults(func=_convert_official)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import UserInputError

    try:
        return args.func(args)
    except UserInputError as err:  # the user's input, answered in one line; anything else is a bug: traceback
        print(f"timm-selfcon {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # a non-finite loss: the message names the step; `last` is still good
        print(f"timm-selfcon {args.command}: stopped: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
