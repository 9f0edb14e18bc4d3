"""benchmarks/tools/architecture_metrics.py's measures on a constructed package with planted findings."""
from pathlib import Path

from benchmarks.tools import architecture_metrics as metrics

ROOT = Path(__file__).resolve().parents[3]


def planted_package(root: Path) -> Path:
    """A package with one forbidden import (models -> data), one method name outside methods/, a 7-line function,
    two method options among TrainConfig's fields and a protocol name outside engine/evaluation/."""
    package = root / "timm_selfcon"
    for folder in ("models", "data", "engine", "methods"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "data" / "stats.py").write_text("MEAN = 0.5\n")
    (package / "models" / "net.py").write_text("from ..data.stats import MEAN\n\n\ndef short():\n    return MEAN\n")
    (package / "engine" / "loop.py").write_text(
        "def long(method):\n" + "    x = 1\n" * 4 + "    if method == 'selfcon':\n        return x\n")
    (package / "methods" / "own.py").write_text("name = 'selfcon'\n")  # inside methods/: allowed
    (package / "config.py").write_text("class TrainConfig:\n    lr: float = 0.1\n    queue_size: int = 8\n"
                                       "    temperature: float = 0.1\nPROTOCOL = 'knn'\n")
    return package


def test_finds_the_planted_longest_function_import_and_name(tmp_path: Path) -> None:
    package = planted_package(tmp_path)
    found = metrics.measure(package, metrics.load_test_module("test_layering"),
                            metrics.load_test_module("test_method_names"))
    assert found["longest_function"] == "engine/loop.py:long" and found["longest_function_lines"] == 7
    assert found["longest_file"] == "engine/loop.py" and found["longest_file_lines"] == 7
    assert found["files_over_limit"] == []
    assert found["method_name_places"] == ["engine/loop.py:6 selfcon"]
    assert found["layering_forbidden_imports"] == ["timm_selfcon/models/net.py:1 -> timm_selfcon.data.stats"]
    assert found["train_config_method_fields"] == ["queue_size", "temperature"]
    assert found["protocol_name_places"] == ["config.py:5 knn"]


def test_the_working_tree_copy_is_the_package_as_on_disk(tmp_path: Path) -> None:
    root = metrics.checkout("worktree", tmp_path)
    assert (root / "timm_selfcon" / "methods" / "registry.py").read_text() == \
        (ROOT / "timm_selfcon" / "methods" / "registry.py").read_text()
    assert not list(root.rglob("__pycache__"))
