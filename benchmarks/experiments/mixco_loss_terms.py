"""The training-loss terms of the MixCo experiment's runs, per epoch: what the + MixCo arm does to MoCo's own term.

The queue's result JSONs keep the total loss only; each run folder's ``metrics.jsonl`` (logged every 50 steps) also
has the terms: ``loss_moco`` (MoCo v2's InfoNCE on the clean queries), ``loss_mix`` (MixCo's soft-target term, the
+ MixCo arm only), ``acc1`` (top-1 of the positive key among the queue, on the logged batch). Their per-epoch means
for every finished run whose folder is still on this machine go to ``benchmarks/results/mixco_loss_terms.json``
(entries of runs whose folder is gone are kept), which ``report_experiments.py`` renders beside the paired table.

Usage: ``python -m benchmarks.experiments.mixco_loss_terms [--work-dir runs/experiments]`` (the queue's work dir).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.harness import RESULTS, ROOT, write_json

MIXCO = RESULTS / "mixco"
OUT = RESULTS / "mixco_loss_terms.json"
TERMS = ("loss_moco", "loss_mix", "loss_simclr", "acc1")


def epoch_means(metrics_jsonl: Path) -> dict[str, dict[int, float]]:
    """``{term: {epoch (1-based): mean of the logged values}}`` of one run's ``metrics.jsonl``."""
    by_term: dict[str, dict[int, list[float]]] = {}
    for line in metrics_jsonl.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        for term in TERMS:
            if term in record:
                by_term.setdefault(term, {}).setdefault(int(record["epoch"]) + 1, []).append(float(record[term]))
    return {term: {epoch: round(statistics.fmean(values), 4) for epoch, values in sorted(epochs.items())}
            for term, epochs in by_term.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "experiments",
                        help="the queue's work dir (its mixco/<run>/metrics.jsonl)")
    args = parser.parse_args(argv)
    report = json.loads(OUT.read_text()) if OUT.exists() else {}
    for path in sorted(MIXCO.glob("*.json")):
        run = json.loads(path.read_text())
        metrics = args.work_dir / "mixco" / run["name"] / "metrics.jsonl"
        if run.get("kind") != "train" or not metrics.is_file():
            continue
        report[run["name"]] = dict(method=run["method"], seed=run["seed"], per_epoch=epoch_means(metrics),
                                   source=f"{run['name']}/metrics.jsonl of the finished run (logged every "
                                          f"{run['recipe'].get('log_every_steps', 50)} steps)")
        print(f"{run['name']}: " + ", ".join(f"{term} last epoch {values[max(values)]}"
                                             for term, values in report[run["name"]]["per_epoch"].items()))
    write_json(OUT, dict(sorted(report.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
