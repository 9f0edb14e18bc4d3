"""The one harness of the benchmark scripts: a measurement in a fresh process, the environment, tables, JSON.

- :func:`run_fresh` runs a module-level function of a benchmark script in a fresh Python process (nothing
  allocated, imported or tuned by an earlier measurement carries over; environment variables such as
  ``OMP_WAIT_POLICY``, which the OpenMP runtime reads once, can differ per measurement) and returns its JSON result.
- :func:`environment` records what the numbers depend on (versions, CPU, threads, device, commit, load).
- :func:`format_table` / :func:`print_table`: aligned plain-text tables for the terminal, compact markdown ones for
  the README.
- :func:`write_json`: the results file, written atomically (:func:`timm_selfcon.fileio.write_json_atomic`).
- :func:`peak_rss` / :func:`reset_peak_rss`: the process's resident-memory high-water mark, and its reset.

``benchmarks`` is a package: the scripts run from the repository root as ``python -m benchmarks.<folder>.<script>``
and import ``from benchmarks.harness import ...`` (and each other as ``benchmarks.<folder>.<script>``); :data:`ROOT`
and :data:`RESULTS` are the one place that knows where the repository and its results are.
``python benchmarks/harness.py FILE QUALNAME MODULE SPEC RESULT`` is the fresh process's side of :func:`run_fresh`,
not a command for people.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from timm_selfcon.fileio import write_json_atomic

__all__ = ["RESULTS", "ROOT", "environment", "format_table", "peak_rss", "print_table", "reset_peak_rss", "run_fresh",
           "write_json"]

#: the repository root (``benchmarks/`` is its child), and the committed results that README.md and docs/ render from
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


# ---- a measurement in a fresh process ----------------------------------------------------------------------------

def run_fresh(function: Callable[..., Any], spec: Any = None, *, env: dict[str, str] | None = None,
              cwd: str | os.PathLike[str] | None = None, timeout: float | None = None) -> Any:
    """``function(spec)`` (``function()`` when ``spec`` is None) in a fresh Python process; its JSON-able result.

    ``function`` must be defined at the top level of a module file (a benchmark script run as ``__main__`` is fine:
    the fresh process imports the file under its own name, so its ``if __name__ == "__main__"`` block does not
    run); ``spec`` must be JSON-able. ``env``: variables set on top of this process's environment. The fresh
    process's output is kept and shown only when it fails (``RuntimeError`` with the end of its stderr).
    """
    module = sys.modules[function.__module__]
    file = Path(module.__file__).resolve()
    # a script run with ``python -m benchmarks.<folder>.<script>`` is ``__main__`` with its dotted name in its spec
    spec_name = getattr(module.__spec__, "name", None)
    name = function.__module__ if function.__module__ != "__main__" else spec_name or file.stem
    if "<locals>" in function.__qualname__:
        raise ValueError(f"run_fresh needs a module-level function, got {function.__qualname__}")
    with tempfile.TemporaryDirectory(prefix="bench_fresh_") as folder:
        result = Path(folder) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), str(file), function.__qualname__, name,
                   json.dumps(spec), str(result)]
        completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})},
                                   cwd=cwd, timeout=timeout, check=False)
        if completed.returncode != 0 or not result.is_file():
            raise RuntimeError(f"{file.name}:{function.__qualname__}({json.dumps(spec)}) failed in its fresh process "
                               f"(exit status {completed.returncode}):\n{completed.stderr[-4000:]}")
        return json.loads(result.read_text())["result"]


def _fresh_process(file: str, qualname: str, name: str, spec: str, result: str) -> None:
    """The fresh process: import ``file`` as module ``name``, call ``qualname`` and write ``{"result": ...}``."""
    # the scripts import ``benchmarks.*`` from the repository root; this file's folder (``sys.path[0]`` when it runs
    # as ``python benchmarks/harness.py``) is no place to import from: its subfolders would shadow other packages
    sys.path[0] = str(ROOT)
    module_spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look their module up by name
    module_spec.loader.exec_module(module)
    function: Any = module
    for part in qualname.split("."):
        function = getattr(function, part)
    arguments = json.loads(spec)
    write_json_atomic(result, {"result": function() if arguments is None else function(arguments)})


# ---- the environment ---------------------------------------------------------------------------------------------

def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def _git_commit() -> str | None:
    """``git rev-parse HEAD``; else ``$TIMM_SELFCON_GIT_COMMIT`` (a copied working tree without ``.git``, such as the
    one the device machine gets: ``benchmarks/device/device_prepare.py`` records the commit for it)."""
    try:
        completed = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
        commit = completed.stdout.strip()
    except OSError:
        commit = ""
    return commit or os.environ.get("TIMM_SELFCON_GIT_COMMIT") or None


def _version(package: str) -> Callable[[], str]:
    def read() -> str:
        return importlib.import_module(package).__version__

    return read


def _torch() -> Any:
    import torch

    return torch


def _cpu_model() -> str:
    from timm_selfcon.engine.clock import cpu_description

    return cpu_description()["cpu_model"]


#: key -> how to read it; :func:`environment` reads only the keys asked for (``git_commit`` runs git, ``timm`` imports it)
ENVIRONMENT: dict[str, Callable[[], Any]] = {
    "python": platform.python_version,
    "platform": platform.platform,
    "torch": _version("torch"),
    "timm": _version("timm"),
    "datasets": _version("datasets"),
    "timm_selfcon": _version("timm_selfcon"),
    "cuda": lambda: _torch().version.cuda,
    "device": _device_name,
    "cpu": lambda: platform.processor() or platform.machine(),
    "cpu_capability": lambda: _torch().backends.cpu.get_cpu_capability(),
    "cpu_model": _cpu_model,
    "cpu_count": os.cpu_count,
    "threads": lambda: _torch().get_num_threads(),
    "git_commit": _git_commit,
    "load_average": os.getloadavg,
}


def environment(*keys: str, **renamed: str) -> dict[str, Any]:
    """What the measurements depend on: ``keys`` of :data:`ENVIRONMENT` (all when none is given), in that order.

    ``renamed``: ``new_name=key`` entries, for a results file whose schema names a key otherwise (e.g.
    ``machine="cpu"``). ``device`` is the name of the CUDA device when there is one, else ``"cpu"``;
    ``threads`` is torch's intra-op thread count at the call; ``load_average`` the (1, 5, 15)-minute load.
    """
    wanted = {key: key for key in (keys or (() if renamed else ENVIRONMENT))} | renamed
    unknown = sorted(set(wanted.values()) - set(ENVIRONMENT))
    if unknown:
        raise KeyError(f"unknown environment keys {unknown}; known: {sorted(ENVIRONMENT)}")
    return {name: ENVIRONMENT[key]() for name, key in wanted.items()}


# ---- tables -------------------------------------------------------------------------------------------------------

def format_table(rows: Sequence[Sequence[Any]], header: Sequence[Any], *, markdown: bool = False) -> str:
    """``header`` and ``rows`` (cells already formatted; anything else goes through ``str``) as one string.

    Plain (the terminal): columns padded to their widest cell, the first left-aligned and the others right-aligned,
    a dashed rule under the header. ``markdown=True``: compact GitHub markdown (``| a | b |`` and ``|---|---|``).
    A row shorter than the header leaves its last columns empty.
    """
    table = [[str(cell) for cell in row] for row in [header, *rows]]
    if any(len(row) > len(header) for row in table):
        raise ValueError(f"a row has more cells than the header {list(header)}: "
                         f"{[row for row in table if len(row) > len(header)]}")
    if markdown:
        return "\n".join(["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(header)]
                         + ["| " + " | ".join(row) + " |" for row in table[1:]])
    table = [row + [""] * (len(header) - len(row)) for row in table]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))

    return "\n".join([line(table[0]), "  ".join("-" * w for w in widths), *map(line, table[1:])])


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[Any], *, markdown: bool = False) -> None:
    """Print :func:`format_table`."""
    print(format_table(rows, header, markdown=markdown), flush=True)


# ---- results files ------------------------------------------------------------------------------------------------

def write_json(path: str | os.PathLike[str], results: Any, **dumps_kwargs: Any) -> None:
    """Write ``results`` to ``path`` as indented JSON, atomically (a killed run leaves the old file or the new one)."""
    write_json_atomic(path, results, **dumps_kwargs)
    print(f"wrote {path}", flush=True)


# ---- memory -------------------------------------------------------------------------------------------------------

def reset_peak_rss() -> bool:
    """Reset the kernel's resident-memory high-water mark (VmHWM) to the current RSS; False where Linux refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """Peak resident set size since the last reset, bytes: VmHWM, else ``ru_maxrss`` (KiB on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    _fresh_process(*sys.argv[1:])
