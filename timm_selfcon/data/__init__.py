"""Data layer: dataset loading, SelfCon / MoCo v2 / SimCLR augmentations and resumable, seeded batch order.

Modules: ``loading`` (a split from the Hub, parquet or an image folder; its columns), ``builtin`` (the shipped
CIFAR-10 subset), ``datasets`` (torch datasets of augmented views; see it for the reproducibility contract and
the batch format), ``loaders`` (DataLoaders), ``sampler`` (resumable distributed order), ``transforms``
(augmentation pipelines) and ``device`` (the split on the accelerator, batches augmented there).
Normalisation statistics (``NORMALIZATION``, ``CIFAR10_MEAN`` ...) live in :mod:`timm_selfcon.constants`, which
the models share; they are re-exported here.
"""

from timm_selfcon.constants import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALIZATION,
)
from timm_selfcon.data.builtin import CIFAR10_SUBSET
from timm_selfcon.data.datasets import (
    ContrastiveImageDataset,
    CorruptImageWarning,
    Sample,
    StreamingContrastiveDataset,
    isolated_rng,
    report_substitutions,
    strict_data_message,
    substituted_sources,
)
from timm_selfcon.data.device import BatchAugment, DeviceBatches, DeviceData, decode_split, device_pipelines
from timm_selfcon.data.loaders import (
    build_eval_loader,
    build_train_loader,
    collate_samples,
    find_undecodable,
    resolve_num_workers,
)
from timm_selfcon.data.loading import (
    KNOWN_DATASETS,
    class_names,
    dataset_short_name,
    load_image_dataset,
    resolve_columns,
    select_classes,
    split_train_val,
)
from timm_selfcon.data.sampler import ResumableDistributedSampler, SampleKey, derive_seed
from timm_selfcon.data.transforms import PIPELINES, MultiViewTransform, blur_kernel_size, build_transform

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_SUBSET",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
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
    "dataset_short_name",
    "decode_split",
    "derive_seed",
    "device_pipelines",
    "find_undecodable",
    "isolated_rng",
    "load_image_dataset",
    "report_substitutions",
    "resolve_columns",
    "resolve_num_workers",
    "select_classes",
    "split_train_val",
    "strict_data_message",
    "substituted_sources",
]
