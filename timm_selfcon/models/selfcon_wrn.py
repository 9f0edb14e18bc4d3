"""Multi-exit pre-activation Wide ResNet (WRN-16-8, WRN-28-10) for 32x32 input, for SelfCon.

Papers: "Wide Residual Networks", Zagoruyko & Komodakis, BMVC 2016 (arXiv 1605.07146), and
"Self-Contrastive Learning: Single-viewed Supervised Contrastive Framework using Sub-network",
Bae et al., AAAI 2023 (arXiv 2106.15499), whose official code trains WRN-16-8 on CIFAR.

timm has no CIFAR WRN, so this file defines one: a 3x3 stem conv, three stages of pre-activation
wide blocks (BN-ReLU-conv, dropout, BN-ReLU-conv; convs with bias, Xavier-uniform init with gain
sqrt(2)), then a final BN + ReLU (the ``norm`` of timm's API; its BN momentum is 0.9 in PyTorch's
convention, as in the official code) and average pooling. Widths ``16, 16k, 32k, 64k``.

Exits (``exit_stages``, feature_info numbering: 1 = after layer1, 2 = after layer2) pool the
pre-activation map, without the final BN + ReLU, as the official code. Default: one exit after
layer1 (our choice; the official WRN default has no exit), so that a ``same`` sub-network copies
two of the three stages as the ResNet default copies two of four; ``sub_network`` defaults to ``fc``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
from timm.models import generate_default_cfgs, register_model
from timm.models._manipulate import checkpoint_seq

from ..constants import CIFAR10_MEAN, CIFAR10_STD
from ..errors import UserInputError
from .cnn import PooledLinearHeadMixin
from .exits import MultiExitMixin, build_exits, create_multi_exit_model, validate_exit_stages, validate_sub_network

__all__ = ["SelfConWideResNet", "WideBasicBlock"]


class WideBasicBlock(nn.Module):
    """Pre-activation wide block: ``BN-ReLU-conv3x3-dropout-BN-ReLU-conv3x3(stride)`` + shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, drop_rate: float = 0.3,
                 device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(in_chs, **dd)
        self.act1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=True, **dd)
        self.drop = nn.Dropout(p=drop_rate)
        self.bn2 = nn.BatchNorm2d(out_chs, **dd)
        self.act2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride=stride, padding=1, bias=True, **dd)
        self.shortcut = nn.Identity()
        if stride != 1 or in_chs != out_chs:
            self.shortcut = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=True, **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act1(self.bn1(x)))
        out = self.conv2(self.act2(self.bn2(self.drop(out))))
        return out + self.shortcut(x)


def make_wide_stage(in_chs: int, out_chs: int, num_blocks: int, stride: int, drop_rate: float,
                    device=None, dtype=None) -> nn.Sequential:
    blocks = [WideBasicBlock(in_chs, out_chs, stride, drop_rate, device=device, dtype=dtype)]
    blocks += [WideBasicBlock(out_chs, out_chs, 1, drop_rate, device=device, dtype=dtype)
               for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class SelfConWideResNet(PooledLinearHeadMixin, MultiExitMixin, nn.Module):
    """Pre-activation WRN-depth-k for 32x32 input with SelfCon exits."""

    backbone_classifier_name = "fc"

    def __init__(
            self,
            depth: int = 16,
            widen_factor: int = 8,
            num_classes: int = 10,
            in_chans: int = 3,
            global_pool: str = "avg",
            block_drop_rate: float = 0.3,
            drop_rate: float = 0.0,
            exit_stages: Any = (1,),
            sub_network: str = "fc",
            device=None,
            dtype=None,
    ) -> None:
        """
        Args:
            depth: 6n + 4 (16 or 28 for the registered models).
            widen_factor: width multiplier k.
            num_classes: classes of every head; 0 removes the classifiers.
            in_chans: input channels.
            global_pool: backbone pooling type.
            block_drop_rate: dropout inside each wide block (0.3 in the official code).
            drop_rate: dropout before the classifiers.
            exit_stages: stages followed by an exit, 1..2.
            sub_network: ``same``, ``small`` or ``fc``.
        """
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise UserInputError(f"WRN depth must be 6n + 4 (e.g. 16, 28), got {depth}")
        dd = dict(device=device, dtype=dtype)
        blocks_per_stage = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.num_stages = 3
        self.exit_stages = validate_exit_stages(exit_stages, range(1, 3), "SelfConWideResNet")
        self.sub_network = validate_sub_network(sub_network)

        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=True, **dd)
        self.feature_info = [dict(num_chs=widths[0], reduction=1, module="conv1")]
        for idx in range(3):
            stride = 1 if idx == 0 else 2
            stage = make_wide_stage(widths[idx], widths[idx + 1], blocks_per_stage, stride, block_drop_rate, **dd)
            self.add_module(f"layer{idx + 1}", stage)
            self.feature_info.append(dict(num_chs=widths[idx + 1], reduction=2 ** idx, module=f"layer{idx + 1}"))
        self.bn1 = nn.BatchNorm2d(widths[3], momentum=0.9, **dd)
        self.act1 = nn.ReLU(inplace=True)
        self.num_features = widths[3]
        self._init_head(global_pool, **dd)

        def remaining_stages(stage: int) -> nn.Sequential:
            return nn.Sequential(*[
                make_wide_stage(widths[i], widths[i + 1], blocks_per_stage, 2, block_drop_rate, **dd)
                for i in range(stage, 3)
            ])

        self.exits = build_exits(self.exit_stages, self.sub_network, self.feature_info, self.num_features,
                                 remaining_stages, **dd)
        self._init_exit_heads(**dd)
        self.init_weights()

    @torch.jit.ignore
    def init_weights(self) -> None:
        """Xavier-uniform (gain sqrt(2)) convs with zero bias, BN 1 / 0 (official WRN code)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight, gain=math.sqrt(2))
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)

    def _forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        # explicit branches, not getattr(self, f"layer{index}"): TorchScript compiles this (see exits.py)
        if index == 1:
            return self.layer1(x)
        if index == 2:
            return self.layer2(x)
        if index == 3:
            return self.layer3(x)
        raise ValueError("SelfConWideResNet stage index must be in 1..3")

    def _forward_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(x))

    @torch.jit.ignore
    def prune_intermediate_layers(
            self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True,
    ) -> list[int]:
        """Prune stages after the deepest kept tap (timm API); exits go with the head or any pruned stage."""
        take_indices, max_index = self._prune_stages(indices, prune_head)
        if prune_norm or max_index < self.num_stages:
            # the final BN is sized for the last stage: features end at the tap once stages are cut
            self.bn1, self.act1 = nn.Identity(), nn.Identity()
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled features after the final BN + ReLU, ``[B, 64k, H/4, W/4]``."""
        x = self.conv1(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq([self.layer1, self.layer2, self.layer3], x, flatten=True)
        else:
            x = self.layer3(self.layer2(self.layer1(x)))
        return self.act1(self.bn1(x))


def _create_selfcon_wrn(variant: str, pretrained: bool = False, **kwargs) -> SelfConWideResNet:
    exit_stages = validate_exit_stages(kwargs.get("exit_stages", (1,)), range(1, 3), variant)
    return create_multi_exit_model(
        SelfConWideResNet, variant, pretrained, num_exits=len(exit_stages),
        feature_cfg=dict(out_indices=(0, 1, 2, 3)), **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        **dict(
            num_classes=10, input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0, interpolation="bilinear",
            mean=CIFAR10_MEAN, std=CIFAR10_STD, first_conv="conv1", classifier=("fc", "exit_heads.0"),
            paper_ids="arXiv:2106.15499", paper_name="Self-Contrastive Learning", license="apache-2.0",
        ),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "selfcon_wrn16_8_cifar.untrained": _cfg(),
    "selfcon_wrn28_10_cifar.untrained": _cfg(),
})


@register_model
def selfcon_wrn16_8_cifar(pretrained: bool = False, **kwargs) -> SelfConWideResNet:
    """SelfCon WRN-16-8 (the official code's WRN), 32x32 input, ``fc`` exit after layer1."""
    return _create_selfcon_wrn("selfcon_wrn16_8_cifar", pretrained, **dict(dict(depth=16, widen_factor=8), **kwargs))


@register_model
def selfcon_wrn28_10_cifar(pretrained: bool = False, **kwargs) -> SelfConWideResNet:
    """SelfCon WRN-28-10, 32x32 input, ``fc`` exit after layer1."""
    return _create_selfcon_wrn("selfcon_wrn28_10_cifar", pretrained, **dict(dict(depth=28, widen_factor=10), **kwargs))
