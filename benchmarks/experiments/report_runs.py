"""The reproduction report's CPU-scale runs, as a resumable queue.

Each run trains with a recipe through ``timm_selfcon.engine.train``, evaluates the encoder with the
``linear_fast`` probe (per exit and ensemble), kNN and, for multi-exit models, early exit, and writes
``benchmarks/results/runs/<name>.json`` (and re-renders the README's results with ``make_report.py``). A run
whose JSON exists is skipped, so the report can be built over several sittings
(``python -m benchmarks.experiments.report_runs [--only NAME ...] [--commit]``); ``--commit`` commits each finished JSON.

Runs: CE, SupCon and SelfCon on ``selfcon_resnet10_cifar`` with one shared recipe (``COMMON``) for each seed;
``random_init*_seed0``, the SelfCon, SupCon and MixCo runs' exact initial encoders untrained and probed the same
way (the floors, and epoch 0 of the accuracy-versus-epoch curves, which the ``--per-epoch-seeds`` runs add by
probing every epoch's checkpoint);
MoCo v2 and SimCLR with and without MixCo from the shipped CPU recipes (``recipes/mixco/cpu_cifar10_*``) on
``mixco_resnet10_cifar``.

Data: real CIFAR-10 from ``../shared/data/cifar10`` (``--data``): a class-balanced ``--train-images`` prefix of
the train split trains the encoder and the probes (10% of it held out as the probe's validation split), the test
split only gives the reported numbers. Budget: at most about 10 minutes of training per run on 2 CPU cores, the
same epochs for every method.
"""
from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import RESULTS, ROOT, write_json
from timm_selfcon.fileio import atomic_path

RUNS = RESULTS / "runs"
SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"

SELFCON_MODEL = "selfcon_resnet10_cifar"  # 4.96M parameters with its fc exit (<= 5M)
MIXCO_MODEL = "mixco_resnet10_cifar"  # the same 4.90M-parameter ResNet-10 encoder, without exit
MIXCO_RECIPES = ROOT / "recipes" / "mixco"
SELFCON_EXITS = {"exit_stages": [2], "sub_network": "fc"}  # the official CIFAR SelfCon-S exit
NO_EXITS = {"exit_stages": []}  # the CE and SupCon baselines: the same backbone, no exit
BATCH_SIZE = 128
# One optimisation recipe for CE, SupCon and SelfCon (ours, CPU-scale): the official SelfCon CIFAR values
# (SGD momentum 0.9, wd 1e-4, per-iteration warm-up, temperature 0.1 / base 0.07) at batch 128 with the linearly
# scaled lr (0.5 * 128 / 1024 ~ 0.06 -> 0.05), a 1-epoch warm-up, a per-step cosine (the official per-epoch one
# would spend the last of 3 epochs at eta_min) and gradient-norm clipping at 1.0, without which SelfCon's
# projections collapse in the first steps (see recipes/README.md, clip_grad_norm).
# Infrastructure keys shared by every run, the MixCo ones included (whose optimisation comes from their recipes).
RUNTIME = dict(image_size=32, precision="fp32", channels_last=False, batch_size=BATCH_SIZE, num_workers=1,
               log_every_steps=10)
COMMON = dict(RUNTIME, warmup_epochs=1, warmup_from=0.005, schedule="cosine_per_step", lr=0.05, weight_decay=1e-4,
              temperature=0.1, base_temperature=0.07, clip_grad_norm=1.0)


def run_specs(seeds: tuple[int, ...]) -> dict[str, dict]:
    """Run name -> recipe overrides (``recipe``: a recipe file the overrides apply to)."""
    specs: dict[str, dict] = {}
    for seed in seeds:
        specs[f"ce_seed{seed}"] = dict(COMMON, method="ce", model=SELFCON_MODEL, model_kwargs=NO_EXITS,
                                       augmentation="ce", seed=seed)
        specs[f"supcon_seed{seed}"] = dict(COMMON, method="supcon", model=SELFCON_MODEL,
                                           model_kwargs=NO_EXITS, seed=seed)
        specs[f"selfcon_seed{seed}"] = dict(COMMON, method="selfcon", model=SELFCON_MODEL,
                                            model_kwargs=SELFCON_EXITS, seed=seed)
    # Each initial encoder with no training at all (seed 0), probed the same way: the floor a method must beat and
    # epoch 0 of its curve. A seed's initial weights depend on the model, its exits and whether it has a classifier
    # (timm's init draws in module order), so SelfCon, SupCon and the MixCo runs each have their own; CE's has none.
    untrained = {"random_init": (SELFCON_MODEL, SELFCON_EXITS),  # SelfCon's
                 "random_init_noexit": (SELFCON_MODEL, NO_EXITS),  # SupCon's
                 "random_init_mixco": (MIXCO_MODEL, {})}  # MoCo v2's and SimCLR's, with or without MixCo
    for name, (model, model_kwargs) in untrained.items():
        specs[f"{name}_seed0"] = dict(untrained=True, method="random_init", model=model, model_kwargs=model_kwargs,
                                      seed=0)
    for seed in seeds:
        for method in ("moco", "moco_mixco", "simclr", "simclr_mixco"):
            specs[f"{method}_seed{seed}"] = dict(RUNTIME, method=method, model=MIXCO_MODEL, model_kwargs={}, seed=seed,
                                                 recipe=str(MIXCO_RECIPES / f"cpu_cifar10_resnet18_{method}.yaml"))
    return {name: copy.deepcopy(spec) for name, spec in specs.items()}  # no two runs share an exit dict


def evaluate_untrained(name: str, spec: dict, args: argparse.Namespace) -> dict:
    """Probe the randomly initialised encoder (seeded) exactly as the trained ones."""
    from timm_selfcon.engine.evaluate import evaluate

    out_dir = Path(args.work_dir) / name
    common = dict(data=str(args.eval_data), train_split="train", split="test", val_fraction=0.1,
                  epochs=args.probe_epochs, num_workers=1, batch_size=512, model_kwargs=spec["model_kwargs"],
                  seed=spec["seed"], output_dir=str(out_dir))
    results = dict(name=name, recipe={"method": spec["method"], "model": spec["model"],
                                      "model_kwargs": spec["model_kwargs"], "seed": spec["seed"]},
                   train_seconds=0.0, train_summary={"steps": 0})
    for protocol in ("linear_fast", "knn") + (("early_exit",) if spec["model_kwargs"].get("exit_stages") else ()):
        report = evaluate(spec["model"], protocol=protocol, **common)
        results[protocol] = {k: report.get(k) for k in ("results", "hyperparameters", "early_exit", "history")}
    results["load_average"] = os.getloadavg()
    return results


def train_and_evaluate(name: str, overrides: dict, args: argparse.Namespace) -> dict:
    import timm_selfcon  # noqa: F401
    from timm_selfcon.config import resolve_config
    from timm_selfcon.engine.evaluate import evaluate
    from timm_selfcon.engine.train import train

    out_dir = Path(args.work_dir) / name
    overrides = dict(overrides)
    recipe = overrides.pop("recipe", None)
    steps_per_epoch = args.train_images // BATCH_SIZE
    values = {**overrides, "data": str(args.train_data), "epochs": args.epochs, "output_dir": str(out_dir),
              "save_every_steps": steps_per_epoch if args.per_epoch else 10**6,
              "overwrite": True,  # a run without its results JSON was interrupted: start it again from scratch
              "provenance": "ours: CPU-scale reproduction report run" + (f" on {Path(recipe).name}" if recipe else "")}
    config = resolve_config(recipe, values)
    start = time.perf_counter()
    summary = train(config)
    train_seconds = time.perf_counter() - start
    eval_common = dict(data=str(args.eval_data), train_split="train", split="test", val_fraction=0.1,
                       epochs=args.probe_epochs, num_workers=1, batch_size=512)
    results = dict(name=name, recipe=config.to_dict(), train_seconds=train_seconds, train_summary=summary)
    for protocol in ("linear_fast", "knn") + (("early_exit",) if overrides["method"] == "selfcon" else ()):
        report = evaluate(out_dir, protocol=protocol, **eval_common)
        results[protocol] = {k: report.get(k) for k in ("results", "hyperparameters", "early_exit", "history")}
    if args.per_epoch:  # the accuracy-versus-epoch curve: the same probe on every epoch's checkpoint
        curve = {}
        for epoch in range(1, args.epochs + 1):
            checkpoint = out_dir / f"ckpt-{epoch * steps_per_epoch}"
            report = (results["linear_fast"] if epoch == args.epochs else
                      evaluate(checkpoint, protocol="linear_fast", output_dir=str(out_dir / f"epoch{epoch}"),
                               **eval_common))
            curve[epoch] = {head: value["last"]["top1"] for head, value in report["results"].items()}
        results["linear_fast_per_epoch"] = curve
    results["load_average"] = os.getloadavg()
    return results


def subset_dataset(source: Path, target: Path, train_images: int) -> Path:
    """A class-balanced prefix of the shared train split (``train_images`` rows) plus the full test split."""
    import datasets

    if (target / "train.parquet").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    train = datasets.load_dataset("parquet", data_files=str(source / "train.parquet"), split="train")
    per_class = train_images // 10
    seen: dict[int, int] = {}
    keep = []
    for i, label in enumerate(train["label"]):
        if seen.get(label, 0) < per_class:
            seen[label] = seen.get(label, 0) + 1
            keep.append(i)
        if len(keep) == per_class * 10:
            break
    with atomic_path(target / "test.parquet") as tmp:  # train.parquet last: its presence means the folder is whole
        datasets.load_dataset("parquet", data_files=str(source / "test.parquet"), split="train").to_parquet(str(tmp))
    with atomic_path(target / "train.parquet") as tmp:
        train.select(keep).to_parquet(str(tmp))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(SHARED_CIFAR10))
    parser.add_argument("--train-images", type=int, default=7680, help="a multiple of the batch size (128)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--probe-epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "report"))
    parser.add_argument("--per-epoch-seeds", type=int, nargs="*", default=[0],
                        help="seeds whose runs also probe every epoch's checkpoint (the accuracy-vs-epoch plot)")
    parser.add_argument("--commit", action="store_true")
    args = parser.parse_args(argv)
    if args.train_images % BATCH_SIZE:
        parser.error(f"--train-images must be a multiple of the batch size {BATCH_SIZE}, got {args.train_images}")
    source = Path(args.data)
    if not (source / "train.parquet").exists():
        print(f"no CIFAR-10 parquet at {source}", file=sys.stderr)
        return 2
    args.train_data = subset_dataset(source, Path(args.work_dir) / f"cifar10_train{args.train_images}",
                                     args.train_images)
    args.eval_data = args.train_data
    RUNS.mkdir(parents=True, exist_ok=True)
    for name, overrides in run_specs(tuple(args.seeds)).items():
        if args.only and name not in args.only:
            continue
        path = RUNS / f"{name}.json"
        if path.exists():
            print(f"skip {name}: {path} exists")
            continue
        print(f"run {name}")
        args.per_epoch = overrides["seed"] in args.per_epoch_seeds
        if overrides.get("untrained"):
            results = evaluate_untrained(name, overrides, args)
        else:
            results = train_and_evaluate(name, overrides, args)
        results["data"] = dict(source=str(source), train_images=args.train_images, epochs=args.epochs)
        write_json(path, results, default=str)
        subprocess.run([sys.executable, "-m", "benchmarks.report.make_report"], cwd=ROOT, check=True)
        if args.commit:
            plot = RESULTS / "accuracy_vs_epoch.png"
            paths = [str(path), str(ROOT / "README.md")] + ([str(plot)] if plot.exists() else [])
            subprocess.run(["git", "add", *paths], cwd=ROOT, check=True)
            subprocess.run(["git", "commit", "-q", "-m", f"Report run {name}", "--", *paths], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
