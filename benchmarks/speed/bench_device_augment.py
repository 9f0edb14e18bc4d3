"""On this CPU: images/s of the ``device`` pipeline's batched augmentation on CPU tensors beside the ``workers``
pipeline's per-sample PIL augmentation, for each recipe pipeline, side by side.

Both start from decoded images of the shipped CIFAR-10 subset (32 px) and end with normalised float32 views:
``workers`` = what one DataLoader worker does per sample (seeded RNG, PIL ops, ToTensor, Normalize; decoding
excluded), ``device`` = :class:`timm_selfcon.data.device.BatchAugment` on a uint8 batch. Best of ``--repeats``; the
load average is recorded (other processes slow both sides).

    OMP_NUM_THREADS=1 python -m benchmarks.speed.bench_device_augment [--batch 256] [--views 1] [--json PATH]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from PIL import Image

from benchmarks.harness import environment, print_table, write_json
from timm_selfcon.data import CIFAR10_SUBSET, NORMALIZATION, build_transform, isolated_rng, load_image_dataset
from timm_selfcon.data.device import BatchAugment, decode_split
from timm_selfcon.data.sampler import derive_seed


def best_rate(run, images: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return images / min(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--pipelines", nargs="+", default=["supcon", "simclr", "moco_v2", "ce"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    mean, std = NORMALIZATION["cifar10"]
    data = decode_split(load_image_dataset(CIFAR10_SUBSET, "train").select(range(args.batch)), "img", "label", 32,
                        cache=False)
    pils = [Image.fromarray(image.numpy()) for image in data.images]
    index = torch.arange(args.batch)
    results = {**environment("threads", "cpu"), "batch": args.batch, "views": args.views,
               "load_average_before": os.getloadavg(), "images_per_s": {}}
    rows = []
    for pipeline in args.pipelines:
        transform = build_transform(pipeline, 32, mean, std, views=args.views)
        augment = BatchAugment(pipeline, 32, mean, std, views=args.views)

        def per_sample(transform=transform) -> None:
            for i, pil in enumerate(pils):
                with isolated_rng(derive_seed("augment", 0, 0, i)):
                    transform(pil)

        augment(data.images, index, 0)  # first call allocates
        workers = best_rate(per_sample, args.batch, args.repeats)
        device = best_rate(lambda augment=augment: augment(data.images, index, 0), args.batch, args.repeats)
        results["images_per_s"][pipeline] = {"workers": workers, "device": device}
        rows.append([pipeline, f"{workers:.0f}", f"{device:.0f}", f"{device / workers:.2f}"])
    print_table(rows, ["pipeline", "workers (PIL, 1 process)", "device (tensors on CPU)", "ratio"])
    results["load_average_after"] = os.getloadavg()
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
