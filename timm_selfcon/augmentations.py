"""The augmentation pipelines as data: one table of per-view specs for both data pipelines.

A pipeline is a tuple of :class:`ViewSpec`: one spec applied to every view (SupCon, MoCo v2, SimCLR: the views
are independent draws of the same augmentation), or one spec per view (BYOL's asymmetric views). Both data
paths read the same table: ``data_pipeline=workers`` builds ``torchvision.transforms.v2`` compositions from it
(:mod:`timm_selfcon.data.transforms`), ``data_pipeline=device`` applies it to whole batches on the accelerator
(:mod:`timm_selfcon.data.device`). A method names its pipeline (``TrainingMethod.augmentation``); a method that
needs a new one registers it from its own file with :func:`register_augmentation`.

This module imports nothing of ``timm_selfcon`` (like :mod:`timm_selfcon.constants`), so every layer may read it.

Sources of the built-in pipelines:

- ``supcon``: SupContrast (Khosla et al., 2020) as used by SelfCon (Bae et al., AAAI 2023, arXiv 2106.15499):
  RandomResizedCrop(scale 0.2-1), horizontal flip, ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2.
- ``ce`` / ``linear``: the CE baseline's and the linear probe's RandomResizedCrop(0.2-1) + flip.
- ``moco_v2``: MoCo v2 "aug-plus" as used by MixCo (Kim et al., 2020): crop, jitter p=0.8, grayscale p=0.2,
  Gaussian blur sigma ~ U(0.1, 2) p=0.5, flip (last).
- ``simclr``: SimCLR (Chen et al., 2020) as used by MixCo: crop, flip, ColorJitter(0.8, 0.8, 0.8, 0.2) p=0.8,
  grayscale p=0.2, blur p=0.5.
- ``eval``: resize the shorter side to ``image_size / crop_pct`` and center-crop (no randomness).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AUGMENTATIONS", "ViewSpec", "register_augmentation", "view_specs"]


@dataclass(frozen=True)
class ViewSpec:
    """One view's augmentation, in the order applied: crop, flip (first or last), colour jitter, grayscale, blur,
    solarize, then normalisation.

    Args:
        crop: RandomResizedCrop(scale 0.2-1, ratio 3/4-4/3); ``False``: resize + center crop (evaluation).
        flip: horizontal flip with p=0.5.
        flip_last: the flip after the colour ops and blur instead of right after the crop (MoCo v2's order; the
            two orders give the same distribution, but draw their random numbers in a different order).
        jitter: ``(strength, hue)`` of ColorJitter(strength, strength, strength, hue), applied with p=0.8, or None.
        grayscale_p: probability of converting to grayscale (kept 3-channel).
        blur_p: probability of a Gaussian blur with sigma ~ U(0.1, 2) and a kernel of about 10% of the side.
        solarize_p: probability of solarizing (pixels >= 128 of 255 inverted).
    """

    crop: bool = True
    flip: bool = True
    flip_last: bool = False
    jitter: tuple[float, float] | None = None
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    solarize_p: float = 0.0

    def __post_init__(self) -> None:
        for name in ("grayscale_p", "blur_p", "solarize_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ViewSpec.{name} must be a probability in [0, 1], got {value!r}")
        if self.jitter is not None and (len(self.jitter) != 2 or self.jitter[0] < 0 or not 0 <= self.jitter[1] <= 0.5):
            raise ValueError(f"ViewSpec.jitter must be (strength >= 0, hue in [0, 0.5]), got {self.jitter!r}")
        if not self.crop and (self.flip or self.jitter or self.grayscale_p or self.blur_p or self.solarize_p):
            raise ValueError("ViewSpec(crop=False) is the deterministic evaluation view: no random op may be set")


_SUPCON_JITTER = (0.4, 0.1)

#: name -> per-view specs (one spec: every view).
AUGMENTATIONS: dict[str, tuple[ViewSpec, ...]] = {
    "supcon": (ViewSpec(jitter=_SUPCON_JITTER, grayscale_p=0.2),),
    "ce": (ViewSpec(),),
    "moco_v2": (ViewSpec(flip_last=True, jitter=_SUPCON_JITTER, grayscale_p=0.2, blur_p=0.5),),
    "simclr": (ViewSpec(jitter=(0.8, 0.2), grayscale_p=0.2, blur_p=0.5),),
    "linear": (ViewSpec(),),
    "eval": (ViewSpec(crop=False, flip=False),),
}


def register_augmentation(name: str, specs: tuple[ViewSpec, ...]) -> None:
    """Add pipeline ``name`` (one spec for every view, or one per view); re-registering the same specs is a no-op."""
    specs = tuple(specs)
    if not specs or not all(isinstance(spec, ViewSpec) for spec in specs):
        raise TypeError(f"augmentation {name!r}: expected a non-empty tuple of ViewSpec, got {specs!r}")
    if name in AUGMENTATIONS and AUGMENTATIONS[name] != specs:
        raise ValueError(f"augmentation {name!r} is already registered with other specs: {AUGMENTATIONS[name]}")
    AUGMENTATIONS[name] = specs


def view_specs(name: str, views: int) -> tuple[ViewSpec, ...]:
    """The spec of each of ``views`` views of pipeline ``name``.

    Raises:
        ValueError: unknown ``name``, or a per-view pipeline asked for another number of views.
    """
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation pipeline {name!r}; valid pipelines: {', '.join(AUGMENTATIONS)}")
    specs = AUGMENTATIONS[name]
    if len(specs) == 1:
        return specs * views
    if len(specs) != views:
        raise ValueError(f"augmentation {name!r} declares {len(specs)} views (one spec each), asked for {views}")
    return specs
