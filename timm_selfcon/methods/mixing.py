"""Pixel-space mix-up of image pairs for MixCo.

Kim, Lee, Bae, Yun, "MixCo: Mix-up Contrastive Learning for Visual Representation", NeurIPS 2020 Workshop on
Self-Supervised Learning, arXiv 2010.06300. A local batch of ``N`` images is split into halves and image
``i < N/2`` is mixed with image ``i + N/2`` with its own ``λ_i ~ U(0, 1)`` (Beta(1, 1), no ``max(λ, 1-λ)``
folding); every image is in exactly one mix.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

__all__ = ["MixCoDeclaration", "mix_pairs"]


class MixCoDeclaration:
    """What both MixCo methods declare on top of their base method; listed first among the bases, e.g.
    ``class MoCoMixCo(MixCoDeclaration, MoCo)``, so these attributes win."""

    #: the base method's name in the model card ("SimCLR", "MoCo v2")
    base_method: ClassVar[str]
    per_process_batch_multiple: ClassVar[int] = 2  # the batch's first half is mixed with its second half
    card_family: ClassVar[str | None] = "MixCo"
    card_tags: ClassVar[tuple[str, ...]] = ("mixco", "self-supervised-learning")
    description: ClassVar[str]

    @classmethod
    def card_text(cls, options: Any) -> str:
        """The model-card paragraph: the description, the base method and the mix settings (``options``: the run's
        options, a ``MethodOptions`` with ``mix_temperature`` and ``mix_weight``)."""
        return (f"{cls.description} Base method: **{cls.base_method}**; mix temperature "
                f"**{options.mix_temperature}**, mix weight **{options.mix_weight}**.")


def mix_pairs(images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix the first half of a batch with the second half.

    ``mixed_i = lam_i * images_i + (1 - lam_i) * images_{i + N/2}`` with ``lam_i ~ U(0, 1)``, ``i < N/2``.

    Args:
        images: ``[N, ...]`` (usually ``[N, C, H, W]``, already normalised; the normalisation is a per-channel
            affine map, so mixing normalised tensors equals mixing raw pixels), ``N`` even.
        generator: optional RNG for ``lam`` (on any device; ``lam`` is moved to ``images.device``).

    Returns:
        ``mixed [N/2, ...]`` (dtype of ``images``) and ``lam [N/2]`` (float32, or the images' dtype if wider).
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() < 1 or not images.is_floating_point():
        raise ValueError(f"images must be a floating-point [N, C, H, W] tensor, got shape {tuple(images.shape)} "
                         f"and dtype {images.dtype}")
    num_images = images.shape[0]
    if num_images == 0 or num_images % 2 != 0:
        raise ValueError(f"MixCo needs an even per-process batch (it mixes the first half with the second "
                         f"half), got N={num_images} images")
    num_mixed = num_images // 2
    lam_dtype = torch.promote_types(images.dtype, torch.float32)
    rng_device = generator.device if generator is not None else images.device
    lam = torch.rand(num_mixed, generator=generator, device=rng_device, dtype=lam_dtype).to(images.device)
    weight = lam.view(num_mixed, *([1] * (images.dim() - 1)))
    mixed = weight * images[:num_mixed] + (1.0 - weight) * images[num_mixed:]
    return mixed.to(images.dtype), lam
