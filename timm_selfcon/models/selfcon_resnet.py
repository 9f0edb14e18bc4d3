"""Multi-exit ResNet for Self-Contrastive Learning (SelfCon).

Paper: "Self-Contrastive Learning: Single-viewed Supervised Contrastive Framework using Sub-network",
Bae, Kim, Ko, Lee, Noh, Yun, AAAI 2023 (arXiv 2106.15499).

A ResNet-18/34/50 built from timm's ``BasicBlock`` / ``Bottleneck`` with non-shared sub-networks
("exits") after intermediate stages, each with its own linear classifier. Two stems:

- ImageNet: 7x7 stride-2 conv + 3x3 stride-2 max-pool (``selfcon_resnet18`` ...),
- CIFAR / Tiny-ImageNet: 3x3 stride-1 conv, no max-pool (``selfcon_resnet18_cifar`` ...), as in the
  official SelfCon code, whose encoder (backbone + sub-network) this matches parameter for parameter.

Model kwargs beyond timm's: ``exit_stages`` (``feature_info`` numbering, 1..3 = after layer1..layer3;
default ``(2,)``, the paper's exit after layer2; ``()`` gives a plain ResNet) and ``sub_network``
(``same``: fresh copies of the remaining stages; ``small``: the same with half the blocks; ``fc``:
pool + Linear to the backbone width). The default ``sub_network`` is ``fc`` for CIFAR models (the
official CIFAR scripts) and ``same`` for ImageNet models (the official ImageNet script).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import generate_default_cfgs, register_model
from timm.models._manipulate import checkpoint_seq
from timm.models.resnet import BasicBlock, Bottleneck, downsample_conv

from ..constants import CIFAR10_MEAN, CIFAR10_STD  # one source for the SupCon / SelfCon code's values
from ..errors import UserInputError
from .cnn import PooledLinearHeadMixin
from .exits import MultiExitMixin, build_exits, create_multi_exit_model, validate_exit_stages, validate_sub_network

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "SelfConResNet"]


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
STAGE_CHANNELS = (64, 128, 256, 512)


def make_resnet_stage(
        block: type[BasicBlock] | type[Bottleneck], in_chs: int, planes: int, num_blocks: int, stride: int,
        device=None, dtype=None,
) -> nn.Sequential:
    """One ResNet stage of ``num_blocks`` blocks; the first carries the stride and a 1x1 conv shortcut."""
    dd = dict(device=device, dtype=dtype)
    out_chs = planes * block.expansion
    downsample = None
    if stride != 1 or in_chs != out_chs:
        downsample = downsample_conv(in_chs, out_chs, kernel_size=1, stride=stride, norm_layer=nn.BatchNorm2d, **dd)
    blocks = [block(in_chs, planes, stride=stride, downsample=downsample, **dd)]
    blocks += [block(out_chs, planes, **dd) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class SelfConResNet(PooledLinearHeadMixin, MultiExitMixin, nn.Module):
    """ResNet with SelfCon exits; ``forward`` returns the ensemble of all heads (see ``MultiExitMixin``)."""

    backbone_classifier_name = "fc"
    stem_pattern = r"^conv1|bn1|maxpool"

    def __init__(
            self,
            block: str = "basic",
            layers: Sequence[int] = (2, 2, 2, 2),
            num_classes: int = 1000,
            in_chans: int = 3,
            global_pool: str = "avg",
            stem: str = "imagenet",
            exit_stages: Sequence[int] | int | None = (2,),
            sub_network: str = "same",
            stage_channels: Sequence[int] = STAGE_CHANNELS,
            drop_rate: float = 0.0,
            device=None,
            dtype=None,
    ) -> None:
        """
        Args:
            block: ``basic`` (ResNet-18/34) or ``bottleneck`` (ResNet-50).
            layers: blocks per stage (4 stages).
            num_classes: classes of every head; 0 removes the classifiers.
            in_chans: input channels.
            global_pool: backbone pooling (timm ``SelectAdaptivePool2d`` type; exits always average-pool).
            stem: ``imagenet`` (7x7/2 conv + max-pool) or ``cifar`` (3x3/1 conv, no max-pool).
            exit_stages: stages followed by an exit, 1..3 (after layer1..layer3).
            sub_network: ``same``, ``small`` or ``fc``.
            stage_channels: planes of layer1..layer4 (the stem has ``stage_channels[0]``); the paper's
                ``(64, 128, 256, 512)`` by default, narrower for CPU-scale experiments.
            drop_rate: dropout before the classifiers.
        """
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if block not in BLOCKS:
            raise UserInputError(f"unknown block {block!r}; expected one of {list(BLOCKS)}")
        if stem not in ("imagenet", "cifar"):
            raise UserInputError(f"unknown stem {stem!r}; expected 'imagenet' or 'cifar'")
        if len(layers) != 4:
            raise UserInputError(f"layers must give 4 stage depths, got {tuple(layers)}")
        if len(stage_channels) != 4 or any(not isinstance(c, int) or c <= 0 for c in stage_channels):
            raise UserInputError(f"stage_channels must give 4 positive ints, got {tuple(stage_channels)}")
        block_cls = BLOCKS[block]
        stem_chs = stage_channels[0]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.num_stages = 4
        self.exit_stages = validate_exit_stages(exit_stages, range(1, 4), "SelfConResNet")
        self.sub_network = validate_sub_network(sub_network)

        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_chans, stem_chs, kernel_size=3, stride=1, padding=1, bias=False, **dd)
            stem_reduction = 1
        else:
            self.conv1 = nn.Conv2d(in_chans, stem_chs, kernel_size=7, stride=2, padding=3, bias=False, **dd)
            stem_reduction = 2
        self.bn1 = nn.BatchNorm2d(stem_chs, **dd)
        self.act1 = nn.ReLU(inplace=True)
        # registered after act1: FeatureListNet runs children in registration order, and tap 0 (act1) is before it
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        self.feature_info = [dict(num_chs=stem_chs, reduction=stem_reduction, module="act1")]

        in_chs, reduction = stem_chs, stem_reduction * (1 if stem == "cifar" else 2)
        for idx, (planes, depth) in enumerate(zip(stage_channels, layers)):
            stride = 1 if idx == 0 else 2
            reduction *= stride
            self.add_module(f"layer{idx + 1}", make_resnet_stage(block_cls, in_chs, planes, depth, stride, **dd))
            in_chs = planes * block_cls.expansion
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"layer{idx + 1}"))

        self.num_features = in_chs
        self._init_head(global_pool, **dd)

        # Exits are registered after the head: timm's FeatureListNet runs children in order up to the last tap.
        def remaining_stages(stage: int) -> nn.Sequential:
            return nn.Sequential(*[
                make_resnet_stage(block_cls, self.feature_info[i]["num_chs"], stage_channels[i], layers[i], 2, **dd)
                for i in range(stage, 4)
            ])

        self.exits = build_exits(self.exit_stages, self.sub_network, self.feature_info, self.num_features,
                                 remaining_stages, **dd)
        self._init_exit_heads(**dd)
        self.init_weights()

    @torch.jit.ignore
    def init_weights(self) -> None:
        """Kaiming-normal (fan_out) convs, BN weight 1 / bias 0, no zero-init of the last BN (official code)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv1(x)))

    def _forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        # explicit branches, not getattr(self, f"layer{index}"): TorchScript compiles this (see exits.py)
        if index == 1:
            return self.layer1(self.maxpool(x))
        if index == 2:
            return self.layer2(x)
        if index == 3:
            return self.layer3(x)
        if index == 4:
            return self.layer4(x)
        raise ValueError("SelfConResNet stage index must be in 1..4")

    def _forward_norm(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.ignore
    def prune_intermediate_layers(
            self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True,
    ) -> list[int]:
        """Prune stages after the deepest kept tap (timm API); exits go with the head or any pruned stage."""
        take_indices, max_index = self._prune_stages(indices, prune_head)
        if max_index == 0:
            self.maxpool = nn.Identity()
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled backbone features ``[B, num_features, H/r, W/r]``."""
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq([self.layer1, self.layer2, self.layer3, self.layer4], x, flatten=True)
        else:
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.layer3(x)
            x = self.layer4(x)
        return x


def resnet_default_kwargs(variant: str) -> dict[str, Any]:
    """Defaults that depend on the variant: CIFAR models use the ``fc`` exit (official CIFAR script)."""
    return dict(stem="cifar", sub_network="fc") if variant.endswith("_cifar") else dict(stem="imagenet")


def create_selfcon_resnet(variant: str, pretrained: bool = False, **kwargs) -> SelfConResNet:
    """Build through timm's ``build_model_with_cfg`` with the classifier list of the actual exits."""
    exit_stages = validate_exit_stages(kwargs.get("exit_stages", (2,)), range(1, 4), variant)
    return create_multi_exit_model(
        SelfConResNet, variant, pretrained, num_exits=len(exit_stages),
        feature_cfg=dict(out_indices=(0, 1, 2, 3, 4)), **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        **dict(
            num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875, interpolation="bilinear",
            mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv="conv1",
            classifier=("fc", "exit_heads.0"), paper_ids="arXiv:2106.15499", paper_name="Self-Contrastive Learning",
            license="apache-2.0",
        ),
        **kwargs,
    }


def _cifar_cfg(**kwargs: Any) -> dict[str, Any]:
    return _cfg(**{**dict(num_classes=10, input_size=(3, 32, 32), pool_size=(4, 4), crop_pct=1.0,
                          mean=CIFAR10_MEAN, std=CIFAR10_STD), **kwargs})


default_cfgs = generate_default_cfgs({
    "selfcon_resnet18.untrained": _cfg(),
    "selfcon_resnet34.untrained": _cfg(),
    "selfcon_resnet50.untrained": _cfg(),
    "selfcon_resnet10_cifar.untrained": _cifar_cfg(),
    "selfcon_resnet10_w16_cifar.untrained": _cifar_cfg(),
    "selfcon_resnet18_cifar.untrained": _cifar_cfg(),
    "selfcon_resnet34_cifar.untrained": _cifar_cfg(),
    "selfcon_resnet50_cifar.untrained": _cifar_cfg(),
})

_ARCHS = {
    "resnet10": dict(block="basic", layers=(1, 1, 1, 1)),
    "resnet10_w16": dict(block="basic", layers=(1, 1, 1, 1), stage_channels=(16, 32, 64, 128)),
    "resnet18": dict(block="basic", layers=(2, 2, 2, 2)),
    "resnet34": dict(block="basic", layers=(3, 4, 6, 3)),
    "resnet50": dict(block="bottleneck", layers=(3, 4, 6, 3)),
}


def _create(variant: str, arch: str, pretrained: bool, kwargs: dict[str, Any]) -> SelfConResNet:
    model_args = {**_ARCHS[arch], **resnet_default_kwargs(variant)}
    return create_selfcon_resnet(variant, pretrained, **dict(model_args, **kwargs))


@register_model
def selfcon_resnet18(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """SelfCon ResNet-18, ImageNet stem, ``same`` exit after layer2."""
    return _create("selfcon_resnet18", "resnet18", pretrained, kwargs)


@register_model
def selfcon_resnet34(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """SelfCon ResNet-34, ImageNet stem, ``same`` exit after layer2 (the official ImageNet script)."""
    return _create("selfcon_resnet34", "resnet34", pretrained, kwargs)


@register_model
def selfcon_resnet50(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """SelfCon ResNet-50, ImageNet stem, ``same`` exit after layer2."""
    return _create("selfcon_resnet50", "resnet50", pretrained, kwargs)


@register_model
def selfcon_resnet10_cifar(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """SelfCon ResNet-10 (one block per stage; ours, not in the paper), CIFAR stem, ``fc`` exit: 4.96M parameters."""
    return _create("selfcon_resnet10_cifar", "resnet10", pretrained, kwargs)


@register_model
def selfcon_resnet10_w16_cifar(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """SelfCon ResNet-10 at a quarter of the width (stages 16-32-64-128; ours, not in the paper), CIFAR stem,
    ``fc`` exit: 0.31M parameters, ~13x the training throughput of ``selfcon_resnet10_cifar`` on a CPU.
    For method comparisons that a CPU can afford (``benchmarks/experiments/rank_methods.py``)."""
    return _create("selfcon_resnet10_w16_cifar", "resnet10_w16", pretrained, kwargs)


@register_model
def selfcon_resnet18_cifar(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """SelfCon ResNet-18, CIFAR stem, ``fc`` exit after layer2 (the official CIFAR script)."""
    return _create("selfcon_resnet18_cifar", "resnet18", pretrained, kwargs)


@register_model
def selfcon_resnet34_cifar(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """SelfCon ResNet-34, CIFAR stem, ``fc`` exit after layer2."""
    return _create("selfcon_resnet34_cifar", "resnet34", pretrained, kwargs)


@register_model
def selfcon_resnet50_cifar(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """SelfCon ResNet-50, CIFAR stem, ``fc`` exit after layer2."""
    return _create("selfcon_resnet50_cifar", "resnet50", pretrained, kwargs)
