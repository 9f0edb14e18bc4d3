"""The ``data_pipeline=workers`` augmentations: :mod:`timm_selfcon.augmentations`' per-view specs built from
``torchvision.transforms.v2``.

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

from ..augmentations import AUGMENTATIONS, ViewSpec, view_specs
from ..errors import UserInputError

__all__ = [
    "PIPELINES",
    "MultiViewTransform",
    "blur_kernel_size",
    "build_transform",
]

PIPELINES = AUGMENTATIONS  # name -> per-view specs; the table lives in timm_selfcon.augmentations

_CROP_SCALE = (0.2, 1.0)
_BLUR_SIGMA = (0.1, 2.0)


def blur_kernel_size(image_size: int) -> int:
    """Odd Gaussian-blur kernel of about 10% of the image side: 23 at 224 (SimCLR), 7 at 64, 3 at 32."""
    return int(0.1 * image_size) // 2 * 2 + 1


def _color_jitter(strength: float, hue: float) -> v2.Transform:
    return v2.RandomApply(
        [v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=hue)], p=0.8
    )


def _blur(image_size: int, p: float) -> v2.Transform:
    blur = v2.GaussianBlur(kernel_size=blur_kernel_size(image_size), sigma=_BLUR_SIGMA)
    return v2.RandomApply([blur], p=p)


def _augmentations(spec: ViewSpec, image_size: int, crop_pct: float) -> list[v2.Transform]:
    """The PIL-side ops of one view, in the spec's order."""
    if not spec.crop:
        return [v2.Resize(math.floor(image_size / crop_pct), antialias=True), v2.CenterCrop(image_size)]
    flip = [v2.RandomHorizontalFlip()] if spec.flip else []
    ops: list[v2.Transform] = [v2.RandomResizedCrop(image_size, scale=_CROP_SCALE, antialias=True)]
    if not spec.flip_last:
        ops += flip
    if spec.jitter is not None:
        ops.append(_color_jitter(*spec.jitter))
    if spec.grayscale_p:
        ops.append(v2.RandomGrayscale(p=spec.grayscale_p))
    if spec.blur_p:
        ops.append(_blur(image_size, spec.blur_p))
    if spec.flip_last:
        ops += flip
    if spec.solarize_p:
        ops.append(v2.RandomSolarize(threshold=128, p=spec.solarize_p))  # on the uint8 PIL image
    return ops


class MultiViewTransform:
    """Applies each view's transform to the image, one after the other (independent random draws).

    Call with a PIL image (converted to RGB if needed) or a uint8 tensor [C, H, W];
    returns a float32 tensor [V, C, H, W], normalised.
    """

    def __init__(
        self, view_transforms: Sequence[Callable[[Any], torch.Tensor]], pipeline: str, image_size: int
    ) -> None:
        self.view_transforms = list(view_transforms)
        self.views = len(self.view_transforms)
        self.pipeline = pipeline
        self.image_size = image_size

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        if isinstance(image, Image.Image) and image.mode != "RGB":
            image = image.convert("RGB")
        return torch.stack([transform(image) for transform in self.view_transforms])

    def __repr__(self) -> str:
        return f"MultiViewTransform(pipeline={self.pipeline!r}, views={self.views}, {self.view_transforms!r})"


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
        pipeline: a name of :data:`timm_selfcon.augmentations.AUGMENTATIONS` (per-view specs).
        image_size: output side in pixels (32 for CIFAR, 64 Tiny-ImageNet, 224 ImageNet / MixCo).
        mean, std: per-channel normalisation (see :data:`timm_selfcon.constants.NORMALIZATION`).
        views: number of views (2 for SupCon / SelfCon-M / MoCo / SimCLR); each gets its spec's transform.
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
    try:
        specs = view_specs(pipeline, views)
    except ValueError as error:
        raise UserInputError(str(error)) from None
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean_t), std=list(std_t))]
    return MultiViewTransform([v2.Compose([*_augmentations(spec, image_size, crop_pct), *tail]) for spec in specs],
                              pipeline, image_size)
