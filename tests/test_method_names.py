"""The engine, config, data and hub know no method by name: a method's name lives in its class (methods/).

Walks the AST of every module of the package outside ``methods/`` and fails on a string constant equal to a
registered method name, except the (file, name) pairs of the allow-list, each with its reason.
"""
from __future__ import annotations

import ast
from pathlib import Path

from timm_selfcon.methods import METHODS

PACKAGE = Path(__file__).resolve().parents[1] / "timm_selfcon"

ALLOWED: dict[tuple[str, str], str] = {
    # augmentation pipelines named after the method that introduced them (recipes write `augmentation: supcon`),
    # declared once in the table both data paths read
    ("augmentations.py", "supcon"): "augmentation pipeline name",
    ("augmentations.py", "ce"): "augmentation pipeline name",
    ("augmentations.py", "simclr"): "augmentation pipeline name",
    ("engine/finetune.py", "ce"): "fine-tuning's default augmentation pipeline",
    # the recipe default (a value, like timm's default model name in its scripts)
    ("config.py", "selfcon"): "TrainConfig.method's default",
    # the Hub tag of the package's family ("selfcon"), not the method
    ("hub/card.py", "selfcon"): "model-card tag",
    # the official checkpoint converter maps the official code's --method/--multiview flags to our names
    ("hub/convert.py", "selfcon"): "official flag mapping",
    ("hub/convert.py", "selfcon_m"): "official flag mapping",
    ("hub/convert.py", "supcon"): "official flag mapping",
    ("hub/convert.py", "supcon_s"): "official flag mapping",
    ("hub/convert.py", "simclr"): "official flag mapping",
}


def method_name_constants(package: Path, names: set[str]) -> list[tuple[str, int, str]]:
    """(file relative to the package, line, name) of every string constant equal to a name, outside methods/."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith("methods/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append((relative, node.lineno, node.value))
    return found


def test_no_method_name_outside_methods_except_the_allow_list() -> None:
    found = method_name_constants(PACKAGE, set(METHODS))
    unexpected = [f"{file}:{line}: {name!r}" for file, line, name in found if (file, name) not in ALLOWED]
    assert not unexpected, ("method names outside timm_selfcon/methods/ (ask the method's class instead, or add a "
                            "commented entry to ALLOWED):\n" + "\n".join(unexpected))


def test_the_allow_list_has_no_stale_entries() -> None:
    found = {(file, name) for file, _, name in method_name_constants(PACKAGE, set(METHODS))}
    assert set(ALLOWED) <= found, f"entries that no longer occur: {sorted(set(ALLOWED) - found)}"


def test_the_walker_finds_a_planted_name(tmp_path: Path) -> None:
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "train.py").write_text('if method == "selfcon":\n    pass\nx = "selfconish"\n')
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "own.py").write_text('name = "selfcon"\n')
    assert method_name_constants(tmp_path, {"selfcon"}) == [("engine/train.py", 1, "selfcon")]
