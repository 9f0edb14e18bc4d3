"""``convert_official``: official SelfCon checkpoints -> this package's training-checkpoint format.

The official checkpoints are built here from the official key names and shapes (``ConResNet('resnet18',
selfcon_pos=[False,True,False], dataset='cifar100')``: 130 tensors with the ``fc`` exit, 188 with ``same``; the
WRN-16-8 ``wide_basic`` layout), saved the way the official ``save_model`` does (an ``argparse.Namespace`` ``opt``
beside the state dict), converted, and checked against an independent forward pass written with
``torch.nn.functional`` from the official names.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from torch import Tensor

from timm_selfcon.cli import main
from timm_selfcon.engine.evaluate import load_encoder
from timm_selfcon.hub import convert_official, export

BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class NotAllowed:
    """An arbitrary class: ``torch.load(weights_only=True)`` must refuse to rebuild it."""

    def __init__(self) -> None:
        self.payload = "anything"


# ------------------------------------------------------------------------------------------ official layouts
def _bn(state: dict[str, Tensor], prefix: str, channels: int, gen: torch.Generator) -> None:
    state[f"{prefix}.weight"] = torch.rand(channels, generator=gen) + 0.5
    state[f"{prefix}.bias"] = torch.randn(channels, generator=gen) * 0.1
    state[f"{prefix}.running_mean"] = torch.randn(channels, generator=gen) * 0.1
    state[f"{prefix}.running_var"] = torch.rand(channels, generator=gen) + 0.5
    state[f"{prefix}.num_batches_tracked"] = torch.tensor(100)


def _conv(out_chs: int, in_chs: int, k: int, gen: torch.Generator) -> Tensor:
    return torch.randn(out_chs, in_chs, k, k, generator=gen) * (2.0 / (in_chs * k * k)) ** 0.5


def _basic_block(state: dict[str, Tensor], prefix: str, in_chs: int, out_chs: int, stride: int,
                 gen: torch.Generator) -> None:
    state[f"{prefix}.conv1.weight"] = _conv(out_chs, in_chs, 3, gen)
    _bn(state, f"{prefix}.bn1", out_chs, gen)
    state[f"{prefix}.conv2.weight"] = _conv(out_chs, out_chs, 3, gen)
    _bn(state, f"{prefix}.bn2", out_chs, gen)
    if stride != 1 or in_chs != out_chs:
        state[f"{prefix}.shortcut.0.weight"] = _conv(out_chs, in_chs, 1, gen)
        _bn(state, f"{prefix}.shortcut.1", out_chs, gen)


def _linear(state: dict[str, Tensor], prefix: str, out_f: int, in_f: int, gen: torch.Generator) -> None:
    state[f"{prefix}.weight"] = torch.randn(out_f, in_f, generator=gen) / in_f ** 0.5
    state[f"{prefix}.bias"] = torch.randn(out_f, generator=gen) * 0.1


def _heads(state: dict[str, Tensor], num_exits: int, gen: torch.Generator, dim: int = 512) -> None:
    for prefix in ["head", *[f"sub_heads.{k}" for k in range(num_exits)]]:
        _linear(state, f"{prefix}.0", dim, dim, gen)
        _linear(state, f"{prefix}.2", 128, dim, gen)


def official_resnet18_cifar(exit_type: str, seed: int = 0) -> dict[str, Tensor]:
    """``ConResNet('resnet18', selfcon_pos=[False,True,False], selfcon_size=exit_type, dataset='cifar100')``."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {"encoder.conv1.weight": _conv(64, 3, 3, gen)}
    _bn(state, "encoder.bn1", 64, gen)
    widths = (64, 128, 256, 512)
    in_chs = 64
    for layer, width in enumerate(widths, start=1):
        for block in range(2):
            stride = 2 if layer > 1 and block == 0 else 1
            _basic_block(state, f"encoder.layer{layer}.{block}", in_chs, width, stride, gen)
            in_chs = width
    if exit_type == "fc":
        _linear(state, "encoder.selfcon_layer.1", 512, 128, gen)
    else:  # same: fresh copies of layer3 (index 0) and layer4 (index 1)
        in_chs = 128
        for copy_index, width in enumerate((256, 512)):
            for block in range(2):
                _basic_block(state, f"encoder.selfcon_layer.1.{copy_index}.{block}", in_chs, width,
                             2 if block == 0 else 1, gen)
                in_chs = width
    _heads(state, 1, gen)
    return state


def official_wrn16_8(seed: int = 0) -> dict[str, Tensor]:
    """``ConWRN('wrn_16_8', selfcon_pos=[True,False], selfcon_size='fc')``: pre-activation wide_basic blocks."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {"encoder.conv1.weight": _conv(16, 3, 3, gen),
                                "encoder.conv1.bias": torch.randn(16, generator=gen) * 0.1}
    in_chs = 16
    for layer, width in enumerate((128, 256, 512), start=1):
        for block in range(2):
            prefix, stride = f"encoder.layer{layer}.{block}", (2 if layer > 1 and block == 0 else 1)
            _bn(state, f"{prefix}.bn1", in_chs, gen)
            state[f"{prefix}.conv1.weight"] = _conv(width, in_chs, 3, gen)
            state[f"{prefix}.conv1.bias"] = torch.randn(width, generator=gen) * 0.1
            _bn(state, f"{prefix}.bn2", width, gen)
            state[f"{prefix}.conv2.weight"] = _conv(width, width, 3, gen)
            state[f"{prefix}.conv2.bias"] = torch.randn(width, generator=gen) * 0.1
            if stride != 1 or in_chs != width:
                state[f"{prefix}.shortcut.0.weight"] = _conv(width, in_chs, 1, gen)
                state[f"{prefix}.shortcut.0.bias"] = torch.randn(width, generator=gen) * 0.1
            in_chs = width
    _bn(state, "encoder.bn1", 512, gen)
    _linear(state, "encoder.selfcon_layer.0", 512, 128, gen)
    _heads(state, 1, gen)
    return state


def official_opt(**overrides: object) -> argparse.Namespace:
    values = dict(model="resnet18", dataset="cifar100", method="SelfCon", selfcon_pos="[False,True,False]",
                  selfcon_arch="resnet", selfcon_size="fc", multiview=False, label=True, alpha=0.0, temp=0.1,
                  batch_size=1024, learning_rate=0.5, epochs=1000, weight_decay=1e-4, momentum=0.9, feat_dim=128)
    values.update(overrides)
    return argparse.Namespace(**values)


def save_official(path: Path, state: dict[str, Tensor], opt: argparse.Namespace | None) -> Path:
    """As the official ``save_model``: ``{'opt', 'model', 'optimizer', 'epoch'}``."""
    optimizer = {"state": {}, "param_groups": [{"lr": 0.5, "momentum": 0.9, "params": [0, 1]}]}
    torch.save({"opt": opt, "model": state, "optimizer": optimizer, "epoch": 1000}, path)
    return path


# ------------------------------------------------------------------------------------------ reference forward
def _ref_bn(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"],
                        sd[f"{prefix}.bias"], training=False, eps=1e-5)


def _ref_basic_block(x: Tensor, sd: dict[str, Tensor], prefix: str, stride: int) -> Tensor:
    out = F.relu(_ref_bn(F.conv2d(x, sd[f"{prefix}.conv1.weight"], stride=stride, padding=1), sd, f"{prefix}.bn1"))
    out = _ref_bn(F.conv2d(out, sd[f"{prefix}.conv2.weight"], padding=1), sd, f"{prefix}.bn2")
    shortcut = x
    if f"{prefix}.shortcut.0.weight" in sd:
        shortcut = _ref_bn(F.conv2d(x, sd[f"{prefix}.shortcut.0.weight"], stride=stride), sd, f"{prefix}.shortcut.1")
    return F.relu(out + shortcut)


def _ref_stage(x: Tensor, sd: dict[str, Tensor], prefix: str, first_stride: int) -> Tensor:
    for block in range(2):
        x = _ref_basic_block(x, sd, f"{prefix}.{block}", first_stride if block == 0 else 1)
    return x


def reference_resnet18(x: Tensor, sd: dict[str, Tensor], exit_type: str) -> tuple[Tensor, Tensor]:
    """(exit feature, backbone feature) of the official encoder, written from its key names."""
    x = F.relu(_ref_bn(F.conv2d(x, sd["encoder.conv1.weight"], padding=1), sd, "encoder.bn1"))
    x = _ref_stage(x, sd, "encoder.layer1", 1)
    x = _ref_stage(x, sd, "encoder.layer2", 2)
    if exit_type == "fc":
        exit_feature = F.linear(x.mean((2, 3)), sd["encoder.selfcon_layer.1.weight"], sd["encoder.selfcon_layer.1.bias"])
    else:
        h = _ref_stage(x, sd, "encoder.selfcon_layer.1.0", 2)
        exit_feature = _ref_stage(h, sd, "encoder.selfcon_layer.1.1", 2).mean((2, 3))
    x = _ref_stage(x, sd, "encoder.layer3", 2)
    x = _ref_stage(x, sd, "encoder.layer4", 2)
    return exit_feature, x.mean((2, 3))


def reference_wrn16_8(x: Tensor, sd: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    x = F.conv2d(x, sd["encoder.conv1.weight"], sd["encoder.conv1.bias"], padding=1)
    exit_feature = None
    for layer in (1, 2, 3):
        for block in range(2):
            p, stride = f"encoder.layer{layer}.{block}", (2 if layer > 1 and block == 0 else 1)
            out = F.conv2d(F.relu(_ref_bn(x, sd, f"{p}.bn1")), sd[f"{p}.conv1.weight"], sd[f"{p}.conv1.bias"], padding=1)
            out = F.conv2d(F.relu(_ref_bn(out, sd, f"{p}.bn2")), sd[f"{p}.conv2.weight"], sd[f"{p}.conv2.bias"],
                           stride=stride, padding=1)
            shortcut = x
            if f"{p}.shortcut.0.weight" in sd:
                shortcut = F.conv2d(x, sd[f"{p}.shortcut.0.weight"], sd[f"{p}.shortcut.0.bias"], stride=stride)
            x = out + shortcut
        if layer == 1:  # the exit pools the pre-activation map
            exit_feature = F.linear(x.mean((2, 3)), sd["encoder.selfcon_layer.0.weight"], sd["encoder.selfcon_layer.0.bias"])
    x = F.relu(_ref_bn(x, sd, "encoder.bn1"))
    return exit_feature, x.mean((2, 3))


def assert_encoder_matches(out_dir: Path, reference: tuple[Tensor, Tensor], x: Tensor) -> None:
    encoder, _ = load_encoder(out_dir)
    with torch.no_grad():
        exit_feature, backbone_feature = encoder.eval().forward_exits(x)
    torch.testing.assert_close(exit_feature, reference[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(backbone_feature, reference[1], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ tests
def test_resnet18_fc_exit_converts_to_the_same_encoder(tmp_path: Path) -> None:
    official = official_resnet18_cifar("fc")
    assert len(official) == 130
    checkpoint = save_official(tmp_path / "ckpt_epoch_1000.pth", official, official_opt())
    out = convert_official(checkpoint, tmp_path / "converted")
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert_encoder_matches(out, reference_resnet18(x, official, "fc"), x)

    assert (out / "last").resolve() == (out / "ckpt-0").resolve()
    assert json.loads((out / "ckpt-0" / "trainer_state.json").read_text())["step"] == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert yaml.safe_load((out / "ckpt-0" / "config.yaml").read_text()) == config  # the checkpoint carries it too
    assert config["model"] == "selfcon_resnet18_cifar"
    assert config["model_kwargs"] == {"exit_stages": [2], "sub_network": "fc"}
    assert config["method"] == "selfcon" and config["data"] == "uoft-cs/cifar100"
    assert config["method_kwargs"]["temperature"] == 0.1 and config["batch_size"] == 1024 and config["epochs"] == 1000
    assert "converted from the official SelfCon checkpoint ckpt_epoch_1000.pth" in config["provenance"]
    assert json.loads((out / "official_opt.json").read_text())["selfcon_pos"] == "[False,True,False]"
    weights = load_file(str(out / "ckpt-0" / "accelerate" / "model.safetensors"))
    assert len(weights) == 130  # every official tensor kept, projection heads included
    assert torch.equal(weights["projector.heads.0.fc1.weight"], official["sub_heads.0.0.weight"])
    assert torch.equal(weights["projector.heads.0.fc2.bias"], official["sub_heads.0.2.bias"])
    assert torch.equal(weights["projector.heads.1.fc1.weight"], official["head.0.weight"])
    assert torch.equal(weights["projector.heads.1.fc2.weight"], official["head.2.weight"])
    assert torch.equal(weights["projector.model.layer2.0.downsample.0.weight"],
                       official["encoder.layer2.0.shortcut.0.weight"])

    # export works on the converted checkpoint (encoder only: the official code saves no classifier)
    with pytest.warns(UserWarning, match="encoder-only"):
        result = export(out, tmp_path / "export")
    assert result.encoder_only
    assert "converted from the official SelfCon checkpoint" in ModelCard.load(tmp_path / "export" / "README.md").text


def test_data_parallel_prefix_and_same_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    official = official_resnet18_cifar("same", seed=1)
    assert len(official) == 188
    wrapped = {key.replace("encoder.", "encoder.module.", 1): value for key, value in official.items()}
    checkpoint = save_official(tmp_path / "last.pth", wrapped, official_opt(selfcon_size="same", dataset="cifar10"))
    assert main(["convert-official", str(checkpoint), str(tmp_path / "converted")]) == 0
    assert "timm-selfcon eval" in capsys.readouterr().out
    config = yaml.safe_load((tmp_path / "converted" / "config.yaml").read_text())
    assert config["model_kwargs"] == {"exit_stages": [2], "sub_network": "same"}
    assert config["data"] == "uoft-cs/cifar10" and config["label_column"] == "label"
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert_encoder_matches(tmp_path / "converted", reference_resnet18(x, official, "same"), x)


def test_wrn16_8_fc_exit(tmp_path: Path) -> None:
    official = official_wrn16_8()
    opt = official_opt(model="wrn_16_8", selfcon_arch="wrn", selfcon_pos="[True,False]", dataset="cifar10")
    out = convert_official(save_official(tmp_path / "wrn.pth", official, opt), tmp_path / "converted")
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"] == "selfcon_wrn16_8_cifar"
    assert config["model_kwargs"] == {"exit_stages": [1], "sub_network": "fc"}
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert_encoder_matches(out, reference_wrn16_8(x, official), x)


def test_leftover_or_missing_tensors_are_errors(tmp_path: Path) -> None:
    official = official_resnet18_cifar("fc")
    extra = dict(official, **{"encoder.extra.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"unexpected keys \['projector.model.extra.weight'\]"):
        convert_official(save_official(tmp_path / "extra.pth", extra, official_opt()), tmp_path / "a")
    stray = dict(official, **{"classifier.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"no counterpart in this package: \['classifier.weight'\]"):
        convert_official(save_official(tmp_path / "stray.pth", stray, official_opt()), tmp_path / "b")
    missing = {k: v for k, v in official.items() if k != "encoder.layer3.1.bn2.running_var"}
    with pytest.raises(ValueError, match=r"1 missing keys \['projector.model.layer3.1.bn2.running_var'\]"):
        convert_official(save_official(tmp_path / "missing.pth", missing, official_opt()), tmp_path / "c")
    with pytest.raises(ValueError, match="disagrees with the checkpoint's sub-networks"):
        convert_official(save_official(tmp_path / "pos.pth", official, official_opt(selfcon_pos="[True,False,False]")),
                         tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_only_namespace_is_unpickled(tmp_path: Path) -> None:
    official = official_resnet18_cifar("fc")
    path = tmp_path / "evil.pth"
    torch.save({"opt": official_opt(), "model": official, "extra": NotAllowed()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        convert_official(path, tmp_path / "out")
    bare = save_official(tmp_path / "bare.pth", official, None)
    with pytest.raises(ValueError, match="pass model="):
        convert_official(bare, tmp_path / "out")
    out = convert_official(bare, tmp_path / "out", model="selfcon_resnet18_cifar", data="uoft-cs/cifar100")
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model_kwargs"] == {"exit_stages": [2], "sub_network": "fc"}  # read from the keys
