"""One-command device check: the ``device`` data pipeline's speed on a GPU, SelfCon vs SupCon cost at ResNet-50,
a real ``timm-selfcon train`` + ``eval``, and (``--compare``) CE / SupCon / SelfCon-S accuracy at equal epochs.

1. images/s of SelfCon (fc exit) and SupCon on ``selfcon_resnet18_cifar``, global batch 1024, one step = forward,
   loss, backward, SGD step with the recipe's precision: batches from ``data_pipeline=device``, from
   ``data_pipeline=workers`` (all CPU cores), and the same pre-made batch on the GPU (the ceiling); the share of
   the device step spent augmenting (the augmentation timed alone).
2. ResNet-50 at 224 px, 256 images per view, synthetic uint8 images augmented once: SelfCon (``same`` exit, the
   paper's ImageNet setting) vs SupCon step time and peak GPU memory (``torch.cuda.max_memory_allocated``),
   beside the paper's 0.48 (time) and 0.59 (memory) (AAAI version, arXiv 2106.15499v6).
3. 200 SelfCon steps on CIFAR-10 through :func:`train` (what ``timm-selfcon train`` calls; its step-end callback
   reads the loss every 50 steps) with ``data_pipeline=device``, then ``timm-selfcon eval`` (linear_fast) reads
   the checkpoint.
4. ``--compare EPOCHS`` (or ``--compare-budget SECONDS``: the most epochs whose training fits that many seconds at
   part 1's measured rates): CE, SupCon and SelfCon-S (fc exit) from ``recipes/selfcon/cifar10_resnet18_*.yaml``
   (official batch, lr, temperature) on the whole train split, cosine over EPOCHS with a 1-epoch warm-up (the
   official 10 of 1000 epochs, floored at one), no stabilizer, and SelfCon-S again with BatchNorm in its
   projection heads (ours: the stabilizer ``benchmarks/experiments/rank_methods.py`` chose; labelled); then
   linear_fast on the test split (backbone, SelfCon's exit and ensemble; last epoch), beside each initial encoder
   untrained.

``--data DIR``: a CIFAR-10 parquet folder (``train`` and ``test`` splits, ``img`` / ``label``), read through
``datasets`` (the package's data layer needs it: on a machine without it carry the wheels of datasets, dill and
multiprocess). Writes JSON (GPU, torch / CUDA / timm / datasets versions, git commit) to ``--out``, by default under
``benchmarks/results/device/`` (where the README's GPU table is rendered from), after every part (``complete`` is
false until the last, so a run stopped at its time limit still returns what it measured) and prints a table.
``--smoke``: the same on a CPU at tiny sizes (tests/benchmarks/device/test_device_check.py); its JSON goes to a fresh
temporary folder unless ``--out`` says otherwise, so a smoke run never lands beside the GPU results. On a lent GPU,
``benchmarks/device/device_prepare.py`` packs the data and wheels here and prints the one ``run`` call, whose command is
``benchmarks/device/device_run.sh``.

    python -m benchmarks.device.device_check --data /path/to/cifar10 [--compare 15 | --compare-budget 240] [--smoke]
        [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from timm.optim import create_optimizer_v2

import timm_selfcon  # noqa: F401  (registers the models)
from benchmarks.harness import RESULTS, ROOT, environment, format_table, write_json
from timm_selfcon.cli import main as cli
from timm_selfcon.config import resolve_config
from timm_selfcon.data.device import BatchAugment
from timm_selfcon.data.loading import local_builder
from timm_selfcon.engine.accelerator import resolve_precision
from timm_selfcon.engine.train import (
    build_data,
    method_kwargs,
    parameter_groups,
    timm_optimizer_name,
    train,
)
from timm_selfcon.errors import UserInputError
from timm_selfcon.methods import build_method

RECIPES = ROOT / "recipes" / "selfcon"
PAPER = {"time": 0.48, "memory": 0.59}  # SelfCon / SupCon on ImageNet ResNet-50, arXiv 2106.15499v6 abstract


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def recipe(name: str, args: argparse.Namespace, **overrides: Any):
    """A CIFAR-10 ResNet-18 recipe on ``--data``; at ``--smoke`` sizes a 1-block-per-stage model on 16 px."""
    keys = dict(data=str(args.data), precision="auto", channels_last=True, data_pipeline="device", compile=args.compile,
                num_workers=os.cpu_count() or 1, output_dir=str(args.work / name), save_every_steps=10**9)
    if args.smoke:
        keys.update({"batch_size": 16, "image_size": 16, "num_workers": 0, "model_kwargs.layers": [1, 1, 1, 1]})
    return resolve_config(RECIPES / f"cifar10_resnet18_{name}.yaml", {**keys, **overrides})


def build_step(config, device: torch.device):
    """``step(views [B, V, C, H, W], labels [B])``: the engine's forward, loss, backward and optimizer step."""
    torch.manual_seed(config.seed)
    model = timm.create_model(config.model, num_classes=10 if config.method == "ce" else 0, **config.model_kwargs)
    method = build_method(config.method, model, **method_kwargs(config)).to(device)
    if config.channels_last:
        method = method.to(memory_format=torch.channels_last)
    optimizer = create_optimizer_v2(parameter_groups(method, config.head_lr_warmup_steps),
                                    opt=timm_optimizer_name(config.optimizer),
                                    lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    forward = torch.compile(method) if config.compile else method
    bf16 = resolve_precision(config.precision) == "bf16"

    def step(views: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = forward(views, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def timed(batches, step, device: torch.device, warmup: int, steps: int) -> float:
    """Seconds per step of ``step`` over ``steps`` batches of ``batches`` after ``warmup`` untimed ones."""
    iterator = iter(batches)
    for _ in range(warmup):
        batch = next(iterator)
        step(batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True))
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
        step(batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True))
    sync(device)
    return (time.perf_counter() - start) / steps


def repeat(batch: dict[str, torch.Tensor]):
    while True:
        yield batch


def epochs_of(loader, sampler):
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def pipeline_throughput(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Part 1: images/s per method and data source, and the augmentation's share of the device step."""
    warmup, steps = (1, 2) if args.smoke else (5, 20)
    out: dict[str, Any] = {}
    for label, name in (("SelfCon (fc exit)", "selfcon"), ("SupCon", "supcon")):
        views = 2 if name == "supcon" else 1
        config = recipe(name, args)
        step = build_step(config, device)
        row: dict[str, Any] = {"global_batch": config.batch_size, "views": views,
                               "precision": resolve_precision(config.precision), "channels_last": config.channels_last}
        for source in ("device", "workers"):
            data = build_data(resolve_config(None, {**config.to_dict(), "data_pipeline": source}), views, 1, 0, device)
            sampler, loader = data.sampler, data.loader
            seconds = timed(epochs_of(loader, sampler), step, device, warmup, steps)
            row[f"{source}_images_per_s"] = config.batch_size / seconds
            if source == "device":
                row["train_images"] = len(loader.data)
                premade = next(iter(loader))
                row["premade_images_per_s"] = config.batch_size / timed(repeat(premade), step, device, warmup, steps)
                augment: BatchAugment = loader.augment
                index = premade["index"]
                images = loader.data.images[index]
                sync(device)
                start = time.perf_counter()
                for _ in range(steps):
                    augment(images, index, 0)
                sync(device)
                row["augment_share"] = (time.perf_counter() - start) / steps / seconds
        row["device_vs_premade"] = row["device_images_per_s"] / row["premade_images_per_s"]
        row["device_vs_workers"] = row["device_images_per_s"] / row["workers_images_per_s"]
        out[label] = row
    return out


def resnet50_cost(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Part 2: SelfCon (same exit) vs SupCon step time and peak memory on synthetic images."""
    model, size, per_view = ("selfcon_resnet18", 32, 4) if args.smoke else ("selfcon_resnet50", 224, 256)
    layers = {"layers": [1, 1, 1, 1]} if args.smoke else {}
    out: dict[str, Any] = {}
    for label, method, views, kwargs in (("SelfCon (same exit)", "selfcon", 1, {"exit_stages": [2], "sub_network": "same"}),
                                         ("SupCon", "supcon", 2, {"exit_stages": []})):
        config = resolve_config(None, dict(model=model, model_kwargs={**kwargs, **layers}, method=method,
                                           precision="auto", channels_last=True, batch_size=per_view, lr=0.1,
                                           compile=args.compile))
        step = build_step(config, device)
        images = torch.randint(0, 256, (per_view, size, size, 3), dtype=torch.uint8, device=device)
        batch = {"image": BatchAugment("supcon", size, (0.5,) * 3, (0.25,) * 3, views=views)(
            images, torch.arange(per_view, device=device), 0), "label": torch.arange(per_view, device=device) % 10}
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        seconds = timed(repeat(batch), step, device, *((1, 2) if args.smoke else (3, 10)))
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        out[label] = {"step_s": seconds, "peak_gib": peak, "images_per_view": per_view, "image_size": size}
        del step, batch
    selfcon, supcon = out["SelfCon (same exit)"], out["SupCon"]
    out["ratio"] = {"time": selfcon["step_s"] / supcon["step_s"],
                    "memory": selfcon["peak_gib"] / supcon["peak_gib"] if selfcon["peak_gib"] else None,
                    "paper": PAPER, "model": model}
    return out


class EveryN:
    """Step-end callback: reads the loss (one host sync) every ``n`` steps and records images/s between reads."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size, self.losses, self.rates = n, batch_size, [], []
        self.tick = time.perf_counter()

    def on_step_end(self, step: int, logs: dict[str, Any]) -> None:
        if step % self.n == 0:
            self.losses.append(float(logs["loss"]))
            now = time.perf_counter()
            self.rates.append(self.n * self.batch_size / (now - self.tick))
            self.tick = now


def train_and_eval(args: argparse.Namespace, steps: int) -> dict[str, Any]:
    """Part 3: ``steps`` SelfCon steps through train(), then ``timm-selfcon eval`` on the checkpoint."""
    config = recipe("selfcon", args, max_steps=steps, output_dir=str(args.work / "train200"))
    callback = EveryN(max(1, steps // 4), config.batch_size)
    summary = train(config, callbacks=[callback])
    finite = all(map(lambda v: v == v and abs(v) != float("inf"), [*callback.losses, summary["final_loss"]]))
    status = cli(["eval", config.output_dir, f"data={args.data}", "protocol=linear_fast",
                  f"epochs={2 if args.smoke else 10}", "val_fraction=0", "num_workers=0" if args.smoke else "num_workers=8"])
    report = json.loads((Path(config.output_dir) / "eval" / "linear_fast" / "report.json").read_text())
    return {"steps": summary["steps"], "finite_losses": finite, "losses": callback.losses,
            "images_per_s": callback.rates, "eval_exit_status": status,
            "linear_fast_top1": {k: v["last"]["top1"] for k, v in report["results"].items()}}


COMPARE_RUNS = {  # run name -> (recipe, overrides): the official recipes, plus SelfCon with our stabilizer
    "ce": ("ce", {}),
    "supcon": ("supcon", {}),
    "selfcon": ("selfcon", {}),
    "selfcon_head_bn (ours)": ("selfcon", {"method_kwargs": {"head_batchnorm": True}}),
}


def epochs_for_budget(budget_s: float, pipelines: dict[str, Any], margin: float = 0.7) -> int:
    """The most epochs (at least 1) of the four compare runs whose steps fit ``margin * budget_s`` seconds.

    Uses part 1's device-pipeline rates: both SelfCon runs and CE at SelfCon's (CE has no exit, so its time is
    overestimated), SupCon at its own. ``margin`` leaves room for what the step rate does not count (building the
    runs, their checkpoints, the probes and the floors).
    """
    selfcon, supcon = pipelines["SelfCon (fc exit)"], pipelines["SupCon"]
    seconds_per_epoch = selfcon["train_images"] * (3 / selfcon["device_images_per_s"] + 1 / supcon["device_images_per_s"])
    return max(1, int(margin * budget_s // seconds_per_epoch))


def compare(args: argparse.Namespace, epochs: int, record: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Part 4: CE, SupCon, SelfCon-S (with and without the head-BatchNorm stabilizer, ours) at equal epochs, and
    each initial encoder untrained (its floor), probed with linear_fast on the test split. ``record`` gets the
    results so far after each run (the JSON is written then, so a run stopped at its limit keeps the finished ones)."""
    from timm_selfcon.engine.evaluate import EvalConfig, evaluate

    probe = dict(data=str(args.data), protocol="linear_fast", val_fraction=0, epochs=2 if args.smoke else 30,
                 num_workers=0 if args.smoke else 8)
    out = {}
    for name, (recipe_name, overrides) in COMPARE_RUNS.items():
        folder = args.work / f"compare_{recipe_name}{'_head_bn' if overrides else ''}"
        config = recipe(recipe_name, args, epochs=epochs, warmup_epochs=1, output_dir=str(folder), **overrides)
        start = time.perf_counter()
        summary = train(config)
        seconds = time.perf_counter() - start
        report = evaluate(config.output_dir, EvalConfig(**probe))
        out[name] = {"epochs": epochs, "train_s": seconds, "final_loss": summary["final_loss"], "steps": summary["steps"],
                     "linear_fast_top1": {k: v["last"]["top1"] for k, v in report["results"].items()}}
        record(out)
    for name in ("selfcon", "supcon"):  # the untrained floors: SelfCon's encoder with its exit, CE's and SupCon's without
        config = recipe(name, args)
        report = evaluate(config.model, EvalConfig(**probe, model_kwargs=config.model_kwargs, seed=config.seed,
                                                   output_dir=str(args.work / f"floor_{name}")))
        out[f"untrained ({'with exit' if name == 'selfcon' else 'no exit'})"] = {
            "epochs": 0, "train_s": 0.0, "linear_fast_top1": {k: v["last"]["top1"] for k, v in report["results"].items()}}
        record(out)
    return out


def run_environment(device: torch.device) -> dict[str, Any]:
    """The device the checks ran on (``cpu`` at ``--smoke``, even beside a GPU), versions, commit, CPU count."""
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            **environment("torch", "cuda", "git_commit", "cpu_count", "timm", "datasets", "python")}


def table(results: dict[str, Any]) -> str:
    lines = [f"device: {results['environment']['device']}  torch {results['environment']['torch']}  "
             f"CUDA {results['environment']['cuda']}", "",
             format_table([[label, f"{r['device_images_per_s']:.0f}", f"{r['workers_images_per_s']:.0f}",
                            f"{r['premade_images_per_s']:.0f}", f"{r['device_vs_premade']:.3f}",
                            f"{r['device_vs_workers']:.1f}", f"{r['augment_share']:.1%}"]
                           for label, r in results["pipelines"].items()],
                          ["method", "device img/s", "workers img/s", "pre-made img/s", "device/pre-made",
                           "device/workers", "augment share"], markdown=True)]
    cost = results["resnet50"]
    memory = cost["ratio"]["memory"]
    lines += ["", f"{cost['ratio']['model']}: SelfCon/SupCon step time {cost['ratio']['time']:.2f} (paper 0.48), "
              f"peak memory {'n/a' if memory is None else f'{memory:.2f}'} (paper 0.59)"]
    run = results["train"]
    lines += [f"train: {run['steps']} SelfCon steps, finite losses {run['finite_losses']}, "
              f"eval exit {run['eval_exit_status']}, linear_fast {run['linear_fast_top1']}"]
    for name, r in results.get("compare", {}).items():
        lines.append(f"compare {name}: {r['epochs']} epochs in {r['train_s']:.0f} s, linear_fast {r['linear_fast_top1']}")
    return "\n".join(lines)


def results_path(out: Path | None, *, smoke: bool, stamp: str) -> Path:
    """Where the JSON goes: ``out``, else ``benchmarks/results/device/device_check-<stamp>.json`` (what the README's
    GPU table is rendered from), except for a ``--smoke`` run: a fresh temporary folder (made now)."""
    if out is not None:
        return out
    folder = Path(tempfile.mkdtemp(prefix="device_check-smoke-")) if smoke else RESULTS / "device"
    return folder / f"device_check-{stamp}.json"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 parquet folder (train and test splits)")
    compare_length = parser.add_mutually_exclusive_group()
    compare_length.add_argument("--compare", type=int, default=0, metavar="EPOCHS", help="part 4 at this many epochs")
    compare_length.add_argument("--compare-budget", type=float, default=0.0, metavar="SECONDS",
                        help="part 4 at the most epochs whose training fits SECONDS at part 1's rates")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on a CPU (the test)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the steps (compile: true)")
    parser.add_argument("--work", type=Path, default=None,
                        help="training output folders (default: a fresh temporary folder, removed when the check "
                             "completes; an existing run in --work would be resumed, not timed)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/device/...; "
                        "with --smoke a fresh temporary folder)")
    args = parser.parse_args(argv)
    if args.compare < 0 or args.compare_budget < 0:
        parser.error(f"--compare and --compare-budget must be >= 0; got {args.compare} and {args.compare_budget}")
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such folder; expected CIFAR-10 as parquet (train and test splits)")
    for split in ("train", "test"):
        try:
            local_builder(args.data, split)
        except UserInputError as error:
            parser.error(f"--data: {error}")
    temporary_work = args.work is None
    args.work = args.work or Path(tempfile.mkdtemp(prefix="device_check-"))
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = results_path(args.out, smoke=args.smoke, stamp=stamp)
    print(f"results: {out}", flush=True)
    started = time.perf_counter()
    comparing = bool(args.compare or args.compare_budget)
    results: dict[str, Any] = {"environment": run_environment(device), "started_utc": stamp, "smoke": args.smoke,
                               "arguments": sys.argv[1:] if argv is None else argv,
                               "parts": ["pipelines", "resnet50", "train", *(["compare"] if comparing else [])],
                               "complete": False}

    def part(key: str, value: Any, label: str | None = None) -> None:
        results[key] = value
        results["seconds"] = time.perf_counter() - started
        write_json(out, results)
        print(f"[{results['seconds']:.0f} s] {label or key} done", flush=True)

    part("pipelines", pipeline_throughput(args, device))
    part("resnet50", resnet50_cost(args, device))
    part("train", train_and_eval(args, 3 if args.smoke else 200))
    if comparing:
        epochs = args.compare or epochs_for_budget(args.compare_budget, results["pipelines"])
        results["compare_budget_s"] = args.compare_budget or None
        part("compare", compare(args, epochs, lambda so_far: part("compare", dict(so_far), f"compare {list(so_far)[-1]}")))
    part("complete", True)
    if temporary_work:
        shutil.rmtree(args.work)
    print(table(results))
    print(f"total {results['seconds']:.0f} s; results: {out}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
