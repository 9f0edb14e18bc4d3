"""MixCo encoders: plain ResNets registered for Mix-up Contrast pretraining.

Paper: "MixCo: Mix-up Contrastive Learning for Visual Representation", Kim, Lee, Bae, Yun,
NeurIPS 2020 Workshop on Self-Supervised Learning (arXiv 2010.06300).

MixCo trains ordinary ResNet-18/34/50 encoders (MoCo v2 or SimCLR plus a mix-up term); the
projection head, momentum encoder and queue are training-time parts (``timm_selfcon.methods``), so
the registered model is a plain ResNet with one linear classifier. ``mixco_resnet*`` use the
ImageNet stem at 224 px as the paper does (even for Tiny-ImageNet and CIFAR); ``mixco_resnet*_cifar``
use the 3x3 stride-1 CIFAR stem at 32 px, a documented deviation from the paper for CPU-scale runs.

These are the same class as the SelfCon ResNets (``SelfConResNet``) with ``exit_stages=()``.
"""
from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import generate_default_cfgs, register_model

from ..constants import CIFAR10_MEAN, CIFAR10_STD
from .selfcon_resnet import SelfConResNet, create_selfcon_resnet

__all__ = ["SelfConResNet"]


def _create_mixco_resnet(variant: str, pretrained: bool = False, **kwargs) -> SelfConResNet:
    kwargs.setdefault("exit_stages", ())
    return create_selfcon_resnet(variant, pretrained, **kwargs)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        **dict(
            num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875, interpolation="bilinear",
            mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv="conv1", classifier="fc",
            paper_ids="arXiv:2010.06300", paper_name="MixCo: Mix-up Contrastive Learning for Visual Representation",
            license="apache-2.0",
        ),
        **kwargs,
    }


def _cifar_cfg(**kwargs: Any) -> dict[str, Any]:
    return _cfg(num_classes=10, input_size=(3, 32, 32), pool_size=(4, 4), crop_pct=1.0,
                mean=CIFAR10_MEAN, std=CIFAR10_STD, **kwargs)


default_cfgs = generate_default_cfgs({
    "mixco_resnet18.untrained": _cfg(),
    "mixco_resnet34.untrained": _cfg(),
    "mixco_resnet50.untrained": _cfg(),
    "mixco_resnet10_cifar.untrained": _cifar_cfg(),
    "mixco_resnet18_cifar.untrained": _cifar_cfg(),
    "mixco_resnet34_cifar.untrained": _cifar_cfg(),
    "mixco_resnet50_cifar.untrained": _cifar_cfg(),
})

_BASIC10 = dict(block="basic", layers=(1, 1, 1, 1))
_BASIC18 = dict(block="basic", layers=(2, 2, 2, 2))
_BASIC34 = dict(block="basic", layers=(3, 4, 6, 3))
_BOTTLENECK50 = dict(block="bottleneck", layers=(3, 4, 6, 3))


@register_model
def mixco_resnet18(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """MixCo ResNet-18 encoder, ImageNet stem, 224 px (the paper's setting)."""
    return _create_mixco_resnet("mixco_resnet18", pretrained, **dict(_BASIC18, stem="imagenet", **kwargs))


@register_model
def mixco_resnet34(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """MixCo ResNet-34 encoder, ImageNet stem, 224 px."""
    return _create_mixco_resnet("mixco_resnet34", pretrained, **dict(_BASIC34, stem="imagenet", **kwargs))


@register_model
def mixco_resnet50(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """MixCo ResNet-50 encoder, ImageNet stem, 224 px."""
    return _create_mixco_resnet("mixco_resnet50", pretrained, **dict(_BOTTLENECK50, stem="imagenet", **kwargs))


@register_model
def mixco_resnet10_cifar(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """MixCo ResNet-10 encoder (one basic block per stage, 4.9M parameters), CIFAR stem, 32 px: the small
    encoder of the CPU-scale report runs (not in the paper, whose smallest model is ResNet-18)."""
    return _create_mixco_resnet("mixco_resnet10_cifar", pretrained, **dict(_BASIC10, stem="cifar", **kwargs))


@register_model
def mixco_resnet18_cifar(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """MixCo ResNet-18 encoder, CIFAR stem, 32 px (a deviation from the paper, for CPU-scale runs)."""
    return _create_mixco_resnet("mixco_resnet18_cifar", pretrained, **dict(_BASIC18, stem="cifar", **kwargs))


@register_model
def mixco_resnet34_cifar(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """MixCo ResNet-34 encoder, CIFAR stem, 32 px (a deviation from the paper)."""
    return _create_mixco_resnet("mixco_resnet34_cifar", pretrained, **dict(_BASIC34, stem="cifar", **kwargs))


@register_model
def mixco_resnet50_cifar(pretrained: bool = False, **kwargs) -> SelfConResNet:
    """MixCo ResNet-50 encoder, CIFAR stem, 32 px (a deviation from the paper)."""
    return _create_mixco_resnet("mixco_resnet50_cifar", pretrained, **dict(_BOTTLENECK50, stem="cifar", **kwargs))
