"""The ``timm-selfcon`` console script: argument parsing that answers ``--help`` and ``--version`` at once.

A module of its own, outside the ``timm_selfcon`` package, because importing the package registers its models with
timm and so imports torch (seconds). Only a sub-command that does work imports ``timm_selfcon.cli``, whose
functions of the same names do the job. ``python -m timm_selfcon.cli`` takes the same arguments.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DESCRIPTION = "timm-selfcon: SelfCon and MixCo as timm models, trained with Accelerate, shared on the Hugging Face Hub."


def _package_dir() -> Path:
    spec = importlib.util.find_spec("timm_selfcon")  # finds the package without importing it
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("timm_selfcon is not installed")
    return Path(spec.origin).parent


def package_version() -> str:
    """``timm_selfcon.__version__``, read from the package's source (importing it would import torch)."""
    match = re.search(r'^__version__ = "([^"]+)"', (_package_dir() / "__init__.py").read_text(), re.M)
    return match.group(1) if match else "unknown"


def config_keys_help(module: str, class_name: str) -> str:
    """``key: type = default`` of every field of a config dataclass, read from its source without importing it."""
    tree = ast.parse(source := (_package_dir() / module).read_text())
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name)
    lines = []
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            default = ast.get_source_segment(source, node.value) if node.value is not None else None
            if isinstance(node.value, ast.Name):  # a constant imported from another module: its value
                default = imported_constant(tree, module, node.value.id) or default
            default = re.sub(r"^[fF]ield\(default_factory=(\w+)\)$", r"\1()", default or "")
            lines.append(f"  {node.target.id}: {ast.get_source_segment(source, node.annotation)}"
                         + (f" = {default}" if default else ""))
    return "keys (key=value; values are YAML):\n" + "\n".join(lines)


def imported_constant(tree: ast.Module, module: str, name: str) -> str | None:
    """The source of the literal that ``module`` (its syntax ``tree``) imports as ``name`` from a module of the
    package (``from .evaluation.names import DEFAULT_PROTOCOL``), or None."""
    for node in tree.body:
        if not (isinstance(node, ast.ImportFrom) and node.level):
            continue
        for alias in node.names:
            if (alias.asname or alias.name) == name:
                folder = Path(module).parent.joinpath(*[".."] * (node.level - 1))
                path = _package_dir() / folder / Path(*(node.module or "").split(".")).with_suffix(".py")
                value = module_constant(path, alias.name)
                return None if value is None else json.dumps(value)
    return None


def module_constant(path: Path, name: str) -> Any:
    """The literal value assigned to ``name`` at the top of the module at ``path`` (read, not imported), or None."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def protocol_names(name: str) -> Any:
    """A constant of ``engine/evaluation/names.py`` (``PROTOCOL_NAMES``, ``ALL``, ...), read from its source: asking
    the protocols' registry would import torch."""
    return module_constant(_package_dir() / "engine" / "evaluation" / "names.py", name)


def build_parser() -> argparse.ArgumentParser:
    protocols = "|".join((*protocol_names("PROTOCOL_NAMES"), protocol_names("ALL")))
    classifier_protocols = protocol_names("CLASSIFIER_PROTOCOL_NAMES")
    parser = argparse.ArgumentParser(prog="timm-selfcon", description=DESCRIPTION)
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build a multi-exit model and run it on shipped CIFAR-10 test images")
    demo.add_argument("--model", default="selfcon_resnet18_cifar")
    demo.add_argument("--num-images", type=int, default=8)
    demo.add_argument("model_kwargs", nargs="*", help="model kwargs as key=value, e.g. sub_network=same")
    demo.set_defaults(handler="_demo")
    train = sub.add_parser("train", help="train from a YAML recipe through Accelerate")
    train.add_argument("recipe", help="path to a recipe YAML (see recipes/README.md)")
    train.add_argument("overrides", nargs="*", help="recipe keys as key=value, e.g. epochs=10 lr=0.1 (every key: "
                       "recipes/README.md)")
    train.set_defaults(handler="_train")
    quick = sub.add_parser("quickstart", help="SelfCon on the shipped CIFAR-10 subset, then a probe vs random init")
    quick.add_argument("overrides", nargs="*", help="recipe keys as key=value")
    quick.set_defaults(handler="_train")
    evaluate = sub.add_parser("eval", help="linear probe / kNN / per-exit, ensemble and early-exit accuracy",
                              epilog=config_keys_help("engine/evaluate.py", "EvalConfig"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("source", help="checkpoint dir, training output_dir (its 'last'), or a timm model name")
    evaluate.add_argument("overrides", nargs="*", help=f"data=... protocol={protocols} ...")
    evaluate.set_defaults(handler="_eval")
    fine = sub.add_parser("finetune", help="fine-tune the encoder (exits removed) on a datasets dataset",
                          epilog=config_keys_help("engine/finetune.py", "FinetuneConfig"),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    fine.add_argument("source", help="checkpoint dir, training output_dir, or a timm model name")
    fine.add_argument("overrides", nargs="*", help="data=... epochs=... lr=... layer_decay=0.75 ...")
    fine.set_defaults(handler="_finetune")
    models = sub.add_parser("models", help="list the registered models")
    models.set_defaults(handler="_models")
    exp = sub.add_parser("export", help="write a timm Hub folder (config.json, model.safetensors, model card)")
    exp.add_argument("checkpoint", help="training checkpoint dir, training output_dir (its 'last'), or finetune output")
    exp.add_argument("out_dir", help="folder to write")
    exp.add_argument("--protocol", default=None, help="eval protocol whose classifiers to include: "
                     f"{', '.join(classifier_protocols[:-1])} or {classifier_protocols[-1]} (default: the first found; "
                     "none found = encoder only)")
    exp.add_argument("--encoder-only", action="store_true", help="no classifiers (num_classes=0)")
    exp.add_argument("--no-exits", action="store_true", help="remove the exits and their classifiers")
    exp.add_argument("--eval-dir", default=None, help="folder holding <protocol>/ evaluations (default <run>/eval)")
    exp.add_argument("--repo-id", default=None, help="ORG/NAME for the card's usage snippet")
    exp.add_argument("--license", default="apache-2.0")
    exp.add_argument("--base-model", default=None, help="Hub id of the model this one was fine-tuned from")
    exp.add_argument("--overwrite", action="store_true", help="replace an earlier export in out_dir")
    exp.set_defaults(handler="_export")
    push = sub.add_parser("push", help="upload an export folder to the Hugging Face Hub (HfApi)")
    push.add_argument("out_dir", help="a folder written by `timm-selfcon export`")
    push.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub")
    push.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the `hf auth login` token)")
    push.add_argument("--private", action="store_true")
    push.add_argument("--revision", default=None)
    push.add_argument("--create-pr", action="store_true")
    push.add_argument("--commit-message", default=None)
    push.add_argument("--dry-run", action="store_true", help="print the files and the card; no network")
    push.set_defaults(handler="_push")
    conv = sub.add_parser("convert-official", help="convert an official SelfCon checkpoint to this package's format")
    conv.add_argument("checkpoint", help="official .pth file ({'opt', 'model', ...})")
    conv.add_argument("out_dir", help="training output_dir to write (config.yaml, ckpt-0/, last)")
    conv.add_argument("--model", default=None, help="this package's model name (default: from the official options)")
    conv.add_argument("--data", default=None, help="recipe data (default: from the official --dataset)")
    conv.set_defaults(handler="_convert_official")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the sub-command (``timm_selfcon.cli``); a user's bad input exits with 2 and one line."""
    args = build_parser().parse_args(argv)
    from timm_selfcon import cli
    from timm_selfcon.errors import UserInputError

    try:
        with cli.one_line_warnings(args.command):
            return getattr(cli, args.handler)(args)
    except UserInputError as err:  # the user's input, answered in one line; anything else is a bug: traceback
        print(f"timm-selfcon {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # a non-finite loss: the message names the step; `last` is still good
        print(f"timm-selfcon {args.command}: stopped: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
