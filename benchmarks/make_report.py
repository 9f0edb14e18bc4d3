"""Render the README's measured-results table from ``benchmarks/results/runs/*.json``.

``python benchmarks/make_report.py`` rewrites the block between the ``<!-- runs:begin -->`` and
``<!-- runs:end -->`` markers of README.md; ``--check`` only compares and exits 1 when they differ (the test
suite runs the same comparison, so the README can never disagree with the JSON files).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "results" / "runs"
README = ROOT / "README.md"
BEGIN, END = "<!-- runs:begin -->", "<!-- runs:end -->"


def _last_top1(result: dict, head: str) -> float | None:
    entry = (result.get("results") or {}).get(head)
    return None if entry is None else entry["last"]["top1"]


def render(runs_dir: Path = RUNS) -> str:
    """Markdown for every finished run, grouped by method (mean and spread over seeds)."""
    runs = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json"))]
    if not runs:
        return "No CPU-scale runs have finished yet (`python benchmarks/report_runs.py` writes them)."
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run["recipe"]["method"]].append(run)
    lines = [
        "Measured here (ours): `benchmarks/report_runs.py`, CIFAR-10 from `../shared/data/cifar10`, "
        "`linear_fast` probe (cached features, no augmentation: not the papers' protocol), last probe epoch, "
        "top-1 % on the 10,000 test images.",
        "",
        "| method | model | seeds | train images x epochs | train minutes | backbone | exit_0 | ensemble | kNN k=20 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(values: list[float]) -> str:
        if not values:
            return "-"
        if len(values) == 1:
            return f"{values[0]:.2f}"
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"

    for method, items in sorted(groups.items()):
        probe_key = "early_exit" if "early_exit" in items[0] else "linear_fast"
        heads = {h: [v for r in items if (v := _last_top1(r[probe_key], h)) is not None]
                 for h in ("backbone", "exit_0", "ensemble")}
        knn = [r["knn"]["results"]["backbone"]["k20"] for r in items]
        data = items[0]["data"]
        minutes = [r["train_seconds"] / 60 for r in items]
        lines.append(
            f"| {method} | {items[0]['recipe']['model']} | {len(items)} | {data['train_images']} x {data['epochs']} | "
            f"{fmt(minutes)} | {fmt(heads['backbone'])} | {fmt(heads['exit_0'])} | {fmt(heads['ensemble'])} | "
            f"{fmt(knn)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"README.md lacks the {BEGIN} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    updated = f"{head}{BEGIN}\n{render()}\n{END}{tail}"
    if args.check:
        if updated != text:
            print("README.md's results table differs from benchmarks/results/runs/*.json; "
                  "run python benchmarks/make_report.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
