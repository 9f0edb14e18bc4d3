"""SelfCon's collapse plateau, step by step: the loss, the plateau value and how alike the projections are.

``python -m benchmarks.experiments.collapse [--official OFFICIAL_CHECKOUT] [--steps 120]``

At the plateau every projection is the same point, every logit is ``1 / tau`` and the loss is exactly
``log(N - 1) * tau / tau_base`` with ``N = (exits + 1) * batch`` outputs (:func:`plateau_loss`). Per step this
records the loss, that value, and the mean pairwise cosine of the L2-normalised projections within the backbone's
head, within each exit's head and between each exit and the backbone (:func:`projection_cosines`); a run "sits on
the plateau" at the steps whose loss is within ``PLATEAU_MARGIN`` of it and whose projections are all alike.

The grid (ours, CPU scale, ``selfcon_resnet10_w16_cifar`` unless ``--model``; real CIFAR-10 batches through
SupCon's augmentation): batch size x lr x warm-up, without a stabilizer and with each of
``benchmarks/experiments/rank_methods.py``'s candidates at one setting; with ``--official`` the official ConResNet-18 +
ConLoss and ours on the same batches at one setting. Output: ``benchmarks/results/collapse.json`` and a table.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.harness import RESULTS, ROOT, environment, write_json

OUT = RESULTS / "collapse.json"
SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"
PLATEAU_MARGIN = 0.02
COLLAPSED_COSINE = 0.99


def plateau_loss(num_outputs: int, temperature: float = 0.1, base_temperature: float = 0.07) -> float:
    """The SupCon / SelfCon loss when all ``num_outputs`` projections coincide: ``log(N - 1) * tau / tau_base``."""
    return math.log(num_outputs - 1) * temperature / base_temperature


def _mean_offdiagonal(a: torch.Tensor, b: torch.Tensor | None = None) -> float:
    """Mean cosine of ``a [B, D]`` with ``b [B', D]`` (all pairs), or within ``a`` without its diagonal."""
    a = F.normalize(a.detach().double(), dim=-1)
    if b is not None:
        return float((a @ F.normalize(b.detach().double(), dim=-1).T).mean())
    sims = a @ a.T
    n = a.shape[0]
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))


def projection_cosines(features: torch.Tensor) -> dict[str, float]:
    """``features [B, K+1, D]`` (exits in depth order, backbone last) -> mean pairwise cosines:
    ``backbone`` and ``exit_k`` within each head, ``exit_k_vs_backbone`` over all exit/backbone pairs."""
    if features.dim() != 3 or features.shape[0] < 2:
        raise ValueError(f"features must be [B >= 2, K+1, D], got {tuple(features.shape)}")
    out = {"backbone": _mean_offdiagonal(features[:, -1])}
    for k in range(features.shape[1] - 1):
        out[f"exit_{k}"] = _mean_offdiagonal(features[:, k])
        out[f"exit_{k}_vs_backbone"] = _mean_offdiagonal(features[:, k], features[:, -1])
    return out


def on_plateau(loss: float, plateau: float, cosines: dict[str, float]) -> bool:
    return abs(loss - plateau) <= PLATEAU_MARGIN and min(cosines.values()) >= COLLAPSED_COSINE


def summarize(trace: list[dict]) -> dict:
    """First step on the plateau, steps spent on it, and the first step after which the run left it for good."""
    flags = [t["on_plateau"] for t in trace]
    if not any(flags):
        return dict(reached_plateau_at=None, steps_on_plateau=0, left_plateau_at=None, final_loss=trace[-1]["loss"])
    first = flags.index(True) + 1
    last = len(flags) - flags[::-1].index(True)
    return dict(reached_plateau_at=first, steps_on_plateau=sum(flags),
                left_plateau_at=last + 1 if last < len(flags) else None, final_loss=trace[-1]["loss"])


# ------------------------------------------------------------------------------------------- training
def cifar10_batches(data: Path, batch_size: int, steps: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` distinct batches of real CIFAR-10 train images through SupCon's augmentation: ``[B, 1, 3, 32, 32]``."""
    import datasets

    from timm_selfcon.data import NORMALIZATION, build_transform
    from timm_selfcon.data.datasets import isolated_rng

    table = datasets.load_dataset("parquet", data_files=str(data / "train.parquet"), split="train")
    count = min(batch_size * steps, len(table))
    transform = build_transform("supcon", 32, *NORMALIZATION["cifar10"], views=1)
    images, labels = [], []
    with isolated_rng(seed):
        for index in range(batch_size * steps):
            row = table[index % count]
            images.append(transform(row["img"].convert("RGB")))
            labels.append(row["label"])
    return list(zip(torch.stack(images).split(batch_size), torch.tensor(labels).split(batch_size), strict=True))


def our_method(model_name: str, stabilizer: str, seed: int = 0):
    import timm

    import timm_selfcon  # noqa: F401
    from timm_selfcon.methods import build_method

    torch.manual_seed(seed)
    model = timm.create_model(model_name, num_classes=0, exit_stages=[2], sub_network="fc")
    return build_method("selfcon", model, temperature=0.1, base_temperature=0.07, gather=False,
                        head_batchnorm=stabilizer == "head_bn")


def trace_run(method, features_fn, batches, lr: float, warmup_steps: int, stabilizer: str = "none",
              steps_per_epoch: int = 100) -> list[dict]:
    """Train on ``batches`` with the engine's lr warm-up (from 0.01, then constant), optimizer and stabilizers
    (``head_warmup``: the heads' lr ramps over ``steps_per_epoch`` steps); per step the loss and the cosines."""
    from timm.optim import create_optimizer_v2

    from timm_selfcon.engine.schedule import lr_at
    from timm_selfcon.engine.train import head_lr_factor, parameter_groups

    head_warmup_steps = steps_per_epoch if stabilizer == "head_warmup" else 0
    groups = (parameter_groups(method, head_warmup_steps) if hasattr(method, "head_parameters") else
              [dict(params=list(method.parameters()))])  # the official model: no stabilizer, one group
    optimizer = create_optimizer_v2(groups, opt="lars" if stabilizer == "lars" else "momentum", lr=lr, momentum=0.9,
                                    weight_decay=1e-4)
    method.train()
    trace = []
    for step, (views, labels) in enumerate(batches):
        step_lr = lr_at(step, max(warmup_steps, 1), epochs=len(batches), lr=lr, schedule="constant",
                        warmup_epochs=int(warmup_steps > 0), warmup_from=0.01)
        for group in optimizer.param_groups:
            group["lr"] = step_lr * (head_lr_factor(step, head_warmup_steps) if group.get("heads") else 1.0)
        features = features_fn(views)
        loss = method.criterion(features, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if stabilizer == "clip":
            torch.nn.utils.clip_grad_norm_(method.parameters(), 1.0)
        optimizer.step()
        cosines = projection_cosines(features)
        plateau = plateau_loss(features.shape[0] * features.shape[1])
        trace.append(dict(step=step + 1, lr=step_lr, loss=float(loss.detach()), plateau=plateau, cosines=cosines,
                          on_plateau=on_plateau(float(loss.detach()), plateau, cosines)))
    return trace


def run_ours(model_name: str, batches, lr: float, warmup_steps: int, stabilizer: str) -> dict:
    method = our_method(model_name, stabilizer)
    start = time.perf_counter()
    trace = trace_run(method, lambda views: method.projector.forward_projections(views[:, 0]), batches, lr,
                      warmup_steps, stabilizer)
    return dict(code="ours", model=model_name, batch_size=batches[0][0].shape[0], lr=lr, warmup_steps=warmup_steps,
                stabilizer=stabilizer, seconds=time.perf_counter() - start, **summarize(trace), trace=trace)


def run_official(checkout: Path, batches, lr: float, warmup_steps: int) -> dict:
    """The official ConResNet-18 (fc exit after layer2) + ConLoss on the same batches, no stabilizer; ConLoss is
    attached as ``criterion`` so that :func:`trace_run` treats both codes alike."""
    sys.path.insert(0, str(checkout))
    from losses.losses import ConLoss  # the official checkout's, imported at run time
    from networks.resnet_big import ConResNet

    torch.manual_seed(0)
    model = ConResNet("resnet18", selfcon_pos=[False, True, False], selfcon_size="fc", dataset="cifar10")
    criterion = ConLoss(temperature=0.1)

    def features_fn(views: torch.Tensor) -> torch.Tensor:
        exits, backbone = model(views[:, 0])
        return torch.stack([*exits, backbone], dim=1)

    model.criterion = criterion
    start = time.perf_counter()
    trace = trace_run(model, features_fn, batches, lr, warmup_steps)
    return dict(code="official", model="ConResNet resnet18 fc", batch_size=batches[0][0].shape[0], lr=lr,
                warmup_steps=warmup_steps, stabilizer="none", seconds=time.perf_counter() - start,
                **summarize(trace), trace=trace)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_CIFAR10)
    parser.add_argument("--model", default="selfcon_resnet10_w16_cifar")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.05, 0.125, 0.5])
    parser.add_argument("--warmups", type=int, nargs="+", default=[0, 50], help="warm-up steps from lr 0.01")
    parser.add_argument("--stabilizers", nargs="+", default=["none", "clip", "head_warmup", "head_bn", "lars"])
    parser.add_argument("--official", type=Path, default=None, help="official checkout: also run its code")
    parser.add_argument("--official-batch-size", type=int, default=64)
    parser.add_argument("--official-steps", type=int, default=40)
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (args.data / "train.parquet").is_file():
        parser.error(f"--data {str(args.data)!r} holds no train.parquet")
    runs = []

    def report(run: dict) -> None:
        runs.append(run)
        print(f"{run['code']:8s} {run['model'][:26]:26s} batch {run['batch_size']:4d} lr {run['lr']:<6g} "
              f"warm-up {run['warmup_steps']:3d} {run['stabilizer']:11s} plateau {run['trace'][0]['plateau']:.3f} "
              f"reached {run['reached_plateau_at']!s:>4s} on {run['steps_on_plateau']:3d} "
              f"left {run['left_plateau_at']!s:>4s} final loss {run['final_loss']:.3f}  "
              f"cos end {json.dumps({k: round(v, 3) for k, v in run['trace'][-1]['cosines'].items()})}",
              flush=True)

    for batch_size in args.batch_sizes:
        batches = cifar10_batches(args.data, batch_size, args.steps)
        for lr in args.lrs:
            for warmup in args.warmups:
                report(run_ours(args.model, batches, lr, warmup, "none"))
        for stabilizer in args.stabilizers:
            if stabilizer != "none":
                report(run_ours(args.model, batches, max(args.lrs[:2]), max(args.warmups), stabilizer))
    if args.official is not None:
        batches = cifar10_batches(args.data, args.official_batch_size, args.official_steps)
        report(run_official(args.official.resolve(), batches, 0.05, 0))
        report(run_ours("selfcon_resnet18_cifar", batches, 0.05, 0, "none"))
    write_json(args.output, dict(**environment("torch", "threads"), margin=PLATEAU_MARGIN,
                                 collapsed_cosine=COLLAPSED_COSINE, runs=runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
