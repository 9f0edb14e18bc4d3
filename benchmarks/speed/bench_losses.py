"""Speed of the contrastive losses (forward + backward) against mask-based formulations of the official code.

The "official-style" functions below are written here from the description of the official SupCon/SelfCon
and MixCo losses (full ``[BV, BV]`` logits, max subtraction, ``logits_mask`` via scatter, ``exp``, ``log`` of
the sum, mask-weighted mean of the log-probabilities; MixCo's ``log(softmax)`` soft cross-entropy). They
compute the same values as ours and serve only as the baseline for the timing ratio.

Usage::

    python -m benchmarks.speed.bench_losses [--repeats 20] [--threads 2] [--json benchmarks/results/losses.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.harness import environment, print_table, run_fresh, write_json
from timm_selfcon.losses import mixco_loss, supcon_loss


def official_style_supcon(
    features: Tensor, labels: Tensor | None, temperature: float, base_temperature: float
) -> Tensor:
    """Mask-based SupCon L_out, contrast mode ``all``: features ``[B, V, D]``, labels ``[B]`` or None."""
    batch_size, num_views, _ = features.shape
    device = features.device
    if labels is None:
        mask = torch.eye(batch_size, dtype=torch.float32, device=device)
    else:
        column = labels.reshape(-1, 1)
        mask = torch.eq(column, column.T).float()
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)  # [V*B, D], view-major
    scores = torch.div(contrast @ contrast.T, temperature)
    row_max, _ = scores.max(dim=1, keepdim=True)
    logits = scores - row_max.detach()
    mask = mask.repeat(num_views, num_views)
    num_anchors = batch_size * num_views
    logits_mask = torch.scatter(
        torch.ones_like(mask), 1, torch.arange(num_anchors, device=device).view(-1, 1), 0
    )
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    loss = -(temperature / base_temperature) * mean_log_prob_pos
    return loss.view(num_views, batch_size).mean()


def official_style_mixco(
    q_mix: Tensor, keys: Tensor, lam: Tensor, queue: Tensor, temperature: float
) -> Tensor:
    """Soft CE with ``cat(diag(λ), diag(1-λ), zeros)`` targets and ``log(softmax)``."""
    logits = torch.cat([q_mix @ keys.T, q_mix @ queue.T], dim=1) / temperature
    targets = torch.cat(
        [torch.diag(lam), torch.diag(1 - lam), torch.zeros(lam.shape[0], queue.shape[0])], dim=1
    )
    return torch.mean(torch.sum(-targets * torch.log(F.softmax(logits, dim=1)), dim=1))


def time_forward_backward(
    steps: dict[str, Callable[[], Tensor]], leaves: list[Tensor], repeats: int, warmup: int
) -> dict[str, float]:
    """Median seconds of ``step().backward()`` per step, after ``warmup`` untimed rounds.

    The steps are interleaved within each round (order alternating between rounds), so that load from
    other processes on the machine affects all of them alike and the ratio stays meaningful.
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(warmup + repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            for leaf in leaves:
                leaf.grad = None
            start = time.perf_counter()
            steps[name]().backward()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


CASES = ("supcon_labels", "simclr_no_labels", "mixco_queue")


def measure_case(spec: dict) -> dict:
    """One case's forward + backward, ours against the official style (interleaved), in this (fresh) process."""
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    name, dim, temperature = spec["name"], 128, 0.1
    if name != "mixco_queue":
        batch_size, num_views = 1024, 2
        features = F.normalize(torch.randn(batch_size, num_views, dim), dim=-1).requires_grad_(True)
        labels = torch.randint(0, 100, (batch_size,)) if name == "supcon_labels" else None
        ours_value = supcon_loss(features, labels, temperature=temperature, base_temperature=0.07)
        official_value = official_style_supcon(features, labels, temperature, 0.07)
        if not torch.allclose(ours_value, official_value, rtol=1e-5, atol=1e-5):
            raise RuntimeError(f"{name}: values differ, ours {ours_value.item()} vs {official_value.item()}")
        timings = time_forward_backward(
            {
                "ours": lambda: supcon_loss(features, labels, temperature=temperature, base_temperature=0.07),
                "official": lambda: official_style_supcon(features, labels, temperature, 0.07),
            },
            [features],
            spec["repeats"],
            spec["warmup"],
        )
        sizes = {"batch_size": batch_size, "views": num_views, "dim": dim}
    else:
        num_images, queue_size = 256, 4096
        num_mixed = num_images // 2
        q_mix = F.normalize(torch.randn(num_mixed, dim), dim=-1).requires_grad_(True)
        keys = F.normalize(torch.randn(num_images, dim), dim=-1).requires_grad_(True)
        queue = F.normalize(torch.randn(queue_size, dim), dim=-1)
        lam = torch.rand(num_mixed)
        ours_value = mixco_loss(q_mix, keys, lam, queue, temperature=0.05)
        official_value = official_style_mixco(q_mix, keys, lam, queue, 0.05)
        if not torch.allclose(ours_value, official_value, rtol=1e-4, atol=1e-4):
            raise RuntimeError(f"mixco: values differ, ours {ours_value.item()} vs {official_value.item()}")
        timings = time_forward_backward(
            {
                "ours": lambda: mixco_loss(q_mix, keys, lam, queue, temperature=0.05),
                "official": lambda: official_style_mixco(q_mix, keys, lam, queue, 0.05),
            },
            [q_mix, keys],
            spec["repeats"],
            spec["warmup"],
        )
        sizes = {"batch_size": num_images, "queue_size": queue_size, "dim": dim}
    ours, official = timings["ours"], timings["official"]
    return {"name": name, **sizes, "ours_ms": ours * 1e3, "official_style_ms": official * 1e3,
            "ratio_ours_over_official": ours / official}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--json", type=Path, default=None, help="write results as JSON to this path")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    env = environment("torch", "cpu", "cpu_count", "load_average")
    results: dict[str, object] = {
        "torch": env["torch"],
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "machine": env["cpu"],
        "cpu_count": env["cpu_count"],
        "load_average_before": env["load_average"][0],
        "cases": [],
    }
    print(f"forward+backward, threads={args.threads}, median of {args.repeats} (warm-up {args.warmup}), "
          "each case in a fresh process; SupCon B=1024 V=2 D=128, MixCo N=256 (M=128) K=4096 D=128")
    for name in CASES:
        results["cases"].append(run_fresh(measure_case, dict(name=name, threads=args.threads, repeats=args.repeats,
                                                             warmup=args.warmup)))
    print_table([[case["name"], f"{case['ours_ms']:.2f}", f"{case['official_style_ms']:.2f}",
                  f"{case['ratio_ours_over_official']:.3f}"] for case in results["cases"]],
                ["case", "ours ms", "official-style ms", "ours/official"])

    results["load_average_after"] = os.getloadavg()[0]
    print(
        f"1-min load average before/after: {results['load_average_before']:.2f} / "
        f"{results['load_average_after']:.2f} on {env['cpu_count']} CPUs (other processes skew absolute times; "
        "the interleaved ratio is the robust number)"
    )
    if args.json is not None:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
