"""Evaluation protocols are named only where they are declared: their modules in engine/evaluation/.

Walks the AST of every module of the package outside ``engine/evaluation/`` and of the console script
(``timm_selfcon_cli.py``), and fails on a string constant equal to a registered protocol name, except the (file, name)
pairs of the allow-list, each with its reason. The evaluation, the export, the card and the CLI ask the registry
(``engine/evaluation/registry.py``) or its light declaration (``engine/evaluation/names.py``) instead.
"""
from __future__ import annotations

import ast
from pathlib import Path

from timm_selfcon.engine.evaluation.registry import protocols

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "timm_selfcon"
CONSOLE_SCRIPT = ROOT / "timm_selfcon_cli.py"

ALLOWED: dict[tuple[str, str], str] = {
    # the augmentation pipeline of the linear probe's crops (random resized crop + flip), named after the protocol;
    # it stays in the one table both data paths and the recipes' validation read (augmentations.py imports nothing
    # of the package, by the layering contract), and the protocol refers to it (linear.AUGMENTATION)
    ("augmentations.py", "linear"): "augmentation pipeline name",
    # report.json's key holding the early-exit sweep (a key of EvalReport), read by the export's records and laid out
    # by the card: a report key, not the protocol
    ("hub/records.py", "early_exit"): "report.json key",
    ("hub/card.py", "early_exit"): "report.json key",
}


def protocol_name_constants(files: list[tuple[str, Path]], names: set[str]) -> list[tuple[str, int, str]]:
    """(file, line, name) of every string constant equal to a name, in the given (label, path) files."""
    found = []
    for label, path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append((label, node.lineno, node.value))
    return found


def outside_evaluation(package: Path) -> list[tuple[str, Path]]:
    """Every module of ``package`` outside ``engine/evaluation/``, labelled by its path relative to the package."""
    return [(path.relative_to(package).as_posix(), path) for path in sorted(package.rglob("*.py"))
            if not path.relative_to(package).as_posix().startswith("engine/evaluation/")]


def found_in_the_package() -> list[tuple[str, int, str]]:
    files = [*outside_evaluation(PACKAGE), (CONSOLE_SCRIPT.name, CONSOLE_SCRIPT)]
    return protocol_name_constants(files, set(protocols()))


def test_no_protocol_name_outside_engine_evaluation_except_the_allow_list() -> None:
    unexpected = [f"{file}:{line}: {name!r}" for file, line, name in found_in_the_package()
                  if (file, name) not in ALLOWED]
    assert not unexpected, ("protocol names outside timm_selfcon/engine/evaluation/ (ask the protocols' registry, or "
                            "engine/evaluation/names.py where torch must not be imported, or add a commented entry to "
                            "ALLOWED):\n" + "\n".join(unexpected))


def test_the_allow_list_has_no_stale_entries() -> None:
    found = {(file, name) for file, _, name in found_in_the_package()}
    assert set(ALLOWED) <= found, f"entries that no longer occur: {sorted(set(ALLOWED) - found)}"


def test_the_walker_finds_a_planted_name(tmp_path: Path) -> None:
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "export.py").write_text('if protocol == "knn":\n    pass\nx = "knn_like"\n')
    (tmp_path / "engine" / "evaluation").mkdir(parents=True)
    (tmp_path / "engine" / "evaluation" / "knn.py").write_text('NAME = "knn"\n')
    assert protocol_name_constants(outside_evaluation(tmp_path), {"knn"}) == [("hub/export.py", 1, "knn")]
