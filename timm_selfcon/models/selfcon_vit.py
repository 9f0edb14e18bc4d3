"""Multi-exit Vision Transformer for SelfCon (an extension: the SelfCon paper has no ViT).

Papers: "Self-Contrastive Learning: Single-viewed Supervised Contrastive Framework using Sub-network",
Bae et al., AAAI 2023 (arXiv 2106.15499); "An Image is Worth 16x16 Words", Dosovitskiy et al.,
ICLR 2021 (arXiv 2010.11929).

Built on timm's ``VisionTransformer``; exits follow intermediate transformer blocks. Stage numbering
is timm's ``feature_info`` for ViT: index ``k`` is the output of ``blocks[k]`` (0-based), so an exit
may follow blocks ``0 .. depth - 2``. Default: one exit after the middle block (``depth // 2 - 1``,
block 6 of 12). Sub-networks: ``same`` (fresh copies of the remaining blocks + LayerNorm),
``small`` (half of them) and ``fc`` (LayerNorm + pooling + Linear(D, D)); each exit pools like the
backbone (class token, or the mean of patch tokens).

Names start with ``selfcon_`` like every family of the package: ``selfcon_vit_tiny_patch4_32`` (32x32 input,
CIFAR statistics), ``selfcon_vit_tiny_patch16_224``, ``selfcon_vit_small_patch16_224``. The names before 0.4
(``vit_tiny_patch4_32_selfcon``, ...) still create them, with timm's deprecation warning.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
from timm.data import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD
from timm.models import generate_default_cfgs, register_model
from timm.models._registry import register_model_deprecations
from timm.models.vision_transformer import VisionTransformer, init_weights_vit_timm

from ..constants import CIFAR10_MEAN, CIFAR10_STD
from ..errors import UserInputError
from .exits import MultiExitMixin, build_exits, create_multi_exit_model, validate_exit_stages, validate_sub_network

__all__ = ["SelfConVisionTransformer"]


class TokenPool(nn.Module):
    """Pool ``[B, N, D]`` tokens to ``[B, D]``: the class token, or the mean of the patch tokens."""

    def __init__(self, pool_type: str, num_prefix_tokens: int) -> None:
        super().__init__()
        self.pool_type = pool_type
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "token":
            return x[:, 0]
        return x[:, self.num_prefix_tokens:].mean(1)


def _fresh_copy(module: nn.Module) -> nn.Module:
    """An unshared copy of ``module`` with re-initialised parameters (timm's ViT init)."""
    fresh = copy.deepcopy(module)
    for name, sub in fresh.named_modules():
        if isinstance(sub, nn.LayerNorm):
            sub.reset_parameters()
        init_weights_vit_timm(sub, name)
    return fresh


class SelfConVisionTransformer(MultiExitMixin, VisionTransformer):
    """timm ``VisionTransformer`` with SelfCon exits after intermediate blocks."""

    backbone_classifier_name = "head"
    forward_intermediates = VisionTransformer.forward_intermediates

    def __init__(self, *args: Any, exit_stages: Any = None, sub_network: str = "fc", **kwargs: Any) -> None:
        """Args as timm's ``VisionTransformer``, plus ``exit_stages`` (block indices) and ``sub_network``."""
        super().__init__(*args, **kwargs)
        dd = dict(device=kwargs.get("device"), dtype=kwargs.get("dtype"))
        depth = len(self.blocks)
        if exit_stages is None:
            exit_stages = (depth // 2 - 1,)
        self.exit_stages = validate_exit_stages(exit_stages, range(0, depth - 1), f"a ViT of depth {depth}")
        self.sub_network = validate_sub_network(sub_network)
        self.num_stages = depth - 1
        if self.global_pool not in ("token", "avg"):
            raise UserInputError(f"SelfCon ViT exits support global_pool 'token' or 'avg', got {self.global_pool!r}")
        # each exit: its own LayerNorm and the backbone's pooling; ``small`` keeps half of the remaining blocks
        self.exits = build_exits(
            self.exit_stages, self.sub_network, self.feature_info, self.embed_dim,
            lambda stage: _fresh_copy(self.blocks[stage + 1:]),
            halve=lambda rest: rest[:max(1, len(rest) // 2)],
            pool=lambda: TokenPool(self.global_pool, self.num_prefix_tokens),
            norm=lambda: _fresh_copy(self.norm), **dd,
        )
        self._init_exit_heads(**dd)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifiers with ``num_classes`` outputs on the backbone and on every exit."""
        super().reset_classifier(num_classes, global_pool)
        self._reset_exit_heads()

    def _ensemble_active(self) -> bool:
        # no super(): TorchScript compiles this method (see exits.py)
        return len(self.exit_stages) > 0 and self.num_classes > 0 and self.global_pool != ""

    def _forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        return self.blocks[0](x)

    def _forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        # TorchScript indexes an nn.Sequential only with constants: pick the block in a loop
        for block_index, block in enumerate(self.blocks):
            if block_index == index:
                return block(x)
        raise ValueError("SelfConVisionTransformer stage index is out of range")

    def _forward_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)

    @torch.jit.ignore
    def prune_intermediate_layers(
            self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True,
    ) -> list[int]:
        """timm's pruning; the exits go with the head or with any pruned block."""
        depth = len(self.blocks)
        take_indices = super().prune_intermediate_layers(indices, prune_norm=prune_norm, prune_head=prune_head)
        if prune_head or len(self.blocks) < depth:
            self._drop_exits()
            self.num_stages = len(self.blocks) - 1
        return take_indices


def _create_selfcon_vit(variant: str, pretrained: bool = False, **kwargs: Any) -> SelfConVisionTransformer:
    depth = kwargs.get("depth", 12)
    exit_stages = kwargs.get("exit_stages")
    exit_stages = (depth // 2 - 1,) if exit_stages is None else validate_exit_stages(
        exit_stages, range(0, depth - 1), variant)
    return create_multi_exit_model(
        SelfConVisionTransformer, variant, pretrained, num_exits=len(exit_stages), backbone_classifier="head",
        feature_cfg=dict(out_indices=3, feature_cls="getter"), **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        **dict(
            num_classes=1000, input_size=(3, 224, 224), pool_size=None, crop_pct=0.9, interpolation="bicubic",
            fixed_input_size=True, mean=IMAGENET_INCEPTION_MEAN, std=IMAGENET_INCEPTION_STD,
            first_conv="patch_embed.proj", classifier=("head", "exit_heads.0"), paper_ids="arXiv:2106.15499",
            paper_name="Self-Contrastive Learning (ViT extension)", license="apache-2.0",
        ),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "selfcon_vit_tiny_patch4_32.untrained": _cfg(
        num_classes=10, input_size=(3, 32, 32), crop_pct=1.0, mean=CIFAR10_MEAN, std=CIFAR10_STD),
    "selfcon_vit_tiny_patch16_224.untrained": _cfg(),
    "selfcon_vit_small_patch16_224.untrained": _cfg(),
})


@register_model
def selfcon_vit_tiny_patch4_32(pretrained: bool = False, **kwargs: Any) -> SelfConVisionTransformer:
    """ViT-Tiny, patch 4 at 32x32 (64 tokens), ``fc`` exit after block 6 of 12."""
    model_args = dict(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3)
    return _create_selfcon_vit("selfcon_vit_tiny_patch4_32", pretrained, **dict(model_args, **kwargs))


@register_model
def selfcon_vit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> SelfConVisionTransformer:
    """ViT-Tiny/16 at 224, ``fc`` exit after block 6 of 12."""
    model_args = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3)
    return _create_selfcon_vit("selfcon_vit_tiny_patch16_224", pretrained, **dict(model_args, **kwargs))


@register_model
def selfcon_vit_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> SelfConVisionTransformer:
    """ViT-Small/16 at 224, ``fc`` exit after block 6 of 12."""
    model_args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6)
    return _create_selfcon_vit("selfcon_vit_small_patch16_224", pretrained, **dict(model_args, **kwargs))


# the names before 0.4 (``vit_*_selfcon``): timm's own deprecation shim maps them to the current ones, with a warning
register_model_deprecations(__name__, {
    "vit_tiny_patch4_32_selfcon": "selfcon_vit_tiny_patch4_32",
    "vit_tiny_patch16_224_selfcon": "selfcon_vit_tiny_patch16_224",
    "vit_small_patch16_224_selfcon": "selfcon_vit_small_patch16_224",
})
