"""What one training step of each method costs at the CPU experiments' settings, measured side by side.

The experiments' queue (``experiments_queue.py``) compares methods at equal compute, which needs each method's
cost per step on the same machine in the same run; wall time of long runs on a shared machine is not that. Here
every configuration runs the real ``train()`` loop (``selfcon_resnet10_w16_cifar``, fp32, channels_last, 1 loader
worker, the experiments' CIFAR-10 train rows) in a fresh process for ``--steps`` steps; the cost of a step is the CPU
time of the training process and its loader worker (``timm_selfcon.engine.clock.cpu_seconds``) between the end of
step ``--skip`` and the last step, divided by the steps between. Configurations run round by round (order reversed
every other round) so drifting load hits them alike; the median over ``--rounds`` is reported, with wall time beside.

- Ranking settings (batch 256): CE, SupCon, SupCon + head BatchNorm, SupCon-S + head BN, SelfCon-S + head BN,
  SelfCon-M + head BN.
- MixCo settings (batch 128): MoCo v2, MoCo v2 + MixCo, SimCLR, SimCLR + MixCo.

Writes ``benchmarks/results/equal_compute/cost.json`` with the ratios and ``equal_compute_epochs``: the epochs at
which SelfCon-S + head BN costs what SupCon's 20 epochs cost (rounded to the nearest epoch), which the queue
trains. ``--quick`` measures a few steps on the shipped 5,000-image subset, for a test (it writes nowhere unless
``--json`` is given).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.experiments.experiments_queue import (
    COMMON,
    HEAD_BN,
    MOCO,
    MOCO_MIX,
    NO_EXITS,
    SELFCON_EXITS,
    SIMCLR,
    SIMCLR_MIX,
)
from benchmarks.harness import RESULTS, ROOT, environment, print_table, run_fresh, write_json

RESULT = RESULTS / "equal_compute" / "cost.json"
SUBSET = ROOT / "timm_selfcon" / "data" / "cifar10_subset"
EXPERIMENT_DATA = ROOT / "runs" / "experiments" / "cifar10"
REFERENCE_EPOCHS = 20
CONFIGS: dict[str, dict[str, Any]] = {
    "ce": dict(COMMON, method="ce", model_kwargs=NO_EXITS, augmentation="ce"),
    "supcon": dict(COMMON, method="supcon", model_kwargs=NO_EXITS),
    "supcon_head_bn": dict(COMMON, method="supcon", model_kwargs=NO_EXITS, **HEAD_BN),
    "supcon_s_head_bn": dict(COMMON, method="supcon_s", model_kwargs=NO_EXITS, **HEAD_BN),
    "selfcon_head_bn": dict(COMMON, method="selfcon", model_kwargs=SELFCON_EXITS, **HEAD_BN),
    "selfcon_m_head_bn": dict(COMMON, method="selfcon_m", model_kwargs=SELFCON_EXITS, **HEAD_BN),
    "moco": dict(MOCO, method="moco", lr=0.06, moco_momentum=0.99),
    "moco_mixco": dict(MOCO, method="moco_mixco", lr=0.06, moco_momentum=0.99, **MOCO_MIX),
    "simclr": dict(SIMCLR, method="simclr"),
    "simclr_mixco": dict(SIMCLR, method="simclr_mixco", **SIMCLR_MIX),
}
RATIOS = {  # name: (numerator, denominator)
    "selfcon_head_bn / supcon": ("selfcon_head_bn", "supcon"),
    "selfcon_head_bn / supcon_head_bn": ("selfcon_head_bn", "supcon_head_bn"),
    "supcon_s_head_bn / supcon_head_bn": ("supcon_s_head_bn", "supcon_head_bn"),
    "selfcon_m_head_bn / supcon_head_bn": ("selfcon_m_head_bn", "supcon_head_bn"),
    "ce / supcon": ("ce", "supcon"),
    "moco_mixco / moco": ("moco_mixco", "moco"),
    "simclr_mixco / simclr": ("simclr_mixco", "simclr"),
}


class CpuAtSteps:
    """A ``train()`` callback: CPU and wall time (process and loader workers) at the end of every step."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def on_step_end(self, step: int, logs: dict[str, Any]) -> None:
        import time

        from timm_selfcon.engine.clock import cpu_seconds

        float(logs["loss"])  # the step is finished (a no-op wait on the CPU, kept for any device)
        self.cpu.append(cpu_seconds())
        self.wall.append(time.perf_counter())


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One configuration's seconds per step in this (fresh) process."""
    import torch

    from timm_selfcon.config import resolve_config
    from timm_selfcon.engine.train import train

    torch.set_num_threads(spec["threads"])
    clock = CpuAtSteps()
    with tempfile.TemporaryDirectory(prefix="method_cost_") as output_dir:
        values = dict(spec["recipe"], data=spec["data"], epochs=1, max_steps=spec["steps"], output_dir=output_dir,
                      save_every_steps=10**6, log_every_steps=10**6, log_with=None, seed=0)
        train(resolve_config(None, values), callbacks=[clock])
    skip, steps = spec["skip"], len(clock.cpu)
    return dict(cpu_s_per_step=(clock.cpu[-1] - clock.cpu[skip - 1]) / (steps - skip),
                wall_s_per_step=(clock.wall[-1] - clock.wall[skip - 1]) / (steps - skip),
                batch=spec["recipe"]["batch_size"], steps=steps, skip=skip, threads=torch.get_num_threads())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(EXPERIMENT_DATA),
                        help="folder with the experiments' train.parquet (rows 0..44,999 of CIFAR-10's train split; "
                             "experiments_queue.py writes it)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip", type=int, default=5, help="steps left out of the cost (workers starting, caches)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGS), default=None)
    parser.add_argument("--quick", action="store_true", help="4 steps, 1 round, the shipped subset; writes no JSON")
    parser.add_argument("--json", default=None, help=f"where to write the results (default {RESULT}, not with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.skip, args.rounds, args.data = 4, 1, 1, str(SUBSET)
    if not 1 <= args.skip < args.steps:
        parser.error(f"--skip must be in [1, --steps), got --skip {args.skip} with --steps {args.steps}")
    if args.rounds < 1 or args.threads < 1:
        parser.error(f"--rounds and --threads must be >= 1, got {args.rounds} and {args.threads}")
    if not (Path(args.data) / "train.parquet").is_file():
        parser.error(f"--data {args.data!r} has no train.parquet (run experiments_queue.py once, or give --data)")
    names = args.only or list(CONFIGS)
    load_before = os.getloadavg()
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            spec = dict(recipe=CONFIGS[name], data=args.data, steps=args.steps, skip=args.skip, threads=args.threads)
            samples[name].append(run_fresh(measure, spec, env={"TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(args.threads),
                                                               "HF_HUB_OFFLINE": "1"}, cwd=ROOT))
            print(f"round {round_index + 1}: {name} {samples[name][-1]['cpu_s_per_step']:.3f} CPU s/step", flush=True)
    per_method = {name: dict(cpu_s_per_step=statistics.median(s["cpu_s_per_step"] for s in runs),
                             wall_s_per_step=statistics.median(s["wall_s_per_step"] for s in runs),
                             batch=runs[0]["batch"], samples=runs) for name, runs in samples.items()}
    ratios = {label: per_method[a]["cpu_s_per_step"] / per_method[b]["cpu_s_per_step"]
              for label, (a, b) in RATIOS.items() if a in per_method and b in per_method}
    result = dict(per_method=per_method, ratios_cpu=ratios, steps=args.steps, skip=args.skip, rounds=args.rounds,
                  threads=args.threads, data=args.data, load_average_before=load_before,
                  load_average_after=os.getloadavg(), environment=environment())
    if "selfcon_head_bn / supcon" in ratios:  # both at batch 256 over the same images: same steps per epoch
        result["equal_compute_epochs"] = round(REFERENCE_EPOCHS / ratios["selfcon_head_bn / supcon"])
        result["equal_compute_note"] = (f"epochs of SelfCon-S + head BN whose CPU time equals SupCon's "
                                        f"{REFERENCE_EPOCHS} epochs at the measured cost per step")
    print_table([(name, m["batch"], f"{m['cpu_s_per_step']:.3f}", f"{m['wall_s_per_step']:.3f}")
                 for name, m in per_method.items()], ("method", "batch", "CPU s/step", "wall s/step"))
    print_table([(label, f"{value:.3f}") for label, value in ratios.items()], ("ratio (CPU time per step)", "value"))
    if "equal_compute_epochs" in result:
        print(f"SelfCon-S + head BN at equal compute with SupCon's {REFERENCE_EPOCHS} epochs: "
              f"{result['equal_compute_epochs']} epochs")
    target = args.json or (None if args.quick else str(RESULT))
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        write_json(target, result)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
