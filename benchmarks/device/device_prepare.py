"""Pack what the device check needs on a lent GPU machine into ``.device/`` (git-ignored) and print the ``run`` call.

The device machine gets a copy of the working tree and nothing else (no registry, no ``../shared``), under a
64 MiB limit for everything that travels. This script, run here:

1. copies the CIFAR-10 parquet splits (``train.parquet``, ``test.parquet``) from ``--data`` to ``.device/cifar10``
   (``--subset``: none; the device reads the package's 5,000 / 1,000-image subset, which travels anyway);
2. downloads, as wheels for the device's Python (CPython 3.12, manylinux x86-64), the packages
   ``import timm_selfcon`` needs that the device image lacks (:data:`MISSING_ON_DEVICE`), at the versions installed
   here, so the device runs what the tests ran, into ``.device/wheels``;
3. records the commit in ``.device/COMMIT`` (refusing a dirty tree: the JSON must name the code that ran);
4. adds up what will travel (tracked files, untracked files git does not ignore, ``.device``) and refuses over
   the limit, naming the largest items;
5. prints the ``run`` call: ``bash benchmarks/device/device_run.sh ARGS`` with ``carry: [".device"]``.

Afterwards, here: copy the returned ``device_check.json`` to ``benchmarks/results/device/device_check-<its
started_utc>.json``, run ``python -m benchmarks.report.make_report`` (the README's "On one GPU" block) and commit both.

    python -m benchmarks.device.device_prepare [--data ../shared/data/cifar10 | --subset] [--args "--compare-budget 240"]
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import ROOT
from timm_selfcon.fileio import atomic_path, write_text_atomic

PACK = ROOT / ".device"
TRAVEL_LIMIT_BYTES = 64 * 2**20  # the device tool's limit on the working tree that travels, carried paths included
SPLITS = ("train.parquet", "test.parquet")
SUBSET = "timm_selfcon/data/cifar10_subset"  # the shipped subset, relative to the repository root (see data/builtin.py)
#: What ``import timm_selfcon`` and ``datasets`` need that the device image ('cuda', package list of 2026-11-17 in
#: the device tool's KINDS.md) does not hold. Its torch, timm, accelerate, huggingface_hub, safetensors, pyarrow,
#: pandas, fsspec, xxhash, pyyaml, jinja2, tqdm and matplotlib are used as they are (device_run.sh prints their versions).
MISSING_ON_DEVICE = ("datasets", "dill", "multiprocess", "pydantic", "pydantic-core", "annotated-types",
                     "typing-inspection")
DEVICE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def clean_commit() -> str:
    """HEAD's commit; raises when tracked files differ from it or untracked files would travel."""
    dirty = git("status", "--porcelain").splitlines()
    if dirty:
        raise SystemExit(f"the working tree differs from HEAD ({dirty[:5]}...): commit first, so that the device "
                         f"JSON names the code that ran")
    return git("rev-parse", "HEAD").strip()


def copy_data(source: Path, target: Path) -> None:
    missing = [name for name in SPLITS if not (source / name).is_file()]
    if missing:
        raise SystemExit(f"--data {source}: missing {missing}; expected CIFAR-10 as {' and '.join(SPLITS)}")
    target.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        if not (target / name).is_file() or (target / name).stat().st_size != (source / name).stat().st_size:
            with atomic_path(target / name) as partial:
                shutil.copyfile(source / name, partial)


def download_wheels(target: Path, packages: tuple[str, ...] = MISSING_ON_DEVICE) -> list[Path]:
    """One wheel per package, pinned to the version installed here, for the device's Python and platform."""
    shutil.rmtree(target, ignore_errors=True)  # one version of each: two stop the install there
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in packages]
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", DEVICE_PYTHON, "--implementation", "cp", *platforms, "-d", str(target), *pins],
                   check=True)
    return sorted(target.glob("*.whl"))


def travel_bytes() -> tuple[int, list[tuple[int, str]]]:
    """Bytes that travel to the device machine, and the largest items (tracked and untracked-not-ignored files, .device)."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    sizes = [((ROOT / name).stat().st_size, name) for name in listed if name and (ROOT / name).is_file()]
    sizes += [(path.stat().st_size, str(path.relative_to(ROOT))) for path in PACK.rglob("*") if path.is_file()]
    return sum(size for size, _ in sizes), sorted(sizes, reverse=True)[:5]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10",
                        help="CIFAR-10 parquet folder (train.parquet, test.parquet)")
    parser.add_argument("--subset", action="store_true",
                        help=f"carry no data; the device check reads {SUBSET} (5,000 train / 1,000 test images)")
    parser.add_argument("--args", default="--compare-budget 240", help="device_check.py's arguments on the device")
    parser.add_argument("--timeout-s", type=int, default=480, help="the run call's timeout_s")
    parser.add_argument("--skip-download", action="store_true", help="keep .device/wheels as it is")
    args = parser.parse_args(argv)
    commit = clean_commit()
    if args.subset:
        shutil.rmtree(PACK / "cifar10", ignore_errors=True)
    else:
        copy_data(args.data, PACK / "cifar10")
    wheels = sorted((PACK / "wheels").glob("*.whl")) if args.skip_download else download_wheels(PACK / "wheels")
    write_text_atomic(PACK / "COMMIT", commit + "\n")
    total, largest = travel_bytes()
    if total > TRAVEL_LIMIT_BYTES:
        raise SystemExit(f"{total / 2**20:.1f} MiB would travel, over the device tool's 64 MiB; largest: "
                         + ", ".join(f"{name} ({size / 2**20:.1f} MiB)" for size, name in largest)
                         + ("" if args.subset else "; --subset carries no data"))
    device_args = f"{args.args} --data {SUBSET}" if args.subset else args.args
    call = {"command": f"bash benchmarks/device/device_run.sh {device_args}", "carry": [".device"],
            "timeout_s": args.timeout_s}
    data = "no data (the subset travels in the package)" if args.subset else "CIFAR-10"
    print(f"packed {len(wheels)} wheels ({', '.join(w.name.split('-')[0] for w in wheels)}), {data} and commit "
          f"{commit[:12]}; {total / 2**20:.1f} MiB travels (limit 64 MiB)")
    print("run call:", json.dumps(call))
    print("then: cp FILES_AT/device_check.json benchmarks/results/device/device_check-STARTED_UTC.json && "
          "python -m benchmarks.report.make_report, and commit both")
    return {"commit": commit, "travel_mib": total / 2**20, "wheels": [w.name for w in wheels], "call": call}


if __name__ == "__main__":
    main()
