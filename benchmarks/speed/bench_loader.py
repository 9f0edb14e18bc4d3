"""Loader throughput (images/s) on the shipped CIFAR-10 subset, side by side for several worker counts.

Default: SupCon augmentation (Khosla et al. 2020, as used by SelfCon) at 32 px, batch 64, num_workers 0/1/2.
Each configuration runs a warm-up over a few batches (worker start-up excluded: workers persist), then
times ``--epochs`` full epochs and reports the best one (the least disturbed by other load on the machine).
Also measures, without a loader, what the per-sample RNG isolation costs compared with
applying the same transform without it. Every configuration, and that measurement, runs in a fresh process.

    python -m benchmarks.speed.bench_loader [--views 2] [--workers 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.harness import environment, print_table, run_fresh, write_json
from timm_selfcon.data import (
    CIFAR10_SUBSET,
    NORMALIZATION,
    ContrastiveImageDataset,
    ResumableDistributedSampler,
    build_train_loader,
    build_transform,
    load_image_dataset,
)
from timm_selfcon.data.datasets import _decode_rgb


def time_loader(dataset: ContrastiveImageDataset, batch_size: int, num_workers: int, epochs: int) -> list[float]:
    """Images per second of each of ``epochs`` full epochs, after a short warm-up."""
    sampler = ResumableDistributedSampler(len(dataset), batch_size, seed=0)
    loader = build_train_loader(dataset, sampler, batch_size, num_workers, pin_memory=False)
    sampler.set_epoch(0)
    for step, _ in enumerate(loader):
        if step >= 2 * max(num_workers, 1):
            break
    rates = []
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)
        images = 0
        start = time.perf_counter()
        for batch in loader:
            images += batch["image"].shape[0]
        rates.append(images / (time.perf_counter() - start))
    return rates


def time_in_process(dataset: ContrastiveImageDataset, samples: int) -> dict[str, float]:
    """Images per second of decode + transform, with and without the per-sample RNG isolation."""
    cells = dataset.hf_dataset[:samples][dataset.image_column]
    start = time.perf_counter()
    for cell in cells:
        dataset.transform(_decode_rgb(cell))
    plain = samples / (time.perf_counter() - start)
    start = time.perf_counter()
    for first in range(0, samples, 64):  # the loader's path: one Arrow read per batch
        dataset.__getitems__([(index, 0) for index in range(first, min(first + 64, samples))])
    seeded = samples / (time.perf_counter() - start)
    return {"plain_transform": plain, "seeded_getitems": seeded}


def build_dataset(spec: dict) -> ContrastiveImageDataset:
    hf = load_image_dataset(CIFAR10_SUBSET, "train")
    transform = build_transform(spec["pipeline"], spec["image_size"], *NORMALIZATION["cifar10"], views=spec["views"])
    return ContrastiveImageDataset(hf, transform, seed=0)


def measure_loader(spec: dict) -> list[float]:
    """:func:`time_loader` of one configuration (in a fresh process)."""
    return time_loader(build_dataset(spec), spec["batch_size"], spec["num_workers"], spec["epochs"])


def measure_in_process(spec: dict) -> dict[str, float]:
    """:func:`time_in_process` (in a fresh process)."""
    return time_in_process(build_dataset(spec), spec["samples"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="supcon")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per configuration; the best counts")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    spec = dict(pipeline=args.pipeline, image_size=args.image_size, views=args.views)
    env = environment("torch", "cpu_count", "threads", "python")
    print(
        f"{args.pipeline} {args.image_size}px, views={args.views}, batch {args.batch_size}, "
        f"{len(load_image_dataset(CIFAR10_SUBSET, 'train'))} images; torch {env['torch']}, {env['cpu_count']} CPUs, "
        f"main-process threads {env['threads']}"
    )
    epoch_rates: dict[str, list[float]] = {}
    for num_workers in args.workers:
        epoch_rates[f"num_workers={num_workers}"] = run_fresh(measure_loader, dict(
            spec, batch_size=args.batch_size, num_workers=num_workers, epochs=args.epochs))
    results = {name: max(rates) for name, rates in epoch_rates.items()}
    reference = results[f"num_workers={args.workers[0]}"]
    print(f"(best of {args.epochs} epochs)")
    print_table([[name, f"{rate:.0f}", f"{rate / reference:.2f}"] for name, rate in results.items()],
                ["configuration", "images/s", "ratio"])

    overhead = run_fresh(measure_in_process, dict(spec, samples=1000))
    print(
        f"in-process, per sample: plain decode+transform {overhead['plain_transform']:.0f} images/s, "
        f"seeded __getitems__ {overhead['seeded_getitems']:.0f} images/s "
        f"(ratio {overhead['seeded_getitems'] / overhead['plain_transform']:.2f})"
    )
    if args.json is not None:
        write_json(args.json, {
            "benchmark": "bench_loader",
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "images_per_second": results,
            "images_per_second_per_epoch": epoch_rates,
            "in_process_images_per_second": overhead,
            "environment": env,
        })


if __name__ == "__main__":
    main()
