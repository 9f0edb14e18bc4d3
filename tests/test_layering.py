"""The package's layering contract: which of its parts may import which.

Every module's syntax tree is read (no import is executed), and every import counts: at the top, inside functions,
relative (``from ..data import X``) and absolute (``import timm_selfcon.data``). A failure lists each forbidden import
as ``file:line -> module``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "timm_selfcon"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE
ANYTHING = "<anything of timm_selfcon>"

# Modules (dotted, below timm_selfcon; a name covers its submodules) -> what they must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "models":          ("data", "engine", "hub", "methods", "config", "cli"),
    "losses":          ("data", "engine", "hub", "methods", "config", "cli"),
    "methods":         ("engine", "hub", "data", "config", "cli"),
    "data":            ("engine", "hub", "methods", "models", "config", "cli"),
    "engine":          ("hub", "cli"),
    "engine.evaluate": ("engine.train",),  # evaluating a checkpoint does not need the trainer
    # config validates a run's method and model through their own declarations (methods, models)
    "config":          ("engine", "hub", "data"),
    "constants":       (ANYTHING,),
    "augmentations":   (ANYTHING,),
    "errors":          (ANYTHING,),
    "fileio":          (ANYTHING,),
    "precision":       (ANYTHING,),
}


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    """``timm_selfcon/models/exits.py`` -> ``models.exits``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(package_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(name: str, package_dir: Path = PACKAGE_DIR) -> bool:
    return (package_dir.joinpath(*name.split(".")) / "__init__.py").is_file() if name else True


def is_module(name: str, package_dir: Path = PACKAGE_DIR) -> bool:
    return is_package(name, package_dir) or package_dir.joinpath(*name.split(".")).with_suffix(".py").is_file()


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def package_imports(path: Path, package_dir: Path = PACKAGE_DIR) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of the package in ``path``; ``module`` is dotted below ``timm_selfcon``
    (``""``: the package itself). ``from X import name`` counts as importing ``X.name`` when that is a module."""
    current = module_name(path, package_dir)
    package = current if path.name == "__init__.py" else current.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: ``from .`` is this package, each further dot one package up
                parts = package.split(".") if package else []
                base = ".".join(parts[:len(parts) - (node.level - 1)])
                source = ".".join(p for p in (PACKAGE, base, node.module or "") if p)
            else:
                source = node.module or ""
            below = source.partition(".")[2]
            targets = [f"{source}.{alias.name}"
                       if within(source, PACKAGE) and is_module(f"{below}.{alias.name}".lstrip("."), package_dir)
                       else source for alias in node.names]
        else:
            continue
        for target in targets:
            if within(target, PACKAGE):
                found.append((node.lineno, target.partition(".")[2]))
    return sorted(set(found))


def is_forbidden(imported: str, rules: tuple[str, ...]) -> bool:
    return any(rule == ANYTHING or (imported and within(imported, rule)) for rule in rules)


def violations(layer: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """``file:line -> module`` of every import in ``layer`` that the contract forbids (``package_dir``: the package's
    folder, another checkout's for ``benchmarks/tools/architecture_metrics.py``)."""
    rules = FORBIDDEN[layer]
    out = []
    for path in sorted(package_dir.rglob("*.py")):
        if not within(module_name(path, package_dir), layer):
            continue
        for line, imported in package_imports(path, package_dir):
            if is_forbidden(imported, rules):
                shown = f"{PACKAGE}.{imported}" if imported else PACKAGE
                out.append(f"{path.relative_to(package_dir.parent)}:{line} -> {shown}")
    return out


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_layer_imports_nothing_forbidden(layer: str) -> None:
    found = violations(layer)
    rules = ", ".join(rule if rule == ANYTHING else f"{PACKAGE}.{rule}" for rule in FORBIDDEN[layer])
    assert not found, f"{PACKAGE}.{layer} must not import {rules}; forbidden imports:\n  " + "\n  ".join(found)


def test_every_layer_named_in_the_contract_exists() -> None:
    missing = [name for name in FORBIDDEN if not is_module(name)]
    missing += [rule for rules in FORBIDDEN.values() for rule in rules if rule != ANYTHING and not is_module(rule)]
    assert not missing, f"the contract names modules the package does not have: {missing}"


def test_the_import_scan_sees_relative_absolute_and_nested_imports(tmp_path: Path) -> None:
    root = tmp_path / PACKAGE
    (root / "models").mkdir(parents=True)
    (root / "data").mkdir()
    for init in (root / "__init__.py", root / "models" / "__init__.py", root / "data" / "__init__.py"):
        init.write_text("")
    (root / "data" / "transforms.py").write_text("")
    (root / "models" / "net.py").write_text(
        "import os\n"
        "from ..data.transforms import X\n"
        "from .. import data\n"
        "import timm_selfcon.data\n"
        "def f():\n"
        "    from timm_selfcon.data import transforms\n"
        "from . import other\n"
    )
    assert package_imports(root / "models" / "net.py", root) == [
        (2, "data.transforms"), (3, "data"), (4, "data"), (6, "data.transforms"), (7, "models"),
    ]
    assert violations("models", root) == [f"{PACKAGE}/models/net.py:{line} -> {PACKAGE}.{name}"
                                    for line, name in [(2, "data.transforms"), (3, "data"), (4, "data"),
                                                       (6, "data.transforms")]]
