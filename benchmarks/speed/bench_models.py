"""Speed and memory of the registered SelfCon / MixCo models on this CPU, with side-by-side ratios.

SelfCon (Bae et al., AAAI 2023, arXiv 2106.15499) claims its sub-network exits are cheap and that the
multi-exit ensemble needs a single forward pass; MixCo (Kim et al., arXiv 2010.06300) trains plain ResNets.
This script measures, for each family at its native size (32 px CIFAR models, 224 px ImageNet models):

1. forward time (eval, ``inference_mode``) and training-step time (``with_projection_heads`` ->
   ``forward_projections`` -> ``sum`` loss -> backward -> SGD step), and the peak memory each adds on top of
   the built model and its input batch (the kernel's RSS high-water mark, reset just before the phase);
2. the ``fc`` exit's overhead: ``selfcon_resnet18_cifar`` forward with ``exit_stages=(2,)``, ``fc`` vs
   ``exit_stages=()`` (target ratio < 1.03);
3. ``forward_ensemble`` against a backbone-only forward of the same model (one pass: ratio ~1 plus the
   exits' own cost, not the number of heads), for one and for three ``fc`` exits;
4. ``channels_last`` and bf16 ``torch.autocast("cpu")`` against fp32 for the ResNet-18 CIFAR forward and
   training step.

Every measurement runs in a fresh subprocess. Comparisons (2-4) interleave their variants round by round
(order alternating), so drifting load hits every variant alike; numbers are medians after warm-up.
Two clocks: wall time, and the process CPU time (all threads). Workers run with ``OMP_WAIT_POLICY=PASSIVE``
(idle OpenMP threads sleep instead of spinning), so CPU time counts work done and stays stable when other
processes share the cores, where wall time does not; on an idle machine wall time is the number to quote.

Usage: ``python -m benchmarks.speed.bench_models [--quick] [--threads 2] [--json PATH]``
(the results in the repository: ``--json benchmarks/results/bench_models.json``)
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import timm
import torch
import torch.nn as nn

import timm_selfcon  # noqa: F401  (registers the models)
from benchmarks.harness import environment, peak_rss, print_table, reset_peak_rss, run_fresh, write_json
from timm_selfcon.methods import with_projection_heads

MB = 1024 * 1024
FORMATS = ("fp32", "channels_last", "bf16", "channels_last+bf16")
FC_EXIT_TARGET = 1.03
WIN_RATIO = 0.95  # a format replaces fp32 only when both clocks say it is at least 5% faster (beyond noise)


@dataclass(frozen=True)
class ModelCase:
    """One model at its native input size."""

    label: str
    name: str
    batch: int
    size: int
    kwargs: dict[str, Any] = field(default_factory=dict)


FULL_CASES = (
    ModelCase("selfcon_resnet18_cifar (fc@2)", "selfcon_resnet18_cifar", 64, 32),
    ModelCase("selfcon_wrn16_8_cifar (fc@1)", "selfcon_wrn16_8_cifar", 32, 32),
    ModelCase("selfcon_vit_tiny_patch4_32 (fc@5)", "selfcon_vit_tiny_patch4_32", 64, 32),
    ModelCase("selfcon_resnet18 (same@2)", "selfcon_resnet18", 8, 224),
    ModelCase("selfcon_resnet50 (same@2)", "selfcon_resnet50", 8, 224),
    ModelCase("mixco_resnet18", "mixco_resnet18", 8, 224),
)
QUICK_CASES = (FULL_CASES[0], FULL_CASES[2])
R18_CIFAR = FULL_CASES[0]


# ---- measurement helpers (run inside workers) ------------------------------------------------------

def build(name: str, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    torch.manual_seed(0)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return timm.create_model(name, **kwargs)


def images(case: ModelCase) -> torch.Tensor:
    return torch.randn(case.batch, 3, case.size, case.size, generator=torch.Generator().manual_seed(1))


def apply_format(model: nn.Module, x: torch.Tensor, fmt: str) -> tuple[nn.Module, torch.Tensor]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {list(FORMATS)}")
    if fmt.startswith("channels_last"):
        return model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return model, x


def autocast_for(fmt: str) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=fmt.endswith("bf16"))


def forward_fn(model: nn.Module, x: torch.Tensor, fmt: str = "fp32") -> Callable[[], Any]:
    """One inference forward pass (``model(x)``: the ensemble of all heads) of the eval-mode model."""
    model.eval()

    def run() -> Any:
        with torch.inference_mode(), autocast_for(fmt):
            return model(x)

    return run


def train_step_fn(model: nn.Module, x: torch.Tensor, fmt: str = "fp32") -> Callable[[], Any]:
    """One SGD step on ``forward_projections(x).sum()`` (a projection head per exit and on the backbone)."""
    projected = with_projection_heads(model).train()
    optimizer = torch.optim.SGD(projected.parameters(), lr=1e-3, momentum=0.9)

    def run() -> Any:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(fmt):
            loss = projected.forward_projections(x).float().sum()
        loss.backward()
        optimizer.step()
        return loss

    return run


def time_interleaved(
    fns: dict[str, Callable[[], Any]], warmup: int, repeats: int
) -> dict[str, dict[str, Any]]:
    """Wall and CPU seconds per run for each variant, one run of every variant per round, order alternating.

    Returns ``{name: {"wall_ms", "cpu_ms" (medians), "wall_min_ms", "wall_runs_ms", "cpu_runs_ms"}}``.
    """
    names = list(fns)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        for name in names if round_index % 2 == 0 else list(reversed(names)):
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            fns[name]()
            wall_s, cpu_s = time.perf_counter() - wall_start, time.process_time() - cpu_start
            if round_index >= warmup:
                wall[name].append(wall_s * 1e3)
                cpu[name].append(cpu_s * 1e3)
    return {
        name: {
            "wall_ms": statistics.median(wall[name]),
            "cpu_ms": statistics.median(cpu[name]),
            "wall_min_ms": min(wall[name]),
            "wall_runs_ms": wall[name],
            "cpu_runs_ms": cpu[name],
        }
        for name in names
    }


def ratios(timings: dict[str, dict[str, Any]], numerator: str, denominator: str) -> dict[str, float]:
    top, bottom = timings[numerator], timings[denominator]
    return {"wall": top["wall_ms"] / bottom["wall_ms"], "cpu": top["cpu_ms"] / bottom["cpu_ms"]}


# ---- worker tasks --------------------------------------------------------------------------------------

def task_model(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one (model, mode, format) phase and the peak memory it adds over the built model and its input."""
    case = ModelCase(**spec["case"])
    mode, fmt = spec["mode"], spec.get("format", "fp32")
    model = build(case.name, None if mode == "forward" else 0, **case.kwargs)
    x = images(case)
    model, x = apply_format(model, x, fmt)
    fn = forward_fn(model, x, fmt) if mode == "forward" else train_step_fn(model, x, fmt)
    gc.collect()
    peak_was_reset = reset_peak_rss()
    rss_before = psutil.Process().memory_info().rss
    timing = time_interleaved({mode: fn}, spec["warmup"], spec["repeats"])[mode]
    peak_added = peak_rss() - rss_before
    return {
        **timing,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "rss_before_mb": rss_before / MB,
        "peak_added_mb": peak_added / MB,
        # False: the high-water mark could not be reset, so the peak may include building (an upper bound)
        "peak_is_phase_only": peak_was_reset,
    }


def task_fc_exit(spec: dict[str, Any]) -> dict[str, Any]:
    """Forward of ResNet-18 CIFAR with an ``fc`` exit after layer2 vs the same network without exits."""
    x = images(R18_CIFAR)
    plain = build("selfcon_resnet18_cifar", exit_stages=())
    with_fc = build("selfcon_resnet18_cifar", exit_stages=(2,), sub_network="fc")
    timings = time_interleaved(
        {"no_exit": forward_fn(plain, x), "fc_exit": forward_fn(with_fc, x)}, spec["warmup"], spec["repeats"]
    )
    return {"timings": timings, "ratio": ratios(timings, "fc_exit", "no_exit")}


def task_ensemble(spec: dict[str, Any]) -> dict[str, Any]:
    """``forward_ensemble`` vs backbone-only ``forward_head(forward_features(x))`` vs ``model(x)``."""
    exit_stages = tuple(spec["exit_stages"])
    model = build("selfcon_resnet18_cifar", exit_stages=exit_stages, sub_network="fc").eval()
    x = images(R18_CIFAR)

    def inference(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                return fn()
        return run

    timings = time_interleaved({
        "backbone_only": inference(lambda: model.forward_head(model.forward_features(x))),
        "forward_ensemble": inference(lambda: model.forward_ensemble(x)),
        "forward": inference(lambda: model(x)),
    }, spec["warmup"], spec["repeats"])
    return {
        "exit_stages": list(exit_stages),
        "heads": len(exit_stages) + 1,
        "timings": timings,
        "ratio_ensemble_over_backbone": ratios(timings, "forward_ensemble", "backbone_only"),
        "ratio_ensemble_over_forward": ratios(timings, "forward_ensemble", "forward"),
    }


def task_formats(spec: dict[str, Any]) -> dict[str, Any]:
    """channels_last / bf16 autocast / both vs fp32 on ResNet-18 CIFAR, one model copy per variant."""
    mode = spec["mode"]
    base = build(R18_CIFAR.name, None if mode == "forward" else 0)
    x = images(R18_CIFAR)
    fns, outputs = {}, {}
    for fmt in FORMATS:
        model, xf = apply_format(copy.deepcopy(base), x, fmt)
        fns[fmt] = forward_fn(model, xf, fmt) if mode == "forward" else train_step_fn(model, xf, fmt)
        if mode == "forward":
            outputs[fmt] = fns[fmt]().float()
    timings = time_interleaved(fns, spec["warmup"], spec["repeats"])
    result: dict[str, Any] = {
        "timings": timings,
        "ratio": {fmt: ratios(timings, fmt, "fp32") for fmt in FORMATS},
        "fastest_wall": min(FORMATS, key=lambda fmt: timings[fmt]["wall_ms"]),
        "fastest_cpu": min(FORMATS, key=lambda fmt: timings[fmt]["cpu_ms"]),
    }
    if outputs:  # how far the logits move from fp32, relative to the logits' scale
        scale = outputs["fp32"].abs().max().item()
        result["logit_rel_diff"] = {fmt: (outputs[fmt] - outputs["fp32"]).abs().max().item() / scale
                                    for fmt in FORMATS}
    return result


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "model": task_model, "fc_exit": task_fc_exit, "ensemble": task_ensemble, "formats": task_formats,
}


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(spec["threads"])
    return TASKS[spec["task"]](spec)


def spawn(spec: dict[str, Any], omp_wait_policy: str) -> dict[str, Any]:
    """Run one task in a fresh Python process (the OpenMP wait policy must be set before torch loads)."""
    return run_fresh(run_worker, spec, env={} if omp_wait_policy == "default" else {"OMP_WAIT_POLICY": omp_wait_policy})


# ---- printing ----------------------------------------------------------------------------------------

def mem_cell(result: dict[str, Any]) -> str:
    return f"{result['peak_added_mb']:.0f}" + ("" if result["peak_is_phase_only"] else "*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: two models, few repeats")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every worker (default 2)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per model and per training comparison (default 5; quick 2)")
    parser.add_argument("--compare-repeats", type=int, default=None,
                        help="timed rounds of the forward-only comparisons 2-4 (default 3x --repeats)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "default"],
                        help="OMP_WAIT_POLICY of the workers (default PASSIVE; see the module docstring)")
    parser.add_argument("--json", type=Path, default=None, help="write all results as JSON to this path")
    args = parser.parse_args()

    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    compare_repeats = args.compare_repeats if args.compare_repeats is not None else 3 * repeats
    if min(repeats, compare_repeats, args.threads) < 1 or args.warmup < 0:
        parser.error(f"need --repeats, --compare-repeats, --threads >= 1 and --warmup >= 0; got {repeats}, "
                     f"{compare_repeats}, {args.threads}, {args.warmup}")
    common = dict(threads=args.threads, warmup=args.warmup, repeats=repeats)
    compare = dict(common, repeats=compare_repeats)
    cases = QUICK_CASES if args.quick else FULL_CASES
    started = time.perf_counter()
    results: dict[str, Any] = {
        **environment("torch", "timm", "timm_selfcon"),
        "threads": args.threads,
        "repeats": repeats,
        "compare_repeats": compare_repeats,
        "warmup": args.warmup,
        "omp_wait_policy": args.omp_wait_policy,
        "quick": args.quick,
        **environment("cpu", "cpu_capability", "cpu_count"),
        "load_average_before": os.getloadavg()[0],
    }
    print(f"torch {torch.__version__}, timm {timm.__version__}, {args.threads} threads per worker, "
          f"CPU capability {results['cpu_capability']}, OMP_WAIT_POLICY={args.omp_wait_policy}")
    print(f"medians of {repeats} runs ({compare_repeats} for forward comparisons) after {args.warmup} "
          "warm-up; "
          f"1-min load average {results['load_average_before']:.2f} on {os.cpu_count()} CPUs")
    print("wall = wall-clock ms; cpu = process CPU ms over all threads (robust to other processes' load)")

    def progress(what: str) -> None:
        print(f"  ... {what} ({time.perf_counter() - started:.0f} s)", flush=True)

    # 1. per family: forward / train step, each phase in a fresh process
    table, rows = [], []
    for case in cases:
        entry: dict[str, Any] = {"case": asdict(case)}
        for mode in ("forward", "train"):
            spec = dict(task="model", case=asdict(case), mode=mode, **common)
            entry[mode] = spawn(spec, args.omp_wait_policy)
        fwd, train = entry["forward"], entry["train"]
        rows.append([
            case.label, f"{case.batch}x{case.size}", f"{fwd['params_m']:.2f}",
            f"{fwd['wall_ms']:.0f}", f"{fwd['cpu_ms']:.0f}", f"{case.batch / fwd['wall_ms'] * 1e3:.0f}",
            mem_cell(fwd),
            f"{train['wall_ms']:.0f}", f"{train['cpu_ms']:.0f}", f"{case.batch / train['wall_ms'] * 1e3:.1f}",
            mem_cell(train), f"{train['cpu_ms'] / fwd['cpu_ms']:.2f}",
        ])
        table.append(entry)
        progress(case.label)
    results["models"] = table

    # 2. fc exit overhead
    fc = spawn(dict(task="fc_exit", **compare), args.omp_wait_policy)
    results["fc_exit_overhead"] = fc
    progress("fc exit")

    # 3. the ensemble is one pass
    results["ensemble"] = [
        spawn(dict(task="ensemble", exit_stages=list(stages), **compare), args.omp_wait_policy)
        for stages in ([(2,)] if args.quick else [(2,), (1, 2, 3)])
    ]
    progress("ensemble")

    # 4. channels_last and bf16 autocast vs fp32 (times interleaved in one process; memory per fresh process)
    formats: dict[str, Any] = {}
    for mode in ("forward", "train"):
        formats[mode] = spawn(dict(task="formats", mode=mode, **(compare if mode == "forward" else common)),
                              args.omp_wait_policy)
        formats[mode]["memory"] = {
            fmt: spawn(dict(task="model", case=asdict(R18_CIFAR), mode=mode, format=fmt, threads=args.threads,
                            warmup=0, repeats=1), args.omp_wait_policy)
            for fmt in FORMATS
        }
        progress(f"formats {mode}")
    results["formats"] = formats
    results["load_average_after"] = os.getloadavg()[0]
    results["wall_s"] = time.perf_counter() - started

    print("\n[1] Per model at native size, fp32 (MB: peak RSS the phase adds over the built model + batch; "
          "train: projection heads + SGD)")
    print_table(rows, ["model", "BxHW", "params M", "fwd wall", "fwd cpu", "fwd img/s", "fwd MB",
                       "train wall", "train cpu", "train img/s", "train MB", "train/fwd cpu"])

    ratio = fc["ratio"]
    timings = fc["timings"]
    verdict = "met" if ratio["cpu"] < FC_EXIT_TARGET and ratio["wall"] < FC_EXIT_TARGET else (
        "met on cpu time" if ratio["cpu"] < FC_EXIT_TARGET else "NOT met")
    print("\n[2] fc exit overhead, selfcon_resnet18_cifar forward, batch 64 x 32 px (interleaved)")
    print_table([
        ["exit_stages=()", f"{timings['no_exit']['wall_ms']:.1f}", f"{timings['no_exit']['cpu_ms']:.1f}",
         "", ""],
        ["exit_stages=(2,) fc", f"{timings['fc_exit']['wall_ms']:.1f}", f"{timings['fc_exit']['cpu_ms']:.1f}",
         f"{ratio['wall']:.3f}", f"{ratio['cpu']:.3f}"],
    ], ["model", "wall ms", "cpu ms", "ratio wall", "ratio cpu"])
    print(f"    target ratio < {FC_EXIT_TARGET}: {verdict}")

    print("\n[3] forward_ensemble vs backbone-only forward_head(forward_features(x)) of the same model, "
          "selfcon_resnet18_cifar fc exits, batch 64 x 32 px (interleaved)")
    rows = []
    for e in results["ensemble"]:
        t = e["timings"]
        over_backbone, over_forward = e["ratio_ensemble_over_backbone"], e["ratio_ensemble_over_forward"]
        rows.append([
            str(tuple(e["exit_stages"])), str(e["heads"]), f"{t['backbone_only']['cpu_ms']:.0f}",
            f"{t['forward_ensemble']['cpu_ms']:.0f}", f"{t['forward']['cpu_ms']:.0f}",
            f"{over_backbone['wall']:.3f}", f"{over_backbone['cpu']:.3f}",
            f"{over_forward['wall']:.3f}", f"{over_forward['cpu']:.3f}",
        ])
    print_table(rows, ["exit_stages", "heads", "backbone cpu ms", "ensemble cpu ms", "forward cpu ms",
                       "ens/backbone wall", "ens/backbone cpu", "ens/forward wall", "ens/forward cpu"])
    print("    (a pass per head would make ens/backbone about the number of heads; ens/forward compares two\n"
          "     calls doing identical work, so its distance from 1 is the measurement noise)")

    print("\n[4] channels_last and bf16 autocast vs fp32, selfcon_resnet18_cifar batch 64 x 32 px "
          "(times interleaved in one process; memory from a fresh process per variant)")
    rows = []
    for mode in ("forward", "train"):
        f = formats[mode]
        for fmt in FORMATS:
            t = f["timings"][fmt]
            diff = f.get("logit_rel_diff", {}).get(fmt)
            rows.append([
                mode, fmt, f"{t['wall_ms']:.0f}", f"{t['cpu_ms']:.0f}", f"{f['ratio'][fmt]['wall']:.3f}",
                f"{f['ratio'][fmt]['cpu']:.3f}", mem_cell(f["memory"][fmt]),
                "-" if diff is None else f"{diff:.1e}",
            ])
    print_table(rows, ["mode", "format", "wall ms", "cpu ms", "vs fp32 wall", "vs fp32 cpu", "peak MB",
                       "logit rel diff"])
    for mode in ("forward", "train"):
        f = formats[mode]
        winners = [fmt for fmt in FORMATS[1:] if max(f["ratio"][fmt].values()) < WIN_RATIO]
        f["recommended"] = min(winners, key=lambda fmt: f["ratio"][fmt]["cpu"]) if winners else "fp32"
        best = f["recommended"]
        note = (f" ({f['ratio'][best]['cpu']:.2f}x fp32 cpu time)" if best != "fp32" else
                f" (no variant beats it by {1 - WIN_RATIO:.0%} on both clocks; "
                f"fastest by cpu: {f['fastest_cpu']})")
        print(f"    {mode}: use {best}{note}")
    amx = "amx_tile" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else None
    results["cpu_has_amx_flag"] = amx
    print(f"    /proc/cpuinfo lists AMX: {amx}")

    print(f"\n1-min load average before/after: {results['load_average_before']:.2f} / "
          f"{results['load_average_after']:.2f} on {os.cpu_count()} CPUs; total {results['wall_s']:.0f} s "
          "(with other processes running, wall times are inflated; cpu times and interleaved ratios hold)")
    if args.json is not None:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
