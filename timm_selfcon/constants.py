"""Constants shared across the package's layers (models, data, engine, config, hub).

This module imports nothing of ``timm_selfcon`` (only the standard library), so any layer may import it
without pulling in another: a registered model reads the CIFAR statistics for its ``pretrained_cfg`` here,
not from the data layer.
"""
from __future__ import annotations

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_SUBSET_ID",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMALIZATION",
    "training_normalization",
]

# Normalisation statistics, as in the SupContrast / SelfCon and MixCo code.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Normalisation (mean, std) per dataset family, as in the MixCo / SupContrast code.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}

#: ``data=`` value of the class-balanced CIFAR-10 subset shipped with the package (a subset of ``uoft-cs/cifar10``).
CIFAR10_SUBSET_ID = "builtin:cifar10_subset"


def training_normalization(data: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) used for ``data``: CIFAR-10 / CIFAR-100 statistics for those, ImageNet's otherwise."""
    lowered = str(data).lower()
    if "cifar100" in lowered or "cifar-100" in lowered:
        return NORMALIZATION["cifar100"]
    if "cifar" in lowered:
        return NORMALIZATION["cifar10"]
    return NORMALIZATION["imagenet"]
