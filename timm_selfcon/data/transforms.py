"""Augmentation pipelines of SelfCon, SupCon, MoCo v2 and SimCLR, built from ``torchvision.transforms.v2``.

- ``supcon`` — SelfCon (Bae et al., AAAI 2023, §3.1 of its code recipe) = SupContrast (Khosla et al., 2020):
  RandomResizedCrop(scale 0.2–1), horizontal flip, ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8,
  grayscale p=0.2.
- ``ce`` / ``linear`` — the weaker CE-baseline / linear-probe augmentation: RandomResizedCrop(0.2–1) + flip.
- ``moco_v2`` — MoCo v2 "aug-plus" as used by MixCo (Kim et al., 2020): crop, jitter p=0.8, grayscale p=0.2,
  Gaussian blur σ ~ U(0.1, 2) p=0.5, flip.
- ``simclr`` — SimCLR (Chen et al., 2020) as used by MixCo: crop, flip, ColorJitter(0.8, 0.8, 0.8, 0.2)
  p=0.8, grayscale p=0.2, blur p=0.5.
- ``eval`` — resize the shorter side to ``image_size / crop_pct`` and center-crop ``image_size``
  (crop_pct 1.0 on 32 px CIFAR is ToTensor + Normalize only; 0.875 at 224 is Resize 256 + CenterCrop 224).

Every transform returns a float32 tensor of shape [V, C, H, W] (V = ``views``; V=1 for a single view).
Geometric and colour ops run on PIL images, whose integer arithmetic does not depend on the number of
torch threads; randomness comes from torch's global generator, which the dataset seeds per sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2

from ..constants import AUGMENTATIONS
from ..errors import UserInputError

__all__ = [
    "PIPELINES",
    "MultiViewTransform",
    "blur_kernel_size",
    "build_transform",
]

PIPELINES = AUGMENTATIONS

_CROP_SCALE = (0.2, 1.0)
_BLUR_SIGMA = (0.1, 2.0)


def blur_kernel_size(image_size: int) -> int:
    """Odd Gaussian-blur kernel of about 10% of the image side: 23 at 224 (SimCLR), 7 at 64, 3 at 32."""
    return int(0.1 * image_size) // 2 * 2 + 1


def _color_jitter(strength: float, hue: float) -> v2.Transform:
    return v2.RandomApply(
        [v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=hue)], p=0.8
    )


def _blur(image_size: int) -> v2.Transform:
    blur = v2.GaussianBlur(kernel_size=blur_kernel_size(image_size), sigma=_BLUR_SIGMA)
    return v2.RandomApply([blur], p=0.5)


def _augmentations(pipeline: str, image_size: int, crop_pct: float) -> list[v2.Transform]:
    crop = v2.RandomResizedCrop(image_size, scale=_CROP_SCALE, antialias=True)
    flip = v2.RandomHorizontalFlip()
    if pipeline == "supcon":
        return [crop, flip, _color_jitter(0.4, 0.1), v2.RandomGrayscale(p=0.2)]
    if pipeline in ("ce", "linear"):
        return [crop, flip]
    if pipeline == "moco_v2":
        return [crop, _color_jitter(0.4, 0.1), v2.RandomGrayscale(p=0.2), _blur(image_size), flip]
    if pipeline == "simclr":
        return [crop, flip, _color_jitter(0.8, 0.2), v2.RandomGrayscale(p=0.2), _blur(image_size)]
    if pipeline == "eval":
        resize_to = math.floor(image_size / crop_pct)
        return [v2.Resize(resize_to, antialias=True), v2.CenterCrop(image_size)]
    raise UserInputError(f"unknown augmentation pipeline {pipeline!r}; valid pipelines: {', '.join(PIPELINES)}")


class MultiViewTransform:
    """Applies one augmentation pipeline ``views`` times independently.

    Call with a PIL image (converted to RGB if needed) or a uint8 tensor [C, H, W];
    returns a float32 tensor [V, C, H, W], normalised.
    """

    def __init__(
        self, view_transform: Callable[[Any], torch.Tensor], views: int, pipeline: str, image_size: int
    ) -> None:
        self.view_transform = view_transform
        self.views = views
        self.pipeline = pipeline
        self.image_size = image_size

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        if isinstance(image, Image.Image) and image.mode != "RGB":
            image = image.convert("RGB")
        return torch.stack([self.view_transform(image) for _ in range(self.views)])

    def __repr__(self) -> str:
        return f"MultiViewTransform(pipeline={self.pipeline!r}, views={self.views}, {self.view_transform!r})"


def _check_stats(name: str, values: Sequence[float]) -> tuple[float, ...]:
    try:
        stats = tuple(float(v) for v in values)
    except TypeError as error:
        raise TypeError(f"{name} must be a sequence of 3 floats, got {values!r}") from error
    if len(stats) != 3:
        raise UserInputError(f"{name} must have 3 values (one per RGB channel), got {len(stats)}: {values!r}")
    return stats


def build_transform(
    pipeline: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    views: int = 1,
    crop_pct: float = 1.0,
) -> MultiViewTransform:
    """Build an augmentation returning a float32 tensor [V, C, H, W] with C=3, H=W=``image_size``.

    Args:
        pipeline: one of :data:`PIPELINES`.
        image_size: output side in pixels (32 for CIFAR, 64 Tiny-ImageNet, 224 ImageNet / MixCo).
        mean, std: per-channel normalisation (see :data:`timm_selfcon.constants.NORMALIZATION`).
        views: independent applications of the pipeline (2 for SupCon / SelfCon-M / MoCo / SimCLR).
        crop_pct: only for ``eval``: fraction of the resized image kept by the center crop.
    """
    if pipeline not in PIPELINES:
        raise UserInputError(f"unknown augmentation pipeline {pipeline!r}; valid: {', '.join(PIPELINES)}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise UserInputError(f"image_size must be a positive int, got {image_size!r}")
    if isinstance(views, bool) or not isinstance(views, int) or views < 1:
        raise UserInputError(f"views must be a positive int, got {views!r}")
    if not 0.0 < crop_pct <= 1.0:
        raise UserInputError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
    mean_t = _check_stats("mean", mean)
    std_t = _check_stats("std", std)
    if min(std_t) <= 0:
        raise UserInputError(f"std must be positive, got {std!r}")
    view_transform = v2.Compose(
        [
            *_augmentations(pipeline, image_size, crop_pct),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean_t), std=list(std_t)),
        ]
    )
    return MultiViewTransform(view_transform, views, pipeline, image_size)
