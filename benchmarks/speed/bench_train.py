"""Training-step cost of each method, and throughput of the real ``train()`` loop, on this CPU.

SelfCon (Bae et al., AAAI 2023, arXiv 2106.15499) trains on a single view: its sub-network exit replaces
SupCon's second crop, so a SelfCon step should cost about half of a SupCon step (one encoder pass over ``B``
images instead of ``2B``) and add about half the memory. This script measures:

[1] **Step time and memory per method**, ResNet-18 CIFAR (``recipes/selfcon/cifar10_resnet18_*.yaml``),
    batch 64 (``--batches``), 32 px, synthetic inputs, each configuration in a fresh process: CE, SupCon,
    SupCon-S, SelfCon with the ``fc`` exit, SelfCon with the ``same`` exit and SelfCon-M (two crops, ``fc`` exit).
    A step is built exactly as ``train()`` builds it (model, method, optimizer, autocast) and consists of
    forward, loss, backward, optimizer step. Memory = peak resident
    memory during the steps minus the resident memory before the first step (the kernel's high-water mark is
    reset just before it). Targets: SelfCon-fc <= 0.45x SupCon's step time and <= 0.6x its added memory.
[2] **Images per second of** ``timm-selfcon train`` for SelfCon ResNet-18 CIFAR at its default CPU settings
    (``recipes/quickstart.yaml``: its precision and memory format, batch 128, 1 loader worker, the shipped
    CIFAR-10 subset), read from the loop's own per-step ``metrics.jsonl``, against an fp32 eager reference step of the
    same model (projection heads on every exit, a mask-based SupCon loss over ``[B, K+1, D]`` written here the
    way the official code computes it: full ``[N, N]`` logits, max subtraction, self mask, log of the masked
    sum, mask-weighted mean), on the same batch size. Target: >= 1.6x.
[3] **Data waiting** of that loop: the part of each step's time (from the loop's own ``metrics.jsonl``) spent
    outside the step itself, i.e. waiting for the loader's next batch (and the loop's bookkeeping between steps),
    as a fraction of the step time. The step itself is timed by a ``train()`` callback, from ``on_step_begin`` (the
    batch is in hand) to ``on_step_end``. Target: <= 10% (after the first step, which includes starting the worker).

Every measurement runs in a fresh subprocess; [1] runs its configurations round by round (order alternating
between rounds) so that drifting load from other processes hits them alike, and reports medians. Each worker
runs with ``OMP_WAIT_POLICY=PASSIVE`` by default (idle OpenMP threads sleep instead of spinning), and reports
both wall time and the process's CPU time, which is less sensitive to other processes on the machine. The load
average is printed before and after: on a loaded machine, compare the side-by-side ratios, not absolute numbers.

[1] runs in fp32 with channels_last by default (``--precision bf16``, ``--memory-format contiguous`` to compare);
``--cost`` measures [1] at batches 64 and 256 and writes ``benchmarks/results/cost.json``, the reproduction
report's cost table and chart (``make_report.py``). ``--loop-variant 'channels_last=true'`` adds a ``train()`` run
with those recipe overrides to [2] (repeatable). ``--parts 1`` or ``--parts 2`` runs one part only.

Usage: ``python -m benchmarks.speed.bench_train [--quick] [--cost] [--precision bf16] [--loop-variant '...'] [--json PATH]``
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch

from benchmarks.harness import RESULTS, ROOT, environment, peak_rss, print_table, reset_peak_rss, run_fresh, write_json

RECIPES = ROOT / "recipes"
MB = 1024 * 1024
STEP_TIME_TARGET = 0.45
MEMORY_TARGET = 0.6
THROUGHPUT_TARGET = 1.6
DATA_WAIT_TARGET = 0.10
#: [2] and [3] run the quickstart recipe with the issue's model, SelfCon ResNet-18 CIFAR (the quickstart's is a ResNet-10)
LOOP_MODEL = "model=selfcon_resnet18_cifar"

#: label -> (recipe, extra overrides); the SelfCon CIFAR recipe's default exit is ``fc`` after stage 2.
METHOD_CASES: dict[str, tuple[str, list[str]]] = {
    "CE": ("selfcon/cifar10_resnet18_ce.yaml", []),
    "SupCon": ("selfcon/cifar10_resnet18_supcon.yaml", []),
    "SupCon-S": ("selfcon/cifar10_resnet18_supcon_s.yaml", []),
    "SelfCon (fc exit)": ("selfcon/cifar10_resnet18_selfcon.yaml", ["model_kwargs.sub_network=fc"]),
    "SelfCon (same exit)": ("selfcon/cifar10_resnet18_selfcon.yaml", ["model_kwargs.sub_network=same"]),
    "SelfCon-M (fc exit)": ("selfcon/cifar10_resnet18_selfcon_m.yaml", ["model_kwargs.sub_network=fc"]),
}


# ---- measurement helpers (inside workers) ---------------------------------------------------------------

def mask_based_supcon(features: torch.Tensor, labels: torch.Tensor, temperature: float,
                      base_temperature: float) -> torch.Tensor:
    """SupCon L_out over every row of ``features [B, V, D]`` (V = exits + backbone for SelfCon), labels ``[B]``.

    Written the way the official code computes it, with dense ``[N, N]`` masks (``N = B * V``).
    """
    batch, views, _ = features.shape
    rows = features.transpose(0, 1).reshape(batch * views, -1)  # view-major, as torch.cat(torch.unbind(., 1))
    row_labels = labels.repeat(views)
    same_class = torch.eq(row_labels.view(-1, 1), row_labels.view(1, -1)).float()
    not_self = torch.ones_like(same_class) - torch.eye(batch * views, device=features.device)
    positives = same_class * not_self
    scores = torch.matmul(rows, rows.T) / temperature
    scores = scores - scores.max(dim=1, keepdim=True).values.detach()
    log_denominator = torch.log((torch.exp(scores) * not_self).sum(dim=1, keepdim=True))
    log_prob = scores - log_denominator
    mean_log_prob_positive = (positives * log_prob).sum(dim=1) / positives.sum(dim=1)
    return -(temperature / base_temperature) * mean_log_prob_positive.mean()


def timed_steps(step: Callable[[], Any], warmup: int, repeats: int) -> dict[str, Any]:
    """Wall and CPU ms of ``repeats`` runs of ``step`` after ``warmup`` untimed ones (medians and all runs)."""
    wall, cpu = [], []
    for index in range(warmup + repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        step()
        if index >= warmup:
            wall.append((time.perf_counter() - wall_start) * 1e3)
            cpu.append((time.process_time() - cpu_start) * 1e3)
    return {"wall_ms": statistics.median(wall), "cpu_ms": statistics.median(cpu), "wall_runs_ms": wall,
            "cpu_runs_ms": cpu}


def synthetic_batch(batch: int, views: int, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, views, 3, 32, 32, generator=generator)
    labels = torch.arange(batch) % num_classes
    return images, labels


# ---- worker tasks ----------------------------------------------------------------------------------------

def task_method_step(spec: dict[str, Any]) -> dict[str, Any]:
    """One method's training step, built as ``train()`` builds it; time and memory the steps add."""
    import timm
    from timm.optim import create_optimizer_v2

    from timm_selfcon.config import resolve_config
    from timm_selfcon.engine.train import method_kwargs, timm_optimizer_name
    from timm_selfcon.methods import build_method

    config = resolve_config(RECIPES / spec["recipe"], [*spec["overrides"], f"batch_size={spec['batch']}",
                                                       f"precision={spec['precision']}",
                                                       f"channels_last={str(spec['channels_last']).lower()}"])
    torch.manual_seed(0)
    num_classes = 10 if config.method == "ce" else 0
    model = timm.create_model(config.model, num_classes=num_classes, **config.model_kwargs)
    method = build_method(config.method, model, **method_kwargs(config))
    if config.channels_last:
        method = method.to(memory_format=torch.channels_last)
    method.train()
    optimizer = create_optimizer_v2(method.trainable_parameters(), opt=timm_optimizer_name(config.optimizer),
                                    lr=1e-3, momentum=config.momentum, weight_decay=config.weight_decay)
    views, labels = synthetic_batch(config.batch_size, method.views_required)
    use_bf16 = config.precision == "bf16"

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss, _ = method(views, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        method.after_optimizer_step(1, 1)

    gc.collect()
    peak_reset = reset_peak_rss()
    rss_before = psutil.Process().memory_info().rss
    timing = timed_steps(step, spec["warmup"], spec["repeats"])
    return {**timing, "method": config.method, "model_kwargs": config.model_kwargs, "views": method.views_required,
            "precision": config.precision, "channels_last": config.channels_last,
            "rss_before_mb": rss_before / MB, "peak_added_mb": (peak_rss() - rss_before) / MB,
            "peak_is_steps_only": peak_reset}


def task_reference_step(spec: dict[str, Any]) -> dict[str, Any]:
    """fp32 eager SelfCon step of the quickstart's model with the mask-based loss above."""
    import timm

    from timm_selfcon.config import resolve_config
    from timm_selfcon.methods import build_method, with_projection_heads

    config = resolve_config(RECIPES / "quickstart.yaml", [LOOP_MODEL])
    torch.manual_seed(0)
    model = timm.create_model(config.model, num_classes=0, **config.model_kwargs)
    projected = with_projection_heads(model, config.method_kwargs["out_dim"]).train()
    optimizer = torch.optim.SGD(projected.parameters(), lr=1e-3, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    views, labels = synthetic_batch(config.batch_size, 1)
    images = views[:, 0].contiguous()

    # the reference loss computes the package's loss value (so the comparison is like for like)
    with torch.no_grad():
        features = projected.forward_projections(images)
        ours = build_method("selfcon", model).criterion(features, labels)
        theirs = mask_based_supcon(features, labels, config.method_kwargs["temperature"],
                                   config.method_kwargs["base_temperature"])
    if not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"the reference loss {theirs.item()} differs from the package's {ours.item()}")

    def step() -> None:
        loss = mask_based_supcon(projected.forward_projections(images), labels, config.method_kwargs["temperature"],
                                 config.method_kwargs["base_temperature"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    timing = timed_steps(step, spec["warmup"], spec["repeats"])
    return {**timing, "batch": config.batch_size, "images_per_s": config.batch_size / timing["wall_ms"] * 1e3,
            "images_per_cpu_s": config.batch_size / timing["cpu_ms"] * 1e3, "loss_check": [ours.item(), theirs.item()]}


class StepClock:
    """``train()`` callback: wall time when each step starts (``on_step_begin``: its batch is in hand) and ends, and
    the process's CPU time at each end."""

    def __init__(self) -> None:
        self.begin: list[float] = []
        self.end: list[float] = []
        self.cpu_end: list[float] = []

    def on_step_begin(self, step: int) -> None:
        self.begin.append(time.perf_counter())

    def on_step_end(self, step: int, logs: dict[str, Any]) -> None:
        self.end.append(time.perf_counter())
        self.cpu_end.append(time.process_time())


def task_train_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """``train()`` on the quickstart recipe for a few steps; per-step times from its metrics, data waits."""
    from timm_selfcon.config import resolve_config
    from timm_selfcon.engine.train import train

    clock = StepClock()
    with tempfile.TemporaryDirectory() as output_dir:
        config = resolve_config(RECIPES / "quickstart.yaml", [
            LOOP_MODEL, f"max_steps={spec['steps']}", "probe.enabled=false", f"output_dir={output_dir}",
            "log_every_steps=1",
            "save_every_steps=1000000", *spec.get("overrides", [])])
        started = time.perf_counter()
        train(config, callbacks=[clock])
        total_s = time.perf_counter() - started
        records = [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]
    if len(clock.begin) != len(clock.end):
        raise RuntimeError(f"train() called on_step_begin {len(clock.begin)} times and on_step_end {len(clock.end)} "
                           "times: [3] needs the engine to call callback.on_step_begin(step) once the step's batch is "
                           "in hand")
    step_s = [config.batch_size / r["images_per_s"] for r in records]
    # a step's time in metrics.jsonl runs from the previous step's log to its own: what the step itself does not
    # take is the wait for its batch (and the loop's bookkeeping)
    waits = [step - (end - begin) for step, begin, end in zip(step_s, clock.begin, clock.end)]
    cpu_step_s = [b - a for a, b in itertools.pairwise(clock.cpu_end)][: len(step_s) - 1]
    skip = spec["skip"]
    steady_step, steady_wait = step_s[skip:], waits[skip:]
    return {
        "batch": config.batch_size, "precision": config.precision, "channels_last": config.channels_last,
        "num_workers": config.num_workers, "torch_threads": torch.get_num_threads(), "steps": len(step_s),
        "skipped_first_steps": skip, "step_s": step_s, "data_wait_s": waits,
        "images_per_s": config.batch_size / statistics.median(steady_step),
        "main_process_cpu_ms_per_step": statistics.median(cpu_step_s[skip:]) * 1e3 if cpu_step_s[skip:] else None,
        "data_wait_fraction": sum(steady_wait) / sum(steady_step),
        "data_wait_fraction_max_step": max(w / s for w, s in zip(steady_wait, steady_step)),
        "data_wait_fraction_with_first_step": sum(waits) / sum(step_s),
        "wall_s_including_setup": total_s,
    }


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "method_step": task_method_step, "reference_step": task_reference_step, "train_loop": task_train_loop,
}


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    return TASKS[spec["task"]](spec)


def spawn(spec: dict[str, Any], omp_wait_policy: str) -> dict[str, Any]:
    """Run one task in a fresh Python process (the OpenMP wait policy must be set before torch loads)."""
    env = {"TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    if omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    return run_fresh(run_worker, spec, env=env, cwd=ROOT)


# ---- report ---------------------------------------------------------------------------------------------

def verdict(value: float, target: float, at_most: bool) -> str:
    return "met" if (value <= target if at_most else value >= target) else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, few steps (a few minutes)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of [1] and [2] (default 3; quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per [1] worker (default 5; quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing in [1] and the reference")
    parser.add_argument("--train-steps", type=int, default=None, help="steps of the train() run (default 20; quick 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the [1] and reference workers")
    parser.add_argument("--precision", default="fp32", choices=["bf16", "fp32"],
                        help="precision of the [1] method steps (default fp32: the CPU default without AMX)")
    parser.add_argument("--memory-format", default="channels_last", choices=["channels_last", "contiguous"],
                        help="memory format of the [1] method steps (default channels_last: the CPU default)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64], help="[1]: batch sizes (default 64)")
    parser.add_argument("--cost", action="store_true",
                        help="the reproduction report's cost table: [1] only, batches 64 and 256, written to "
                             "benchmarks/results/cost.json (and rendered into the README by make_report.py)")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "default"])
    parser.add_argument("--loop-variant", action="append", default=[], metavar="'KEY=VALUE ...'",
                        help="[2]: also time train() with these recipe overrides (repeatable), e.g. 'channels_last=true'")
    parser.add_argument("--parts", default="1,2", help="which measurements: 1 (method steps), 2 (train loop, with 3)")
    parser.add_argument("--json", type=Path, default=None, help="write all results as JSON to this path")
    args = parser.parse_args()
    if args.cost:
        args.parts, args.batches = "1", [64, 256]
        args.json = args.json or RESULTS / "cost.json"

    rounds = args.rounds or (1 if args.quick else 3)
    repeats = args.repeats or (2 if args.quick else 5)
    train_steps = args.train_steps or (8 if args.quick else 20)
    parts = {part.strip() for part in args.parts.split(",")}
    if rounds < 1 or repeats < 1 or train_steps < 4 or not parts <= {"1", "2"}:
        parser.error(f"need --rounds >= 1, --repeats >= 1, --train-steps >= 4, --parts from 1,2; got {rounds}, "
                     f"{repeats}, {train_steps}, {args.parts!r}")
    started = time.perf_counter()
    results: dict[str, Any] = {
        **environment("torch"), "quick": args.quick, "rounds": rounds, "repeats": repeats, "warmup": args.warmup,
        "threads": args.threads, "omp_wait_policy": args.omp_wait_policy,
        **environment("cpu_capability", "cpu_count", machine="cpu", load_average_before="load_average"),
        "model": "selfcon_resnet18_cifar",
        "precision_label": args.precision + (" + channels_last" if args.memory_format == "channels_last" else ""),
    }
    print(f"torch {torch.__version__}, CPU capability {results['cpu_capability']}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads per worker, OMP_WAIT_POLICY={args.omp_wait_policy}; load average (1, 5, 15 min) "
          f"before: {', '.join(f'{x:.2f}' for x in results['load_average_before'])}")

    def progress(what: str) -> None:
        print(f"  ... {what} ({time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.2f})", flush=True)

    if "1" in parts:
        results["method_steps"] = measure_methods(args, rounds, repeats, progress)
    if "2" in parts:
        results.update(measure_loop(args, rounds, repeats, train_steps, progress))
    results["load_average_after"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - started

    if "1" in parts:
        for batch, methods in results["method_steps"].items():
            print_methods(methods, results["precision_label"], int(batch), rounds, repeats)
    if "2" in parts:
        print_loop(results)
    print(f"\nload average after: {', '.join(f'{x:.2f}' for x in results['load_average_after'])}; "
          f"total {results['wall_s']:.0f} s")

    if args.json is not None:
        write_json(args.json, results)


def measure_methods(args: argparse.Namespace, rounds: int, repeats: int,
                    progress: Callable[[str], None]) -> dict[str, Any]:
    """[1]: every method's step in a fresh process per configuration, round-robin; medians and ratios to SupCon.

    Returns ``{str(batch): {label: medians, ratios and runs}}``.
    """
    return {str(batch): measure_methods_at(args, batch, rounds, repeats, progress) for batch in args.batches}


def measure_methods_at(args: argparse.Namespace, batch: int, rounds: int, repeats: int,
                       progress: Callable[[str], None]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in METHOD_CASES}
    for round_index in range(rounds):
        labels = list(METHOD_CASES) if round_index % 2 == 0 else list(reversed(METHOD_CASES))
        for label in labels:
            recipe, overrides = METHOD_CASES[label]
            runs[label].append(spawn(dict(task="method_step", recipe=recipe, overrides=overrides, batch=batch,
                                          precision=args.precision,
                                          channels_last=args.memory_format == "channels_last",
                                          warmup=args.warmup, repeats=repeats, threads=args.threads),
                                     args.omp_wait_policy))
            progress(f"[1] {label}, batch {batch}, round {round_index + 1}")
    methods = {label: {"views": rs[0]["views"], "wall_ms": statistics.median(r["wall_ms"] for r in rs),
                       "cpu_ms": statistics.median(r["cpu_ms"] for r in rs),
                       "peak_added_mb": statistics.median(r["peak_added_mb"] for r in rs),
                       "peak_is_steps_only": all(r["peak_is_steps_only"] for r in rs), "runs": rs}
               for label, rs in runs.items()}
    supcon = methods["SupCon"]
    for entry in methods.values():
        entry["wall_vs_supcon"] = entry["wall_ms"] / supcon["wall_ms"]
        entry["cpu_vs_supcon"] = entry["cpu_ms"] / supcon["cpu_ms"]
        entry["memory_vs_supcon"] = entry["peak_added_mb"] / supcon["peak_added_mb"]
    return methods


def measure_loop(args: argparse.Namespace, rounds: int, repeats: int, train_steps: int,
                 progress: Callable[[str], None]) -> dict[str, Any]:
    """[2] + [3]: the train() loop (quickstart defaults, and each --loop-variant) against the fp32 reference."""
    variants = {"defaults": []}
    for variant in args.loop_variant:
        variants[variant] = variant.split()
    reference_spec = dict(task="reference_step", warmup=args.warmup, repeats=max(repeats, 3), threads=args.threads)
    order: list[tuple[str, dict[str, Any]]] = [("reference", reference_spec)]
    order += [(name, dict(task="train_loop", steps=train_steps, skip=2, overrides=overrides))  # default threads
              for name, overrides in variants.items()]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in order}
    for round_index in range(rounds):
        for name, spec in order if round_index % 2 == 0 else reversed(order):
            runs[name].append(spawn(spec, args.omp_wait_policy))
            progress(f"[2] {name}, round {round_index + 1}")
    reference_ips = statistics.median(r["images_per_s"] for r in runs["reference"])
    reference_ipcs = statistics.median(r["images_per_cpu_s"] for r in runs["reference"])
    loops = {}
    for name in variants:
        ips = statistics.median(r["images_per_s"] for r in runs[name])
        ipcs = statistics.median(r["batch"] / r["main_process_cpu_ms_per_step"] * 1e3 for r in runs[name])
        loops[name] = {
            "images_per_s": ips, "ratio": ips / reference_ips,
            "images_per_cpu_s": ipcs, "cpu_ratio": ipcs / reference_ipcs,
            "per_round_ratio": [lp["images_per_s"] / rf["images_per_s"] for lp, rf in zip(runs[name], runs["reference"])],
            "data_wait_fraction": statistics.median(r["data_wait_fraction"] for r in runs[name]),
            "data_wait_max_step_fraction": max(r["data_wait_fraction_max_step"] for r in runs[name]),
            "data_wait_fraction_with_first_step": statistics.median(r["data_wait_fraction_with_first_step"]
                                                                    for r in runs[name]),
            "runs": runs[name],
        }
    return {"reference_fp32_eager": {"images_per_s": reference_ips, "images_per_cpu_s": reference_ipcs,
                                     "runs": runs["reference"]}, "train_loop": loops}


def print_methods(methods: dict[str, Any], precision_label: str, batch: int, rounds: int, repeats: int) -> None:
    print(f"\n[1] Training step per method, ResNet-18 CIFAR, batch {batch} x 32 px, {precision_label}, median of "
          f"{rounds} fresh process(es) x {repeats} steps (MB: peak RSS the steps add over the RSS before the first step)")
    rows = [[label, str(m["runs"][0]["views"]), f"{m['wall_ms']:.0f}", f"{m['cpu_ms']:.0f}",
             f"{m['peak_added_mb']:.0f}" + ("" if m["peak_is_steps_only"] else "*"), f"{m['wall_vs_supcon']:.2f}",
             f"{m['cpu_vs_supcon']:.2f}", f"{m['memory_vs_supcon']:.2f}"] for label, m in methods.items()]
    print_table(rows, ["method", "views", "wall ms", "cpu ms", "MB", "time/SupCon wall", "time/SupCon cpu",
                       "mem/SupCon"])
    selfcon = methods["SelfCon (fc exit)"]
    if batch != 64:
        return
    print(f"    SelfCon (fc) step time <= {STEP_TIME_TARGET}x SupCon: wall {selfcon['wall_vs_supcon']:.3f} "
          f"({verdict(selfcon['wall_vs_supcon'], STEP_TIME_TARGET, True)}), cpu {selfcon['cpu_vs_supcon']:.3f} "
          f"({verdict(selfcon['cpu_vs_supcon'], STEP_TIME_TARGET, True)})")
    print(f"    SelfCon (fc) memory <= {MEMORY_TARGET}x SupCon: {selfcon['memory_vs_supcon']:.3f} "
          f"({verdict(selfcon['memory_vs_supcon'], MEMORY_TARGET, True)})")


def print_loop(results: dict[str, Any]) -> None:
    reference, loops = results["reference_fp32_eager"], results["train_loop"]
    first = loops["defaults"]["runs"][0]
    print(f"\n[2] timm-selfcon train, SelfCon ResNet-18 CIFAR, quickstart defaults ({first['precision']}, channels_last="
          f"{first['channels_last']}, batch {first['batch']}, {first['num_workers']} loader worker, "
          f"{first['torch_threads']} torch threads), median step after the first {first['skipped_first_steps']} of "
          f"{first['steps']}, against the fp32 eager reference step (batch {reference['runs'][0]['batch']})")
    rows = [["fp32 eager reference (mask-based loss)", f"{reference['images_per_s']:.1f}",
             ", ".join(f"{r['images_per_s']:.1f}" for r in reference["runs"]), "", "",
             f"{reference['images_per_cpu_s']:.1f}", ""]]
    for name, loop in loops.items():
        rows.append([f"train() loop, {name}", f"{loop['images_per_s']:.1f}",
                     ", ".join(f"{r['images_per_s']:.1f}" for r in loop["runs"]), f"{loop['ratio']:.2f}",
                     ", ".join(f"{x:.2f}" for x in loop["per_round_ratio"]), f"{loop['images_per_cpu_s']:.1f}",
                     f"{loop['cpu_ratio']:.2f}"])
    print_table(rows, ["step", "images/s", "per round", "ratio", "ratio per round", "images/cpu-s", "cpu ratio"])
    print("    images/cpu-s: images per CPU-second of the stepping process (the loop's loader worker not counted); "
          "less sensitive than wall time to load that changes between the separate runs")
    ratio, cpu_ratio = loops["defaults"]["ratio"], loops["defaults"]["cpu_ratio"]
    print(f"    defaults >= {THROUGHPUT_TARGET}x the reference: wall {ratio:.3f} "
          f"({verdict(ratio, THROUGHPUT_TARGET, False)}), cpu {cpu_ratio:.3f} "
          f"({verdict(cpu_ratio, THROUGHPUT_TARGET, False)})")
    print("\n[3] Time the train() loop waits on data (its step time outside the step: the loader's next() and the "
          "loop's bookkeeping), after the first 2 steps:")
    for name, loop in loops.items():
        print(f"    {name}: {100 * loop['data_wait_fraction']:.1f}% of its step time (worst single step "
              f"{100 * loop['data_wait_max_step_fraction']:.1f}%; {100 * loop['data_wait_fraction_with_first_step']:.1f}%"
              f" counting the first steps, which start the worker); target <= {100 * DATA_WAIT_TARGET:.0f}%: "
              f"{verdict(loop['data_wait_fraction'], DATA_WAIT_TARGET, True)}")


if __name__ == "__main__":
    main()
