"""Data layer: dataset loading, SelfCon / MoCo v2 / SimCLR augmentations and resumable, seeded batch order.

See :mod:`timm_selfcon.data.datasets` for the reproducibility contract and the batch format.
"""

from pathlib import Path

from timm_selfcon.data.datasets import (
    KNOWN_DATASETS,
    ContrastiveImageDataset,
    CorruptImageWarning,
    Sample,
    StreamingContrastiveDataset,
    build_eval_loader,
    build_train_loader,
    class_names,
    collate_samples,
    isolated_rng,
    load_image_dataset,
    report_substitutions,
    resolve_columns,
    resolve_num_workers,
    split_train_val,
    substituted_sources,
)
from timm_selfcon.data.device import DEVICE_PIPELINES, BatchAugment, DeviceBatches, DeviceData, decode_split
from timm_selfcon.data.sampler import ResumableDistributedSampler, SampleKey, derive_seed
from timm_selfcon.data.transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALIZATION,
    PIPELINES,
    MultiViewTransform,
    blur_kernel_size,
    build_transform,
)

#: Folder of the shipped class-balanced CIFAR-10 subset (train.parquet: 5,000 images, test.parquet: 1,000).
CIFAR10_SUBSET: Path = Path(__file__).resolve().parent / "cifar10_subset"

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_SUBSET",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DEVICE_PIPELINES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KNOWN_DATASETS",
    "NORMALIZATION",
    "PIPELINES",
    "BatchAugment",
    "ContrastiveImageDataset",
    "CorruptImageWarning",
    "DeviceBatches",
    "DeviceData",
    "MultiViewTransform",
    "ResumableDistributedSampler",
    "Sample",
    "SampleKey",
    "StreamingContrastiveDataset",
    "blur_kernel_size",
    "build_eval_loader",
    "build_train_loader",
    "build_transform",
    "class_names",
    "collate_samples",
    "decode_split",
    "derive_seed",
    "isolated_rng",
    "load_image_dataset",
    "report_substitutions",
    "resolve_columns",
    "resolve_num_workers",
    "split_train_val",
    "substituted_sources",
]
