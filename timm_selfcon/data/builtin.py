"""The class-balanced CIFAR-10 subset shipped with the package: ``data="builtin:cifar10_subset"``.

``cifar10_subset/train.parquet`` holds 5,000 images (500 per class) of ``uoft-cs/cifar10``'s train split,
``test.parquet`` 1,000 of its test split; ``benchmarks/tools/make_cifar10_subset.py`` cut them. Any ``data=`` argument
takes the name, so tests, the demo and quick runs need no network.
"""
from __future__ import annotations

from pathlib import Path

from ..constants import CIFAR10_SUBSET_ID

__all__ = ["BUILTIN_DATASETS", "CIFAR10_SUBSET"]

#: Folder of the shipped class-balanced CIFAR-10 subset (train.parquet: 5,000 images, test.parquet: 1,000).
CIFAR10_SUBSET: Path = Path(__file__).resolve().parent / "cifar10_subset"

#: Datasets that ship with the package, usable as ``data="builtin:<name>"``.
BUILTIN_DATASETS: dict[str, Path] = {CIFAR10_SUBSET_ID: CIFAR10_SUBSET}
