"""The package's structure, before and after a change, measured side by side in one run.

For each git revision (``--before``, default ``220491d``: the package before the architecture issue; ``--after``,
default the working tree) the package is read from its own copy and measured:

- the longest file and how many files exceed 500 lines;
- the longest function (``def`` line to last line, decorators excluded);
- how many string constants outside ``methods/`` equal a registered method name (today's registry's names for both
  revisions), the scan of ``tests/test_method_names.py``;
- the layering contract of ``tests/test_layering.py``, applied to that revision's imports (number of forbidden
  imports, each listed in the JSON);
- method-specific fields of ``TrainConfig`` (the 8 that issue "Architecture, second step" names, and any field
  named like an option of a registered method's constructor);
- string constants equal to an evaluation protocol name (``linear_fast``, ``linear``, ``knn``, ``early_exit``)
  outside ``engine/evaluation/``;
- ``duplicates`` pairs in the package (when the tool is installed);
- what ``import timm_selfcon`` adds to ``import timm`` in a fresh process (best of ``--repeats``, the two revisions
  interleaved), and whether it loads ``datasets`` or pyarrow.

Pause background work (SIGSTOP) while this runs: the import time is a timing.

    python -m benchmarks.tools.architecture_metrics [--before REV] [--after REV|worktree] [--out FILE]
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS, ROOT, environment, print_table, write_json

PACKAGE = "timm_selfcon"
SIZE_LIMIT = 500

IMPORT_PROBE = """
import json, sys, time
start = time.perf_counter()
import timm
timm_done = time.perf_counter()
import timm_selfcon
done = time.perf_counter()
print(json.dumps({"timm_s": timm_done - start, "added_s": done - timm_done,
                  "loads": sorted(m for m in ("datasets", "pyarrow") if m in sys.modules),
                  "package": timm_selfcon.__file__}))
"""


def load_test_module(name: str) -> Any:
    """``tests/<name>.py`` of this checkout: the contract and the name scan live with their tests."""
    spec = importlib.util.spec_from_file_location(f"_metrics_{name}", ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkout(revision: str, into: Path) -> Path:
    """The package of ``revision`` (``worktree``: as it is on disk) copied below ``into``; returns the copy's root."""
    root = into / revision.replace("/", "_")
    root.mkdir(parents=True)
    if revision == "worktree":
        shutil.copytree(ROOT / PACKAGE, root / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
        return root
    archive = subprocess.run(["git", "archive", revision, PACKAGE], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def size_metrics(package_dir: Path) -> dict[str, Any]:
    files = {path.relative_to(package_dir).as_posix(): len(path.read_text().splitlines())
             for path in sorted(package_dir.rglob("*.py"))}
    longest_file = max(files, key=files.get)
    functions = []
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = f"{path.relative_to(package_dir).as_posix()}:{node.name}"
                functions.append((node.end_lineno - node.lineno + 1, where))
    length, where = max(functions)
    return dict(files=len(files), longest_file=longest_file, longest_file_lines=files[longest_file],
                files_over_limit=sorted(f for f, n in files.items() if n > SIZE_LIMIT),
                longest_function=where, longest_function_lines=length)


#: TrainConfig's method-specific fields when the second architecture issue was filed
METHOD_FIELDS = {"temperature", "base_temperature", "projection_dim", "queue_size", "moco_momentum", "mix_temperature",
                 "mix_weight", "gather"}
PROTOCOLS = {"linear_fast", "linear", "knn", "early_exit"}


def method_option_names() -> set[str]:
    """:data:`METHOD_FIELDS` and every option of today's registered methods (their ``Options`` models)."""
    from timm_selfcon.methods import METHODS

    options = {name for cls in METHODS.values() for name in cls.Options.model_fields}
    return METHOD_FIELDS | (options - {"momentum"})  # TrainConfig.momentum: SGD's


def train_config_method_fields(package_dir: Path) -> list[str]:
    """Fields of ``class TrainConfig`` in ``config.py`` named like a method option."""
    config = package_dir / "config.py"
    if not config.is_file():
        return []
    options = method_option_names()
    for node in ast.walk(ast.parse(config.read_text())):
        if isinstance(node, ast.ClassDef) and node.name == "TrainConfig":
            return sorted(item.target.id for item in node.body if isinstance(item, ast.AnnAssign)
                          and isinstance(item.target, ast.Name) and item.target.id in options)
    return []


def protocol_name_places(package_dir: Path) -> list[str]:
    """``file:line name`` of every string constant equal to a protocol name outside ``engine/evaluation/``."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir).as_posix()
        if relative.startswith("engine/evaluation/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in PROTOCOLS:
                found.append(f"{relative}:{node.lineno} {node.value}")
    return found


def duplicate_pairs(package_dir: Path) -> int | None:
    if shutil.which("duplicates") is None:
        return None
    out = subprocess.run(["duplicates", "--repo", str(package_dir), "--most", "200", "--seconds", "60"],
                         capture_output=True, text=True, check=True).stdout
    found = re.match(r"(\d+) pairs? of places", out)
    return int(found.group(1)) if found else 0


def import_times(roots: dict[str, Path], repeats: int) -> dict[str, dict[str, Any]]:
    """Best of ``repeats`` fresh processes per revision, interleaved so that load drifts hit both alike.

    Plain subprocesses, not ``harness.run_fresh``: that imports this script and the harness (and with them
    ``timm_selfcon``) in the fresh process before the function runs, which would time nothing."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in roots}
    for _ in range(repeats):
        for name, root in roots.items():
            completed = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True,
                                       cwd=root, env={**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"},
                                       check=True)
            run = json.loads(completed.stdout.strip().splitlines()[-1])
            if not run["package"].startswith(str(root)):
                raise RuntimeError(f"{name}: imported {run['package']}, not the copy under {root}")
            runs[name].append(run)
    return {name: dict(timm_s=min(r["timm_s"] for r in found), added_s=min(r["added_s"] for r in found),
                       added_s_all=[round(r["added_s"], 3) for r in found], loads=found[0]["loads"])
            for name, found in runs.items()}


def measure(package_dir: Path, layering: Any, method_names: Any) -> dict[str, Any]:
    from timm_selfcon.methods import METHODS

    names = method_names.method_name_constants(package_dir, set(METHODS))
    forbidden = [found for layer in layering.FORBIDDEN for found in layering.violations(layer, package_dir)]
    return dict(size_metrics(package_dir), method_name_constants=len(names),
                method_name_places=[f"{file}:{line} {name}" for file, line, name in names],
                layering_violations=len(forbidden), layering_forbidden_imports=forbidden,
                train_config_method_fields=train_config_method_fields(package_dir),
                protocol_name_places=protocol_name_places(package_dir),
                duplicate_pairs=duplicate_pairs(package_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="220491d", help="git revision measured first (default: %(default)s)")
    parser.add_argument("--after", default="worktree", help="git revision, or 'worktree' (default)")
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per import-time measurement")
    parser.add_argument("--out", type=Path, default=RESULTS / "architecture.json")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    layering, method_names = load_test_module("test_layering"), load_test_module("test_method_names")
    with tempfile.TemporaryDirectory(prefix="arch_metrics_") as folder:
        roots = {label: checkout(revision, Path(folder) / label)
                 for label, revision in (("before", args.before), ("after", args.after))}
        results = {label: measure(root / PACKAGE, layering, method_names) for label, root in roots.items()}
        for label, timing in import_times(roots, args.repeats).items():
            results[label]["import"] = timing
    rows = []
    for title, key in [("longest file (lines)", "longest_file_lines"), ("files over 500 lines", "files_over_limit"),
                       ("longest function (lines)", "longest_function_lines"),
                       ("method-name constants outside methods/", "method_name_constants"),
                       ("forbidden imports (layering contract)", "layering_violations"),
                       ("method-specific fields in TrainConfig", "train_config_method_fields"),
                       ("protocol names outside engine/evaluation/", "protocol_name_places"),
                       ("duplicates pairs (package)", "duplicate_pairs")]:
        before, after = results["before"][key], results["after"][key]
        if isinstance(before, list):
            before, after = len(before), len(after)
        rows.append([title, before, after])
    rows.append(["", results["before"]["longest_file"], results["after"]["longest_file"]])
    rows.append(["", results["before"]["longest_function"], results["after"]["longest_function"]])
    for label in ("timm_s", "added_s"):
        rows.append([f"import: {'timm' if label == 'timm_s' else 'timm_selfcon added'} (s, best of {args.repeats})",
                     f"{results['before']['import'][label]:.2f}", f"{results['after']['import'][label]:.2f}"])
    rows.append(["import loads datasets/pyarrow", ",".join(results["before"]["import"]["loads"]) or "no",
                 ",".join(results["after"]["import"]["loads"]) or "no"])
    print_table(rows, ["measure", f"before ({args.before})", f"after ({args.after})"])
    write_json(args.out, dict(before_revision=args.before, after_revision=args.after,
                              environment=environment(), **results))


if __name__ == "__main__":
    main()
