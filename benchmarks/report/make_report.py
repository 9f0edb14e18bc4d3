"""Render the measured results of README.md and docs/results.md from the JSON files under ``benchmarks/results/``.

``python -m benchmarks.report.make_report`` rewrites README.md's ``headline`` block (the parity checks and the CPU
ranking's endpoints) and the blocks of docs/results.md listed below, each between its ``<!-- name:begin -->`` and
``<!-- name:end -->`` markers, and draws ``benchmarks/results/accuracy_vs_epoch.png``, ``cost.png`` and
``rank_accuracy_vs_epoch.png``; ``--check`` only compares the text and exits 1 when it differs (the test suite
runs the same comparison, so neither page can disagree with the JSON files). ``report_experiments.py`` renders
docs/results.md's ``mixco`` and ``equal_compute`` blocks.

Sources: ``results/runs/<name>.json`` (``report_runs.py``: accuracy at a CPU budget) and ``results/cost.json``
(``bench_train.py --cost``: step time and memory per method, ratios to SupCon), rendered between the ``runs``
markers; ``results/rank/<name>.json`` (``rank_methods.py``: CE vs SupCon vs SelfCon on full CIFAR-10) between the
``rank`` markers, with ``results/rank_accuracy_vs_epoch.png``; ``results/parity_official.json``
(``parity_official.py``) and ``results/collapse.json`` (``collapse.py``) between the ``parity`` markers;
``results/parity_mixco.json`` (``parity_mixco.py``) between the ``parity_mixco`` markers; the latest GPU run under
``results/device/`` (``device_check.py``) between the ``device`` markers.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS, ROOT, format_table
from timm_selfcon.fileio import atomic_path, write_text_atomic

RUNS = RESULTS / "runs"
COST = RESULTS / "cost.json"
README = ROOT / "README.md"
DOC = ROOT / "docs" / "results.md"
RANK = RESULTS / "rank"
PARITY = RESULTS / "parity_official.json"
PARITY_MIXCO = RESULTS / "parity_mixco.json"
COLLAPSE = RESULTS / "collapse.json"
DEVICE = RESULTS / "device"
#: the GPU issue's goals for ``selfcon_resnet18_cifar`` at global batch 1024 on one H200 (images/s), and for the
#: share of the device step spent augmenting
DEVICE_TARGETS = {"SelfCon (fc exit)": 40_000, "SupCon": 20_000}
AUGMENT_TARGET = 0.05
BEGIN, END = "<!-- runs:begin -->", "<!-- runs:end -->"
HEADS = ("backbone", "exit_0", "ensemble")
UNTRAINED = "random_init"  # report_runs.py's untrained initial encoders (random_init*): the floors, epoch 0 of the curves


def _table(rows: list[list], header: list[str]) -> list[str]:
    """A compact markdown table, as lines."""
    return format_table(rows, header, markdown=True).splitlines()


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
        "Accuracy at a CPU budget, measured here (ours): `benchmarks/experiments/report_runs.py`, CIFAR-10 from "
        "`../shared/data/cifar10`, `linear_fast` probe (cached features, no augmentation: not the papers' protocol; "
        "probes trained on the run's training images, 10% held out for validation), last probe epoch, top-1 % on the "
        "10,000 test images; mean ± standard deviation over seeds.",
        "",
    ]
    rows = []
    for method, items in groups.items():
        heads = {h: [v for r in items if (v := _last_top1(_probe(r), h)) is not None] for h in HEADS}
        knn = [r["knn"]["results"]["backbone"]["k20"] for r in items]
        data = items[0]["data"]
        minutes = [r["train_seconds"] / 60 for r in items]
        budget = "none (untrained)" if method.startswith(UNTRAINED) else f"{data['train_images']} x {data['epochs']}"
        rows.append([method, items[0]["recipe"]["model"], len(items), budget, _fmt(minutes), _fmt(heads["backbone"]),
                     _fmt(heads["exit_0"]), _fmt(heads["ensemble"]), _fmt(knn)])
    return lines + _table(rows, ["method", "model", "seeds", "train images x epochs", "train minutes", "backbone",
                                 "exit_0", "ensemble", "kNN k=20"])


def render_early_exit(groups: dict[str, list[dict]]) -> list[str]:
    """SelfCon's early exit: answer at the exit when its softmax confidence reaches the threshold."""
    items = [r for r in groups.get("selfcon", []) if (r.get("early_exit") or {}).get("early_exit")]
    if not items:
        return []
    lines = ["", f"SelfCon early exit (ours, {len(items)} seed(s), mean): predict at exit_0 when its top softmax "
                 "probability is at least the threshold, else run the rest of the network and use the ensemble; "
                 "MFLOPs per test image from `torch.utils.flop_counter`.", ""]
    sweeps = [r["early_exit"]["early_exit"] for r in items]
    rows = [[f"{points[0]['threshold']:g}", _fmt([p["top1"] for p in points]),
             f"{statistics.mean(p['mean_flops'] for p in points) / 1e6:.0f}",
             f"{statistics.mean(p['exit_fraction'][0] for p in points):.2f}"] for points in zip(*sweeps, strict=True)]
    return lines + _table(rows, ["threshold", "top-1 %", "MFLOPs per image", "share answered at exit_0"])


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
                 "`benchmarks/results/accuracy_vs_epoch.png`):", ""]
    rows = [[method, head, *("-" if v is None else f"{v:.2f}" for v in values)]
            for method, heads in curves.items() for head, values in heads.items()]
    return lines + _table(rows, ["method", "head", *(f"epoch {e}" for e in range(epochs))])


def render_cost(cost_path: Path = COST) -> list[str]:
    if not cost_path.exists():
        return []
    cost = json.loads(cost_path.read_text())
    lines = ["", f"Training-step cost (ours, `benchmarks/speed/bench_train.py --cost`, {cost['model']}, 32 px, "
                 f"{cost['precision_label']}, this CPU ({cost['cpu_count']} cores, {cost['threads']} threads), median of "
                 f"{cost['rounds']} fresh processes x {cost['repeats']} steps; memory = peak resident memory the steps "
                 "add; ratios to SupCon measured in the same run; chart: `benchmarks/results/cost.png`):", ""]
    rows = [[batch, label, m["views"], f"{m['wall_ms']:.0f}", f"{m['wall_vs_supcon']:.2f}", f"{m['peak_added_mb']:.0f}",
             f"{m['memory_vs_supcon']:.2f}"] for batch, methods in cost["method_steps"].items()
            for label, m in methods.items()]
    return lines + _table(rows, ["batch", "method", "views", "step ms", "time / SupCon", "MB added", "memory / SupCon"])


def render(runs_dir: Path = RUNS, cost_path: Path = COST) -> str:
    """Markdown for every finished run and the cost measurement."""
    groups = load_runs(runs_dir)
    lines = (render_accuracy(groups) + render_early_exit(groups) + render_per_epoch(groups) if groups else
             ["No CPU-scale runs have finished yet (`python -m benchmarks.experiments.report_runs` writes them)."])
    return "\n".join(lines + render_cost(cost_path))


# ------------------------------------------------------------------------------- rank_methods.py
def _top1(run: dict, split: str, protocol: str = "linear_fast") -> dict[str, float]:
    results = ((run.get(split) or {}).get(protocol) or {}).get("results") or {}
    return {head: entry["last"]["top1"] for head, entry in results.items() if "last" in entry}


def load_rank(rank_dir: Path = RANK) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(rank_dir.glob("*.json"))}


def _floor_of(run: dict, runs: dict[str, dict]) -> dict:
    """A trained run's untrained floor: the floor run with the same exits (CE's classifier is not in its draw)."""
    has_exits = bool((run["recipe"].get("model_kwargs") or {}).get("exit_stages"))
    return runs.get("floor_selfcon" if has_exits else "floor_noexit", {})


def _stabilizer(recipe: dict) -> str:
    parts = []
    if recipe.get("clip_grad_norm") is not None:
        parts.append(f"clip_grad_norm={recipe['clip_grad_norm']:g}")
    if recipe.get("head_lr_warmup_steps"):
        parts.append(f"head_lr_warmup_steps={recipe['head_lr_warmup_steps']}")
    if (recipe.get("method_kwargs") or {}).get("head_batchnorm"):
        parts.append("head_batchnorm")
    if recipe.get("optimizer", "sgd") != "sgd":
        parts.append(f"optimizer={recipe['optimizer']}")
    return ", ".join(parts) or "none"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _gain(value: float | None, floor: float | None) -> str:
    return "-" if value is None or floor is None else f"{value - floor:+.2f}"


def _train_minutes(run: dict) -> tuple[str, bool]:
    """The run's training time in minutes, and whether it is an estimate.

    ``train_seconds_this_sitting`` covers only the last sitting of a run resumed across sessions; when it is less
    than 90% of ``steps x batch / mean logged images/s`` (its last 20 log windows), that estimate is shown instead,
    marked ``≈`` (it leaves out checkpoint writing and start-up)."""
    sitting = run.get("train_seconds_this_sitting", 0.0)
    steps = (run.get("train_summary") or {}).get("steps")
    speeds = run.get("train_images_per_s") or []
    if steps and speeds:
        estimate = steps * run["recipe"]["batch_size"] / (sum(speeds) / len(speeds))
        if sitting < 0.9 * estimate:
            return f"≈{estimate / 60:.1f}", True
    return f"{sitting / 60:.1f}", False


def render_linear(runs: dict[str, dict]) -> list[str]:
    """The ``linear`` phase's table (empty when no run has it), one row per run and epoch count."""
    linear = {(r["run"], r["epochs"]): r for r in runs.values() if r.get("phase") == "linear"}
    if not linear:
        return []
    epochs = sorted({e for _, e in linear})
    lines = ["", "The papers' `linear` protocol (frozen encoder in eval mode, features recomputed every epoch from "
             "crop + flip, SGD lr 3, momentum 0.9, batch 512, x0.1 at 60% and 80% of the epochs; theirs runs 100 "
             f"epochs) for {' and '.join(map(str, epochs))} epochs on the final checkpoints; test top-1 %, last "
             "epoch; gains over the same protocol on the run's untrained encoder:", ""]
    rows = []
    for (name, count), run in sorted(linear.items(), key=lambda item: (item[0][1], item[0][0])):
        base = runs.get(name, {})
        trained = base.get("phase") == "main"
        floor_run = linear.get((_floor_of(base, runs).get("name"), count), {}) if trained else {}
        floor = _top1(floor_run, "test", "linear").get("backbone")
        top1 = _top1(run, "test", "linear")
        rows.append([name, base.get("recipe", {}).get("method", "-") if trained else "untrained", count,
                     _num(top1.get("backbone")), _gain(top1.get("backbone"), floor), _num(top1.get("exit_0")),
                     _num(top1.get("ensemble")), _num(_top1(base, "test").get("backbone")),
                     f"{run['probe_seconds'] / 60:.1f}" if "probe_seconds" in run else "-"])
    return lines + _table(rows, ["run", "method", "epochs", "backbone", "gain over floor", "exit_0", "ensemble",
                                 "backbone, `linear_fast` (above)", "probe min (wall, shared CPU)"])


def render_rank(rank_dir: Path = RANK) -> str:
    runs = load_rank(rank_dir)
    if not runs:
        return "No method-ranking runs have finished yet (`python -m benchmarks.experiments.rank_methods` writes them)."
    lines = ["Measured here (ours): `benchmarks/experiments/rank_methods.py`, `selfcon_resnet10_w16_cifar` (0.31M "
             "parameters), batch 256, lr 0.125 (the official 0.5 at 1024, scaled), 1-epoch warm-up, per-step cosine, fp32,"
             " one CPU thread; trained on CIFAR-10 train rows 0-44,999; `linear_fast` probe (cached features, not the "
             "papers' protocol), top-1 %; gains are over the run's own untrained encoder (the floor rows; CE's is "
             "`floor_noexit`, the same architecture without exit, whose initial draw differs from CE's by the classifier)."]
    sweep = {n: r for n, r in runs.items() if r.get("phase") == "sweep"}
    floors = {n: r for n, r in runs.items() if r.get("phase") == "floor"}
    if sweep:
        lines += ["", "Stabilizer sweep, SelfCon-S (fc exit), " + f"{sweep[next(iter(sweep))]['recipe']['epochs']} epochs; "
                  "top-1 on the 5,000 held-out **validation** images (rows 45,000-49,999), which alone choose the "
                  "winner:", ""]
        rows = []
        for name, run in sweep.items():
            top1 = _top1(run, "validation")
            floor = _top1(_floor_of(run, runs), "validation").get("backbone")
            rows.append([name, _stabilizer(run["recipe"]), f"{run['train_seconds_this_sitting'] / 60:.1f}",
                         f"{run['train_summary']['final_loss']:.3f}", _num(top1.get("backbone")),
                         _gain(top1.get("backbone"), floor), _num(top1.get("exit_0")), _num(top1.get("ensemble"))])
        lines += _table(rows, ["run", "stabilizer (ours)", "train min (wall, shared CPU)", "final loss", "backbone",
                               "gain", "exit_0", "ensemble"])
    lines += ["", "Test split (10,000 images); every method the same epochs:", ""]
    rows, estimated = [], False
    for name, run in {**floors, **{n: r for n, r in runs.items() if r.get("phase") == "main"}}.items():
        top1, knn = _top1(run, "test"), run["test"]["knn"]["results"]["backbone"]["k20"]
        trained = run.get("phase") == "main"
        floor = _top1(_floor_of(run, runs), "test").get("backbone") if trained else None
        minutes, approximate = _train_minutes(run)
        estimated |= approximate
        rows.append([name, run["recipe"]["method"], _stabilizer(run["recipe"]) if trained else "-",
                     run["recipe"]["epochs"] if trained else 0, minutes,
                     f"{top1['backbone']:.2f}", _gain(top1["backbone"], floor), _num(top1.get("exit_0")),
                     _num(top1.get("ensemble")), f"{knn:.2f}"])
    lines += _table(rows, ["run", "method", "stabilizer (ours)", "epochs", "train min (wall, shared CPU)", "backbone",
                           "gain over floor", "exit_0", "ensemble", "kNN k=20"])
    if estimated:
        lines += ["", "≈: a run resumed across sessions; its time is steps x batch / its logged images/s (checkpoint "
                  "writing and start-up left out)."]
    lines += render_linear(runs)
    curves = rank_curves(runs)
    if curves:
        epochs = sorted({e for heads in curves.values() for e in heads["backbone"]})
        lines += ["", "Backbone `linear_fast` top-1 (test) versus epoch; epoch 0 is the run's floor (plot: "
                  "`benchmarks/results/rank_accuracy_vs_epoch.png`):", ""]
        lines += _table([[name, *(f"{heads['backbone'][e]:.2f}" if e in heads["backbone"] else "-" for e in epochs)]
                         for name, heads in curves.items()], ["run", *(f"epoch {e}" for e in epochs)])
    return "\n".join(lines)


def rank_curves(runs: dict[str, dict]) -> dict[str, dict[str, dict[int, float]]]:
    """``{run: {head: {epoch: top-1}}}`` of the main runs, epoch 0 from the run's floor."""
    curves = {}
    for name, run in runs.items():
        if run.get("phase") != "main" or "linear_fast_per_epoch" not in run:
            continue
        floor = _top1(_floor_of(run, runs), "test")
        heads: dict[str, dict[int, float]] = {}
        for epoch, values in run["linear_fast_per_epoch"].items():
            for head, value in values.items():
                heads.setdefault(head, {0: floor[head]} if head in floor else {})[int(epoch)] = value
        curves[name] = heads
    return curves


def render_parity(parity_path: Path = PARITY, collapse_path: Path = COLLAPSE) -> str:
    lines = []
    if parity_path.exists():
        parity = json.loads(parity_path.read_text())
        lines += [f"`python -m benchmarks.parity.parity_official OFFICIAL_CHECKOUT --steps {parity['steps']} --batch-size "
                  f"{parity['batch_size']}` (ours, this CPU, torch {parity['torch']}): the official ConResNet-18 + "
                  "ConLoss and ours from the same initial weights, SGD lr 0.05 on the same real CIFAR-10 batches; "
                  "the yardstick is the official code against itself with only its loss in float64.", ""]
        lines += _table([[case["case"], "pass" if case["passed"] else "FAIL", f"{case['max_loss_difference']:.1e}",
                          f"{case['max_noise_loss_difference']:.1e}", f"{case['final_weight_difference']:.1e}",
                          f"{case['noise_final_weight_difference']:.1e}"] for case in parity["cases"]],
                        ["case", "result", "max loss difference", "official's own noise", "final max weight difference",
                         "official's own noise"])
    if collapse_path.exists():
        collapse = json.loads(collapse_path.read_text())
        lines += ["", "The collapse plateau (`python -m benchmarks.experiments.collapse`, ours): steps on the plateau "
                  "(loss within "
                  f"{collapse['margin']} of log(N-1)·τ/τ_base and every mean projection cosine >= "
                  f"{collapse['collapsed_cosine']}); cosines at the last step.", ""]
        rows = []
        for run in collapse["runs"]:
            cos = run["trace"][-1]["cosines"]
            rows.append([run["code"], run["model"], run["batch_size"], f"{run['lr']:g}", run["warmup_steps"],
                         run["stabilizer"], f"{run['trace'][0]['plateau']:.3f}", run["reached_plateau_at"] or "-",
                         f"{run['steps_on_plateau']}/{len(run['trace'])}", f"{run['final_loss']:.3f}",
                         f"{cos['backbone']:.3f}", f"{cos['exit_0']:.3f}", f"{cos['exit_0_vs_backbone']:.3f}"])
        lines += _table(rows, ["code", "model", "batch", "lr", "warm-up steps", "stabilizer", "plateau", "reached at",
                               "steps on it", "final loss", "cos backbone", "cos exit", "cos exit-backbone"])
    return "\n".join(lines) or "Not measured yet."


_MIXCO_CASES = {"moco_mixco": "MoCo v2 + MixCo", "simclr_mixco": "SimCLR + MixCo"}
_MIXCO_GROUPS = ("query encoder", "key encoder", "queue")


def _with_noise(difference: float, noise: float) -> str:
    return f"{difference:.1e} ({noise:.1e})"


def render_parity_mixco(parity_path: Path = PARITY_MIXCO) -> str:
    """The MixCo parity table (``parity_mixco.py``): per case the loss differences (steps 1-2, all steps) and each
    group's weight differences (after step 1, final), each beside the official code's own float64 noise; then how
    fast that noise grows, and split-BN's measured effect."""
    if not parity_path.exists():
        return "Not measured yet."
    parity = json.loads(parity_path.read_text())
    lines = [f"`python -m benchmarks.parity.parity_mixco OFFICIAL_CHECKOUT --steps {parity['steps']} --batch-size "
             f"{parity['batch_size']}` (ours, this CPU, torch {parity['torch']}, {parity['threads']} thread"
             f"{'s' if parity['threads'] != 1 else ''}, fp32): "
             "the official code (torchvision ResNet-18 with its MLP head, one-GPU path) and ours (`mixco_resnet18`; "
             "MoCo with `key_bn: none`) from the same initial weights (query and key encoders, heads, queue), with the "
             f"same λ and pairing, SGD (momentum 0.9) on the same real CIFAR-10 batches at {parity['image_size']} px. "
             "Each cell is ours' largest absolute difference from the official code (weights include BatchNorm "
             "running statistics), the official code's own noise "
             f"(the official code with only its loss in float64) in brackets; a case passes when at every step ours "
             f"is within {parity['tolerance_factor']:g}x the largest noise so far.", ""]
    rows = []
    for case in parity["cases"]:
        settings = f"τ {case['temperature']:g}, mix τ {case['mix_temperature']:g}, mix weight {case['mix_weight']:g}"
        if "queue_size" in case:
            settings += f", queue {case['queue_size']}, m {case['momentum']:g}"
        settings += f", lr {case['lr']:g}, wd {case['weight_decay']:g}"
        early = slice(0, 2)
        cells = []
        for group in _MIXCO_GROUPS:
            entry = case["groups"].get(group)
            cells.append("-" if entry is None else
                         f"{_with_noise(entry['weight_difference'][0], entry['noise_weight_difference'][0])}; "
                         f"{_with_noise(entry['final_weight_difference'], entry['noise_final_weight_difference'])}")
        rows.append([_MIXCO_CASES.get(case["case"], case["case"]), settings, "pass" if case["passed"] else "FAIL",
                     _with_noise(max(case["loss_difference"][early]), max(case["noise_loss_difference"][early])),
                     _with_noise(case["max_loss_difference"], case["max_noise_loss_difference"]), *cells])
    lines += _table(rows, ["case", "settings", "result", "loss, steps 1-2", f"loss, steps 1-{parity['steps']}",
                           "query encoder + head: after step 1; final", "key encoder + head: after step 1; final",
                           "queue: after step 1; final"])
    largest = [f"{_MIXCO_CASES.get(case['case'], case['case'])}: "
               + ", ".join(f"{name} `{group['final_largest_in']}`" for name, group in case["groups"].items()
                           if "final_largest_in" in group)
               for case in parity["cases"]]
    lines += ["", f"Where the largest final differences lie: {'; '.join(largest)}."]
    growth = [f"{_MIXCO_CASES.get(case['case'], case['case'])} from {max(case['noise_loss_difference'][:2]):.0e} in "
              f"steps 1-2 to {case['noise_loss_difference'][2]:.0e} at step 3" for case in parity["cases"]
              if len(case["noise_loss_difference"]) > 2]
    if growth:
        lines += ["", "The official code's own noise in the loss grows "
                  f"({'; '.join(growth)}): from step 3 on both codes amplify rounding, so the later steps and the final "
                  "weights confirm agreement only at that level; steps 1-2 and the weights after step 1 are the sharp "
                  "test (a mix temperature off by 1e-3 or λ shifted by 0.01 already fails at step 1: "
                  "`tests/benchmarks/parity/test_parity_mixco.py`)."]
    for case in parity["cases"]:
        effect = case.get("split_bn_effect")
        if effect:
            lines += ["", f"Our default in one process, `key_bn: split` ({effect['num_splits']} chunks of the key batch "
                      "through the key encoder; it stands in for the shuffle-BN of the official 2-GPU scripts), "
                      f"changes a {_MIXCO_CASES[case['case']]} step against the official one-GPU code on the same "
                      f"batches: the first step's loss by {effect['first_step_loss_difference']:.1e} "
                      f"({effect['first_step_relative_loss_difference']:.1%}), where `key_bn: none` differs by "
                      f"{case['loss_difference'][0]:.1e}."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- device_check.py
def load_device(device_dir: Path = DEVICE) -> tuple[str, dict] | None:
    """The latest GPU run of ``device_check.py`` (``smoke`` false) by its start stamp, with its file name."""
    runs = [(path.name, json.loads(path.read_text())) for path in sorted(device_dir.glob("*.json"))]
    runs = [(name, run) for name, run in runs if not run.get("smoke")]
    return max(runs, key=lambda item: item[1].get("started_utc", "")) if runs else None


def _met(shown: str, ok: bool) -> str:
    return f"{shown} (met)" if ok else f"{shown} (**not met**)"


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} GiB"


def render_device(device_dir: Path = DEVICE) -> str:
    loaded = load_device(device_dir)
    if loaded is None:
        return ("No GPU measurement yet: `benchmarks/device/device_check.py` has not run on a GPU (the issue \"Run the "
                "device check\"; `python -m benchmarks.device.device_prepare` prepares the one call).")
    name, run = loaded
    env = run["environment"]
    lines = [f"Measured on one {env['device']} (ours): "
             f"`python -m benchmarks.device.device_check {' '.join(run['arguments'])}` "
             f"at commit {(env.get('git_commit') or 'unknown')[:12]}, torch {env['torch']}, CUDA {env['cuda']}, timm "
             f"{env['timm']}, {env['cpu_count']} CPU cores; `benchmarks/results/device/{name}`."]
    missing = [part for part in run["parts"] if part not in run]
    if not run.get("complete"):
        lines += ["", f"**Incomplete:** the run stopped after {run['seconds']:.0f} s"
                  + (f"; not measured: {', '.join(missing)}" if missing else "") + "."]
    if "pipelines" in run:
        first = next(iter(run["pipelines"].values()))
        layout = ", channels-last" if first.get("channels_last") else ""
        lines += ["", "`selfcon_resnet18_cifar`, the official CIFAR recipes' global batch, one step = forward, loss, "
                  f"backward, SGD step ({first.get('precision', '?')}{layout}); images/s counts images, not views; "
                  "`device`: "
                  "`data_pipeline=device`, `workers`: the PIL pipeline on every CPU core, pre-made: one batch "
                  "already on the GPU (the ceiling); augment share: the batch augmentation timed alone over the "
                  f"device step (goal at most {AUGMENT_TARGET:.0%}).", ""]
        rows = []
        for label, row in run["pipelines"].items():
            target = DEVICE_TARGETS.get(label)
            rate = f"{row['device_images_per_s']:,.0f}"
            rows.append([label, row["global_batch"], row["views"],
                         rate if target is None else _met(rate, row["device_images_per_s"] >= target),
                         "-" if target is None else f"{target:,}", f"{row['workers_images_per_s']:,.0f}",
                         f"{row['premade_images_per_s']:,.0f}", f"{row['device_vs_premade']:.3f}",
                         _met(f"{row['augment_share']:.1%}", row["augment_share"] <= AUGMENT_TARGET)])
        lines += _table(rows, ["method", "global batch", "views", "device img/s", "goal img/s", "workers img/s",
                               "pre-made img/s", "device / pre-made", "augment share"])
    if "resnet50" in run:
        cost = run["resnet50"]
        selfcon, supcon, ratio = cost["SelfCon (same exit)"], cost["SupCon"], cost["ratio"]
        memory = "-" if ratio["memory"] is None else f"{ratio['memory']:.2f}"
        lines += ["", f"`{ratio['model']}` at {selfcon['image_size']} px, {selfcon['images_per_view']} images per view, "
                  "synthetic images: SelfCon (one `same` exit, the paper's ImageNet setting) against SupCon (two "
                  "views), step time and peak GPU memory (`torch.cuda.max_memory_allocated`); the paper's ratios are "
                  "from the AAAI version (arXiv 2106.15499 v6), ImageNet on its GPUs.", ""]
        lines += _table([["step time", f"{selfcon['step_s'] * 1e3:.1f} ms", f"{supcon['step_s'] * 1e3:.1f} ms",
                          f"{ratio['time']:.2f}", f"{ratio['paper']['time']:.2f}"],
                         ["peak memory", _gib(selfcon["peak_gib"]), _gib(supcon["peak_gib"]), memory,
                          f"{ratio['paper']['memory']:.2f}"]],
                        ["measure", "SelfCon", "SupCon", "SelfCon / SupCon (ours)", "paper (v6)"])
    if "train" in run:
        train = run["train"]
        top1 = ", ".join(f"{head} {value:.2f}" for head, value in train["linear_fast_top1"].items())
        lines += ["", f"`train()` end to end: {train['steps']} SelfCon steps with `data_pipeline=device`, losses "
                  f"{'finite' if train['finite_losses'] else '**not finite**'}, images/s between loss reads "
                  f"{', '.join(f'{r:,.0f}' for r in train['images_per_s'])}; `timm-selfcon eval` exit status "
                  f"{train['eval_exit_status']}, `linear_fast` top-1 {top1}."]
    if "compare" in run:
        train_images = next(iter(run.get("pipelines", {}).values()), {}).get("train_images")
        lines += render_device_compare(run["compare"], run.get("compare_budget_s"), train_images)
    return "\n".join(lines)


def render_device_compare(compare: dict, budget_s: float | None, train_images: int | None) -> list[str]:
    """The accuracy ranking after the same epochs, trained runs by backbone top-1, then the untrained floors."""
    floors = {n: r for n, r in compare.items() if r["epochs"] == 0}
    trained = sorted(((n, r) for n, r in compare.items() if r["epochs"]),
                     key=lambda item: -item[1]["linear_fast_top1"]["backbone"])
    epochs = {r["epochs"] for _, r in trained}
    images = "?" if train_images is None else f"{train_images:,}"
    lines = ["", f"CE vs SupCon vs SelfCon-S on CIFAR-10 (ours): the official CIFAR recipes "
             f"(`recipes/selfcon/cifar10_resnet18_*.yaml`: batch, lr, temperature) on {images} training "
             f"images for {'/'.join(map(str, sorted(epochs))) or '-'} epoch(s)"
             + (f" (the most that fit a {budget_s:.0f} s budget at the measured step rates)" if budget_s else "")
             + ", cosine with a 1-epoch warm-up, against the papers' 1,000 epochs; `linear_fast` top-1 on the test split "
             "(last epoch); gain over the untrained encoder with the same exits.", ""]
    rows = []
    for rank, (name, run) in enumerate(trained, 1):
        top1 = run["linear_fast_top1"]
        floor = floors.get("untrained (with exit)" if "exit_0" in top1 else "untrained (no exit)")
        base = floor["linear_fast_top1"]["backbone"] if floor else None
        rows.append([rank, name, run["epochs"], f"{run['train_s']:.0f}", f"{run['final_loss']:.3f}",
                     f"{top1['backbone']:.2f}", _gain(top1["backbone"], base), _num(top1.get("exit_0")),
                     _num(top1.get("ensemble"))])
    for name, run in floors.items():
        top1 = run["linear_fast_top1"]
        rows.append(["-", name, 0, "-", "-", f"{top1['backbone']:.2f}", "-", _num(top1.get("exit_0")),
                     _num(top1.get("ensemble"))])
    return lines + _table(rows, ["rank", "run", "epochs", "train s", "final loss", "backbone", "gain over floor",
                                 "exit_0", "ensemble"])


def render_headline(rank_dir: Path = RANK, parity_paths: tuple[Path, ...] = (PARITY, PARITY_MIXCO)) -> str:
    """The README's headline table (at most 15 lines): the parity checks and the CPU ranking's endpoints."""
    rows = []
    for path, label in zip(parity_paths, ("SelfCon / SupCon", "MixCo (MoCo v2, SimCLR)"), strict=True):
        if path.exists():
            cases = json.loads(path.read_text())["cases"]
            passed = sum(case["passed"] for case in cases)
            rows.append([f"{label} step for step against the official code, 10 SGD steps",
                         f"{passed} of {len(cases)} cases pass", f"`{path.relative_to(ROOT)}`"])
    runs = load_rank(rank_dir)
    labels = {"main_ce": "CE", "main_supcon": "SupCon", "main_selfcon_head_bn": "SelfCon-S + head BatchNorm (ours)",
              "main_selfcon_none": "SelfCon-S as published", "floor_noexit": "the untrained encoder (floor)"}
    for name, label in labels.items():
        if name in runs:
            run = runs[name]
            trained = run.get("phase") == "main"
            what = f"{label}, {run['recipe']['epochs']} epochs" if trained else label
            rows.append([f"CIFAR-10, `selfcon_resnet10_w16_cifar`, {what}: `linear_fast` top-1",
                         _num(_top1(run, "test").get("backbone")), f"`{(rank_dir / name).relative_to(ROOT)}.json`"])
    if not rows:
        return "No results yet."
    return "\n".join(_table(rows, ["measured here (ours, one CPU thread)", "result", "source"]))


BLOCKS = {"runs": render, "rank": render_rank, "parity": render_parity, "parity_mixco": render_parity_mixco,
          "device": render_device}  # docs/results.md marker -> renderer
README_BLOCKS = {"headline": render_headline}  # README.md marker -> renderer


def draw_rank_plot(rank_dir: Path = RANK, out_dir: Path = RESULTS) -> Path | None:
    curves = rank_curves(load_rank(rank_dir))
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for index, (name, heads) in enumerate(curves.items()):
        for head, style in (("backbone", "-"), ("exit_0", "--"), ("ensemble", ":")):
            if head in heads:
                points = sorted(heads[head].items())
                ax.plot(*zip(*points, strict=True), style, color=f"C{index}", marker="o", label=f"{name} {head}")
    ax.set(xlabel="epoch (0: untrained)", ylabel="linear_fast top-1 % (test)",
           title="CIFAR-10, selfcon_resnet10_w16_cifar, one CPU thread (ours)")
    ax.legend(fontsize=6)
    return save_figure(fig, out_dir / "rank_accuracy_vs_epoch.png")


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
        written.append(save_figure(fig, out_dir / "accuracy_vs_epoch.png"))
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
        written.append(save_figure(fig, out_dir / "cost.png"))
    return written


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out ``fig`` (a matplotlib Figure), write it to ``path`` atomically (120 dpi) and close it; returns ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def rendered(text: str, blocks: dict, where: str) -> str:
    """``text`` with every block of ``blocks`` re-rendered between its markers (a missing marker: ValueError)."""
    for name, render_block in blocks.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        if begin not in text or end not in text:
            raise ValueError(f"{where} lacks the {begin} ... {end} markers")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{render_block()}\n{end}{tail}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for path, blocks in ((README, README_BLOCKS), (DOC, BLOCKS)):
        text = path.read_text()
        try:
            updated = rendered(text, blocks, path.name)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 1
        if args.check:
            if updated != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            write_text_atomic(path, updated)
    if stale:
        print(f"{', '.join(stale)}: the results differ from benchmarks/results/*.json; run "
              "python -m benchmarks.report.make_report", file=sys.stderr)
        return 1
    if not args.check:
        draw_plots()
        draw_rank_plot()
    return 0


if __name__ == "__main__":
    sys.exit(main())
