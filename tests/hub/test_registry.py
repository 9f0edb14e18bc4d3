"""Pretrained tags: only published weights are listed by timm (the naming scheme is in the README)."""
from __future__ import annotations

import timm

import timm_selfcon  # noqa: F401  (registers the models)
from timm_selfcon.hub import PUBLISHED_TAGS, suggested_name

OUR_MODULES = ("selfcon_resnet", "selfcon_wrn", "selfcon_vit", "selfcon_generic", "mixco_resnet")


def test_our_modules_are_registered() -> None:
    assert set(OUR_MODULES) <= set(timm.list_modules())
    assert "selfcon_resnet18_cifar" in timm.list_models(module="selfcon_resnet")


def test_list_pretrained_lists_only_published_weights() -> None:
    listed = timm.list_models(module=list(OUR_MODULES), pretrained=True, include_tags=True)
    assert sorted(listed) == sorted(PUBLISHED_TAGS)
    for tag in listed:
        cfg = timm.get_pretrained_cfg(tag)
        assert cfg.hf_hub_id and cfg.hf_hub_id.endswith(f"/{tag}"), tag
    # untrained entries give every architecture a config without claiming weights
    assert timm.get_pretrained_cfg("selfcon_resnet18_cifar.untrained").hf_hub_id is None
    assert not [name for name in timm.list_pretrained() if name.startswith(("selfcon_", "mixco_"))
                or name.endswith("_selfcon") or "_selfcon." in name]


def test_naming_scheme() -> None:
    assert suggested_name("selfcon_resnet18_cifar", "selfcon", "uoft-cs/cifar100") == \
        "selfcon_resnet18_cifar.selfcon_cifar100"
    assert suggested_name("mixco_resnet18", "moco_mixco", "zh-plus/tiny-imagenet") == \
        "mixco_resnet18.moco_mixco_tiny_imagenet"
    assert suggested_name("selfcon_resnet18_cifar", "selfcon", "builtin:cifar10_subset") == \
        "selfcon_resnet18_cifar.selfcon_cifar10_subset"
