"""benchmarks/'s layout: one folder per purpose, each script importable as ``benchmarks.<folder>.<script>`` and listed
in benchmarks/README.md with its command, and no file of the repository naming a benchmark path that does not exist."""
import ast
import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
SHARED = {"__init__.py", "harness.py", "README.md"}  # what stays at benchmarks/'s top level
SCRIPTS = sorted(path for path in BENCHMARKS.glob("*/*") if path.suffix in (".py", ".sh") and path.name != "__init__.py")
#: a path to a benchmark script or test (``benchmarks/parity/parity_official.py``), or a ``-m`` command's module
PATH_PATTERN = re.compile(r"(?<![\w./-])((?:tests/)?benchmarks/[\w/.-]*?\.(?:py|sh))\b")
MODULE_PATTERN = re.compile(r"-m (benchmarks(?:\.\w+)+)")


def command(script: Path) -> str:
    """The command a user types from the repository root."""
    if script.suffix == ".sh":
        return f"bash {script.relative_to(ROOT)}"
    return f"python -m {'.'.join(script.relative_to(ROOT).with_suffix('').parts)}"


def test_only_the_shared_harness_stays_at_the_top_and_every_folder_is_a_package() -> None:
    top = {path.name for path in BENCHMARKS.iterdir() if path.is_file()}
    assert top == SHARED
    folders = sorted(path for path in BENCHMARKS.iterdir() if path.is_dir() and path.name not in ("results", "__pycache__"))
    assert [folder.name for folder in folders] == ["device", "experiments", "parity", "report", "speed", "tools"]
    assert all((folder / "__init__.py").is_file() for folder in folders)


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.suffix == ".py"], ids=lambda s: s.stem)
def test_every_script_imports_as_a_module_of_the_package(script: Path) -> None:
    module = importlib.import_module(".".join(script.relative_to(ROOT).with_suffix("").parts))
    assert Path(module.__file__).resolve() == script.resolve()


def test_no_script_imports_another_by_its_bare_name() -> None:
    """``from rank_methods import ...`` worked only while the scripts sat side by side in one folder on the path; an
    import inside a function fails only when that function runs, so every import is read, at any depth."""
    bare = {script.stem for script in SCRIPTS} | {"harness"}
    found = []
    for script in [*SCRIPTS, *BENCHMARKS.glob("*.py")]:
        if script.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(script.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{script.relative_to(ROOT)}:{node.lineno} {name}" for name in names if name.split(".")[0] in bare]
    assert not found, f"import them as benchmarks.<folder>.<script>: {found}"


def test_the_readme_lists_every_script_with_its_command() -> None:
    readme = (BENCHMARKS / "README.md").read_text()
    missing = [command(script) for script in SCRIPTS if f"`{command(script)}" not in readme]
    assert not missing, f"benchmarks/README.md does not list {missing}"


def test_every_benchmark_path_and_module_named_in_the_repository_exists() -> None:
    """Docs, recipes, the package, the scripts and the tests name benchmark scripts by path or ``-m`` module; after a
    move every one of them must follow (CHANGELOG.md describes past releases, so it keeps their paths)."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = [ROOT / name for name in tracked.split("\0") if name and name != "CHANGELOG.md"
             and not name.startswith("benchmarks/results/") and Path(name).suffix in (".py", ".md", ".sh", ".yaml")]
    stale = []
    for file in files:
        if not file.is_file():
            continue
        text = file.read_text()
        stale += [f"{file.relative_to(ROOT)}: {path}" for path in PATH_PATTERN.findall(text) if not (ROOT / path).is_file()]
        stale += [f"{file.relative_to(ROOT)}: -m {module}" for module in MODULE_PATTERN.findall(text)
                  if not (ROOT / Path(*module.split("."))).with_suffix(".py").is_file()]
    assert not stale, "benchmark paths that do not exist:\n" + "\n".join(stale)
