"""Render the README's measured results from the JSON files under ``benchmarks/results/``.

``python benchmarks/make_report.py`` rewrites the block between the ``<!-- runs:begin -->`` and
``<!-- runs:end -->`` markers of README.md and draws ``benchmarks/results/accuracy_vs_epoch.png`` and
``benchmarks/results/cost.png``; ``--check`` only compares the text and exits 1 when it differs (the test suite
runs the same comparison, so the README can never disagree with the JSON files).

Sources: ``results/runs/<name>.json`` (``report_runs.py``: accuracy at a CPU budget) and ``results/cost.json``
(``bench_train.py --cost``: step time and memory per method, ratios to SupCon).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "runs"
COST = RESULTS / "cost.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- runs:begin -->", "<!-- runs:end -->"
HEADS = ("backbone", "exit_0", "ensemble")
UNTRAINED = "random_init"  # report_runs.py's untrained initial encoders (random_init*): the floors, epoch 0 of the curves


def _last_top1(result: dict, head: str) -> float | None:
    entry = (result.get("results") or {}).get(head)
    return None if entry is None else entry["last"]["top1"]


def _fmt(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _group(run: dict) -> str:
    """A run's row: its method; an untrained run by its name without the seed (one row per initial encoder)."""
    method = run["recipe"]["method"]
    return re.sub(r"_seed\d+$", "", run.get("name", method)) if method == UNTRAINED else method


def _initial_encoder(recipe: dict) -> tuple:
    """What fixes a run's initial weights: model, exits, classifier (CE only) and seed (timm draws in module order)."""
    return (recipe["model"], json.dumps(recipe.get("model_kwargs") or {}, sort_keys=True), recipe["method"] == "ce",
            recipe.get("seed"))


def load_runs(runs_dir: Path = RUNS) -> dict[str, list[dict]]:
    """Finished runs grouped by method (untrained ones by initial encoder), in file-name (seed) order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(runs_dir.glob("*.json")):
        run = json.loads(path.read_text())
        groups[_group(run)].append(run)
    return dict(sorted(groups.items()))


def _probe(run: dict) -> dict:
    return run["early_exit"] if "early_exit" in run else run["linear_fast"]


def render_accuracy(groups: dict[str, list[dict]]) -> list[str]:
    lines = [
        "Accuracy at a CPU budget, measured here (ours): `benchmarks/report_runs.py`, CIFAR-10 from "
        "`../shared/data/cifar10`, `linear_fast` probe (cached features, no augmentation: not the papers' protocol; "
        "probes trained on the run's training images, 10% held out for validation), last probe epoch, top-1 % on the "
        "10,000 test images; mean ± standard deviation over seeds.",
        "",
        "| method | model | seeds | train images x epochs | train minutes | backbone | exit_0 | ensemble | kNN k=20 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, items in groups.items():
        heads = {h: [v for r in items if (v := _last_top1(_probe(r), h)) is not None] for h in HEADS}
        knn = [r["knn"]["results"]["backbone"]["k20"] for r in items]
        data = items[0]["data"]
        minutes = [r["train_seconds"] / 60 for r in items]
        budget = "none (untrained)" if method.startswith(UNTRAINED) else f"{data['train_images']} x {data['epochs']}"
        lines.append(
            f"| {method} | {items[0]['recipe']['model']} | {len(items)} | {budget} | "
            f"{_fmt(minutes)} | {_fmt(heads['backbone'])} | {_fmt(heads['exit_0'])} | {_fmt(heads['ensemble'])} | "
            f"{_fmt(knn)} |")
    return lines


def render_early_exit(groups: dict[str, list[dict]]) -> list[str]:
    """SelfCon's early exit: answer at the exit when its softmax confidence reaches the threshold."""
    items = [r for r in groups.get("selfcon", []) if (r.get("early_exit") or {}).get("early_exit")]
    if not items:
        return []
    lines = ["", f"SelfCon early exit (ours, {len(items)} seed(s), mean): predict at exit_0 when its top softmax "
                 "probability is at least the threshold, else run the rest of the network and use the ensemble; "
                 "MFLOPs per test image from `torch.utils.flop_counter`.", "",
             "| threshold | top-1 % | MFLOPs per image | share answered at exit_0 |", "|---|---|---|---|"]
    sweeps = [r["early_exit"]["early_exit"] for r in items]
    for points in zip(*sweeps, strict=True):
        lines.append(f"| {points[0]['threshold']:g} | {_fmt([p['top1'] for p in points])} | "
                     f"{statistics.mean(p['mean_flops'] for p in points) / 1e6:.0f} | "
                     f"{statistics.mean(p['exit_fraction'][0] for p in points):.2f} |")
    return lines


def per_epoch_curves(groups: dict[str, list[dict]]) -> dict[str, dict[str, list[float]]]:
    """``{method: {head: [top-1 at epoch 0, 1, 2, ...]}}`` from the runs that probed every epoch (seed 0).

    Epoch 0 is the run's exact initial encoder probed untrained (the ``random_init*`` run with the same model,
    exits, classifier and seed), or None where that has not been measured.
    """
    untrained_by_encoder = {_initial_encoder(run["recipe"]): run["linear_fast"]["results"]
                            for name, items in groups.items() if name.startswith(UNTRAINED) for run in items}
    curves: dict[str, dict[str, list[float]]] = {}
    for method, items in groups.items():
        for run in items:
            if "linear_fast_per_epoch" in run:
                untrained = untrained_by_encoder.get(_initial_encoder(run["recipe"]), {})
                per_epoch = run["linear_fast_per_epoch"]
                epochs = sorted(per_epoch, key=int)
                curves[method] = {
                    head: [untrained[head]["last"]["top1"] if head in untrained else None,
                           *(per_epoch[e][head] for e in epochs)]
                    for head in per_epoch[epochs[0]]}
                break
    return curves


def render_per_epoch(groups: dict[str, list[dict]]) -> list[str]:
    curves = per_epoch_curves(groups)
    if not curves:
        return []
    epochs = max(len(c) for heads in curves.values() for c in heads.values())
    lines = ["", "Accuracy versus epoch (ours, seed 0, the same `linear_fast` probe on each epoch's checkpoint; epoch 0 "
                 "is the run's own initial encoder, untrained (the `random_init*` row with the same model, exits and "
                 "seed; '-' where not measured: CE's classifier changes its initial draw); plot: "
                 "`benchmarks/results/accuracy_vs_epoch.png`):", "",
             "| method | head | " + " | ".join(f"epoch {e}" for e in range(epochs)) + " |",
             "|---|---|" + "---|" * epochs]
    for method, heads in curves.items():
        for head, values in heads.items():
            lines.append(f"| {method} | {head} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in values) + " |")
    return lines


def render_cost(cost_path: Path = COST) -> list[str]:
    if not cost_path.exists():
        return []
    cost = json.loads(cost_path.read_text())
    lines = ["", f"Training-step cost (ours, `benchmarks/bench_train.py --cost`, {cost['model']}, 32 px, "
                 f"{cost['precision_label']}, this CPU ({cost['cpu_count']} cores, {cost['threads']} threads), median of "
                 f"{cost['rounds']} fresh processes x {cost['repeats']} steps; memory = peak resident memory the steps "
                 "add; ratios to SupCon measured in the same run; chart: `benchmarks/results/cost.png`):", "",
             "| batch | method | views | step ms | time / SupCon | MB added | memory / SupCon |",
             "|---|---|---|---|---|---|---|"]
    for batch, methods in cost["method_steps"].items():
        for label, m in methods.items():
            lines.append(f"| {batch} | {label} | {m['views']} | {m['wall_ms']:.0f} | {m['wall_vs_supcon']:.2f} | "
                         f"{m['peak_added_mb']:.0f} | {m['memory_vs_supcon']:.2f} |")
    return lines


def render(runs_dir: Path = RUNS, cost_path: Path = COST) -> str:
    """Markdown for every finished run and the cost measurement."""
    groups = load_runs(runs_dir)
    lines = (render_accuracy(groups) + render_early_exit(groups) + render_per_epoch(groups) if groups else
             ["No CPU-scale runs have finished yet (`python benchmarks/report_runs.py` writes them)."])
    return "\n".join(lines + render_cost(cost_path))


def draw_plots(runs_dir: Path = RUNS, cost_path: Path = COST, out_dir: Path = RESULTS) -> list[Path]:
    """``accuracy_vs_epoch.png`` and ``cost.png`` from the same JSON as the tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    curves = per_epoch_curves(load_runs(runs_dir))
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        styles = {"backbone": "-", "exit_0": "--", "ensemble": ":"}
        for index, (method, heads) in enumerate(curves.items()):
            for head, values in heads.items():
                points = [(epoch, v) for epoch, v in enumerate(values) if v is not None]
                ax.plot(*zip(*points, strict=True), styles.get(head, "-."), color=f"C{index}", marker="o",
                        label=f"{method} {head}")
        ax.set(xlabel="epoch (0: untrained)", ylabel="linear_fast top-1 % (test)",
               title="CIFAR-10, CPU budget, seed 0 (ours)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out_dir / "accuracy_vs_epoch.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    if cost_path.exists():
        cost = json.loads(cost_path.read_text())
        batches = list(cost["method_steps"])
        labels = list(cost["method_steps"][batches[0]])
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        width = 0.8 / len(batches)
        for axis, key, title in ((axes[0], "wall_vs_supcon", "step time / SupCon"),
                                 (axes[1], "memory_vs_supcon", "memory added / SupCon")):
            for i, batch in enumerate(batches):
                values = [cost["method_steps"][batch][label][key] for label in labels]
                axis.bar([x + i * width for x in range(len(labels))], values, width, label=f"batch {batch}")
            axis.axhline(1.0, color="grey", linewidth=0.8)
            axis.set_xticks([x + width * (len(batches) - 1) / 2 for x in range(len(labels))], labels, rotation=30,
                            ha="right", fontsize=8)
            axis.set_title(title)
            axis.legend(fontsize=8)
        fig.suptitle(f"{cost['model']}, {cost['precision_label']}, this CPU (ours)")
        fig.tight_layout()
        written.append(out_dir / "cost.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


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
            print("README.md's results differ from benchmarks/results/*.json; run python benchmarks/make_report.py",
                  file=sys.stderr)
            return 1
        return 0
    README.write_text(updated)
    draw_plots()
    return 0


if __name__ == "__main__":
    sys.exit(main())
