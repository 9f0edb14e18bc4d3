"""Per-family checks of the registered models against the official SelfCon encoders (arXiv 2106.15499).

Parameter counts of the CIFAR-stem ResNets and their layer2 exit match the official encoder
(``networks/resnet_big.py``); the data config of CIFAR models, ``features_only`` and the error
messages for bad arguments follow timm's conventions.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
from timm.data import resolve_data_config

import timm_selfcon  # noqa: F401  (registers the models)
from timm_selfcon.errors import UserInputError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def encoder(name: str, **kwargs) -> nn.Module:
    """The encoder only (no classifier), like the official ``encoder`` module, on the meta device.

    Meta tensors have shapes but no storage and no initialisation cost, so counting is exact and fast.
    """
    return timm.create_model(name, num_classes=0, device="meta", **kwargs)


def meta_model(name: str, **kwargs) -> nn.Module:
    """A registered model on the meta device (for checks that run no forward pass)."""
    return timm.create_model(name, device="meta", **kwargs)


def test_registered_names() -> None:
    selfcon = set(timm.list_models("*selfcon*"))
    mixco = set(timm.list_models("*mixco*"))
    for name in ("selfcon_resnet18_cifar", "selfcon_resnet50", "selfcon_wrn16_8_cifar",
                 "selfcon_vit_tiny_patch4_32"):
        assert name in selfcon
    for name in ("mixco_resnet18", "mixco_resnet18_cifar", "mixco_resnet10_cifar"):
        assert name in mixco
    # every family is named selfcon_* / mixco_*: no ViT of ours hides under timm's own vit_* names
    assert not [name for name in timm.list_models("vit_*") if "selfcon" in name]


@pytest.mark.parametrize(("old", "new"), [("vit_tiny_patch4_32_selfcon", "selfcon_vit_tiny_patch4_32"),
                                          ("vit_tiny_patch16_224_selfcon", "selfcon_vit_tiny_patch16_224"),
                                          ("vit_small_patch16_224_selfcon", "selfcon_vit_small_patch16_224")])
def test_old_vit_names_are_deprecated_aliases(old: str, new: str) -> None:
    with pytest.warns(UserWarning, match=f"deprecated model name {old} to current {new}"):
        model = timm.create_model(old, device="meta", depth=2)
    assert model.pretrained_cfg["architecture"] == new


def test_resnet10_cifar_is_one_block_per_stage() -> None:
    stem = 3 * 64 * 9 + 2 * 64
    layer1 = 2 * 64 * 64 * 9 + 2 * 2 * 64  # stride 1, same width: identity shortcut
    expected = stem + layer1 + stage_params(64, 128, 1) + stage_params(128, 256, 1) + stage_params(256, 512, 1)
    assert expected == 4_898_112  # the report runs' small encoder (<= 5M parameters)
    assert count(encoder("mixco_resnet10_cifar")) == expected
    assert count(encoder("selfcon_resnet10_cifar", exit_stages=())) == expected


# ---- exact parameter counts ---------------------------------------------------------------------

def stage_params(in_chs: int, out_chs: int, num_blocks: int) -> int:
    """A BasicBlock stage with stride 2 (1x1 conv + BN shortcut), counted by hand."""
    first = in_chs * out_chs * 9 + out_chs * out_chs * 9 + 2 * 2 * out_chs + in_chs * out_chs + 2 * out_chs
    other = 2 * out_chs * out_chs * 9 + 2 * 2 * out_chs
    return first + (num_blocks - 1) * other


RESNET18_LAYER2_EXIT = {
    # official table (selfcon.md 1.2): 11.17M, +0.066M, +10.49M, +4.59M; exact values computed by hand
    "fc": 128 * 512 + 512,
    "same": stage_params(128, 256, 2) + stage_params(256, 512, 2),
    "small": stage_params(128, 256, 1) + stage_params(256, 512, 1),
}


def test_resnet18_cifar_counts_match_official_encoder() -> None:
    backbone = count(encoder("selfcon_resnet18_cifar", exit_stages=()))
    assert backbone == 11_168_832  # torchvision-style ResNet-18 with 3x3 stem, no fc: 11.17M
    assert RESNET18_LAYER2_EXIT == {"fc": 66_048, "same": 10_493_440, "small": 4_592_128}
    for sub_network, extra in RESNET18_LAYER2_EXIT.items():
        total = count(encoder("selfcon_resnet18_cifar", exit_stages=(2,), sub_network=sub_network))
        assert total - backbone == extra, sub_network


@pytest.mark.parametrize(("name", "backbone_m", "extra_m"), [
    # (model, backbone in M, {sub_network: extra in M}) from the official table (selfcon.md 1.2)
    ("selfcon_resnet34_cifar", 21.28, {"same": 19.94, "small": 6.95, "fc": 0.066}),
    ("selfcon_resnet50_cifar", 23.50, {"same": 22.06, "small": 9.79, "fc": 1.05}),
])
def test_deeper_resnet_counts_match_table(name: str, backbone_m: float, extra_m: dict[str, float]) -> None:
    backbone = count(encoder(name, exit_stages=()))
    assert round(backbone / 1e6, 2) == backbone_m
    for sub_network, expected in extra_m.items():
        extra = count(encoder(name, exit_stages=(2,), sub_network=sub_network)) - backbone
        digits = 3 if expected < 0.1 else 2
        assert round(extra / 1e6, digits) == expected, sub_network


def test_resnet50_cifar_fc_exit_is_one_linear() -> None:
    model = encoder("selfcon_resnet50_cifar", exit_stages=(2,), sub_network="fc")
    assert count(model.exits) == 512 * 2048 + 2048 == 1_050_624
    assert model.num_features == 2048


def test_imagenet_stem_differs_only_in_first_conv() -> None:
    cifar = count(encoder("selfcon_resnet18_cifar", exit_stages=()))
    imagenet = encoder("selfcon_resnet18", exit_stages=())
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)
    assert count(imagenet) - cifar == 64 * 3 * (49 - 9)


def test_wrn16_8_layout() -> None:
    model = encoder("selfcon_wrn16_8_cifar", exit_stages=(1,), sub_network="fc")
    assert model.num_features == 512
    assert [info["num_chs"] for info in model.feature_info] == [16, 128, 256, 512]
    assert model.bn1.momentum == 0.9
    assert count(model.exits) == 128 * 512 + 512
    # the exit pools the pre-activation map of layer1 (no final BN + ReLU in front of it)
    assert isinstance(model.exits[0].norm, nn.Identity)


def test_default_exits() -> None:
    cifar = meta_model("selfcon_resnet18_cifar")
    assert cifar.exit_stages == (2,) and cifar.sub_network == "fc"
    imagenet = meta_model("selfcon_resnet18")
    assert imagenet.exit_stages == (2,) and imagenet.sub_network == "same"
    assert meta_model("mixco_resnet18_cifar").exit_stages == ()
    assert meta_model("selfcon_wrn16_8_cifar").exit_stages == (1,)
    vit = meta_model("selfcon_vit_tiny_patch4_32")
    assert vit.exit_stages == (5,)
    assert tuple(vit.pretrained_cfg["classifier"]) == ("head", "exit_heads.0")


# ---- data config ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "selfcon_resnet18_cifar", "selfcon_resnet50_cifar", "selfcon_wrn16_8_cifar", "selfcon_vit_tiny_patch4_32",
    "mixco_resnet18_cifar",
])
def test_cifar_pretrained_cfg(name: str) -> None:
    model = meta_model(name)
    cfg = model.pretrained_cfg
    assert tuple(cfg["input_size"]) == (3, 32, 32)
    assert cfg["crop_pct"] == 1.0
    assert cfg["num_classes"] == 10
    data = resolve_data_config({}, model=model)
    assert data["input_size"] == (3, 32, 32)
    assert data["crop_pct"] == 1.0
    assert data["mean"] == pytest.approx(CIFAR_MEAN)
    assert data["std"] == pytest.approx(CIFAR_STD)


@pytest.mark.parametrize("name", ["selfcon_resnet18", "mixco_resnet18", "selfcon_vit_tiny_patch16_224"])
def test_imagenet_pretrained_cfg(name: str) -> None:
    data = resolve_data_config({}, model=meta_model(name))
    assert data["input_size"] == (3, 224, 224)
    assert data["crop_pct"] < 1.0


# ---- features_only ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "size", "channels", "reductions"), [
    ("selfcon_resnet18_cifar", 16, [64, 64, 128, 256, 512], [1, 1, 2, 4, 8]),
    ("selfcon_resnet18", 64, [64, 64, 128, 256, 512], [2, 4, 8, 16, 32]),
    ("selfcon_wrn16_8_cifar", 16, [16, 128, 256, 512], [1, 1, 2, 4]),
])
def test_features_only(name: str, size: int, channels: list[int], reductions: list[int]) -> None:
    torch.manual_seed(0)
    full = timm.create_model(name, exit_stages=()).eval()  # exits are not part of the feature taps
    with torch.no_grad():  # BN scales of both signs: a map taken at the wrong point of the stem shows
        for module in full.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(-1.0, 1.0)
                module.bias.uniform_(-0.5, 0.5)
    features = timm.create_model(name, features_only=True, exit_stages=()).eval()
    features.load_state_dict({k: v for k, v in full.state_dict().items() if k in features.state_dict()})
    assert features.feature_info.channels() == channels
    assert features.feature_info.reduction() == reductions
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        maps = features(x)
        reference = full.forward_intermediates(x, intermediates_only=True)
    assert len(maps) == len(channels) == len(reference)
    for index, (fmap, ref, chs, red) in enumerate(zip(maps, reference, channels, reductions)):
        assert fmap.shape == (1, chs, size // red, size // red), f"feature {index}"
        torch.testing.assert_close(fmap, ref, atol=1e-4, rtol=1e-4, msg=f"feature {index}")


@pytest.mark.parametrize(("name", "channels"), [
    ("selfcon_resnet50_cifar", [64, 256, 512, 1024, 2048]),
    ("mixco_resnet18", [64, 64, 128, 256, 512]),
    ("mixco_resnet50", [64, 256, 512, 1024, 2048]),
])
def test_features_only_channels(name: str, channels: list[int]) -> None:
    assert meta_model(name, features_only=True).feature_info.channels() == channels


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "selfcon_resnet18_cifar", "selfcon_wrn16_8_cifar", "selfcon_vit_tiny_patch4_32",
])
def test_unknown_sub_network(name: str) -> None:
    with pytest.raises(ValueError, match="tiny") as info:
        meta_model(name, sub_network="tiny")
    for choice in ("same", "small", "fc"):
        assert choice in str(info.value)


@pytest.mark.parametrize(("name", "exit_stages", "bad", "valid"), [
    ("selfcon_resnet18_cifar", (4,), "4", [1, 2, 3]),
    ("selfcon_resnet18_cifar", (0,), "0", [1, 2, 3]),
    ("selfcon_resnet18", (2, 4), "4", [1, 2, 3]),
    ("selfcon_wrn16_8_cifar", (3,), "3", [1, 2]),
    ("selfcon_vit_tiny_patch4_32", (11,), "11", list(range(11))),
])
def test_exit_stage_out_of_range(name: str, exit_stages: tuple[int, ...], bad: str, valid: list[int]) -> None:
    with pytest.raises(ValueError, match=rf"\b{bad}\b") as info:
        meta_model(name, exit_stages=exit_stages)
    assert str(valid) in str(info.value), "the message should list the valid exit stages"


@pytest.mark.parametrize("exit_stages", ["2", (1.5,), (True,)])
def test_exit_stage_wrong_type(exit_stages: object) -> None:
    with pytest.raises(UserInputError, match=repr(exit_stages).replace("(", r"\(").replace(")", r"\)")):
        timm.create_model("selfcon_resnet18_cifar", exit_stages=exit_stages)


@pytest.mark.parametrize("name", [
    "selfcon_resnet18_cifar", "selfcon_wrn16_8_cifar", "selfcon_vit_tiny_patch4_32", "mixco_resnet18_cifar",
])
def test_unknown_kwarg(name: str) -> None:
    with pytest.raises(TypeError, match="not_an_arg"):
        timm.create_model(name, not_an_arg=1)
