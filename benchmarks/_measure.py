"""Measurement helpers shared by the benchmark scripts: peak resident memory and atomic JSON results."""
from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any


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


def write_json(path: Path, results: dict[str, Any]) -> None:
    """Write ``results`` to ``path`` through a temporary file and a rename, so a killed run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    temporary.replace(path)
    print(f"wrote {path}")
