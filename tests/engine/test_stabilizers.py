"""The collapse stabilizers (ours, recipes/README.md): each option is validated and changes the training step."""
from pathlib import Path

import pytest
import timm
import torch

from timm_selfcon.config import resolve_config
from timm_selfcon.engine.train import head_lr_factor, train
from timm_selfcon.errors import UserInputError
from timm_selfcon.methods import build_method

from .test_train import method_state, tiny_settings


def _initial_state(data: Path, tmp_path: Path, **overrides) -> dict[str, torch.Tensor]:
    """The method state after ``max_steps=1`` with ``lr`` ~0: the initial weights of the same seeded run."""
    train(resolve_config(None, tiny_settings(data, tmp_path, max_steps=1, lr=1e-30, weight_decay=0.0, **overrides)))
    return method_state(tmp_path / "ckpt-1")


def test_head_lr_warmup_scales_only_the_heads_first_step(tiny_data: Path, tmp_path: Path) -> None:
    """With plain SGD the first step moves each weight by lr * (grad + wd * w): the heads' step is 1/4 of it at
    ``head_lr_warmup_steps=4``, the encoder's is unchanged."""
    start = _initial_state(tiny_data, tmp_path / "start")
    deltas = {}
    for warmup in (0, 4):
        out = tmp_path / f"warmup{warmup}"
        train(resolve_config(None, tiny_settings(tiny_data, out, max_steps=1, head_lr_warmup_steps=warmup)))
        state = method_state(out / "ckpt-1")
        deltas[warmup] = {k: state[k] - start[k] for k in state if k.endswith(".weight")}
    heads = [k for k in deltas[0] if k.startswith("projector.heads.")]
    encoder = [k for k in deltas[0] if k.startswith("projector.model.") and deltas[0][k].abs().sum() > 0]
    assert heads and encoder
    for k in heads:
        torch.testing.assert_close(deltas[4][k], deltas[0][k] / 4, rtol=1e-4, atol=1e-8)  # fp32 weights ~0.05
    for k in encoder:
        torch.testing.assert_close(deltas[4][k], deltas[0][k], rtol=1e-5, atol=1e-9)


def test_head_lr_factor_ramps_to_one() -> None:
    assert [head_lr_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert head_lr_factor(0, 0) == 1.0


@pytest.mark.parametrize("bad", [-1, 1.5, "ten", True])
def test_bad_head_lr_warmup_steps_is_refused(tiny_data: Path, tmp_path: Path, bad) -> None:
    with pytest.raises(UserInputError, match="head_lr_warmup_steps: Input should be"):
        resolve_config(None, tiny_settings(tiny_data, tmp_path, head_lr_warmup_steps=bad))


def test_head_lr_warmup_needs_heads(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="'ce' has none"):
        train(resolve_config(None, tiny_settings(tiny_data, tmp_path / "ce", "ce", head_lr_warmup_steps=2)))
    assert not (tmp_path / "ce").exists()


@pytest.mark.parametrize("method", ["selfcon", "supcon"])
def test_head_batchnorm_normalises_the_hidden_layer(method: str) -> None:
    exits = {"exit_stages": [2]} if method == "selfcon" else {"exit_stages": []}
    views = torch.randn(8, 2 if method == "supcon" else 1, 3, 32, 32)
    labels = torch.arange(8) % 3
    losses = {}
    for batchnorm in (False, True):
        torch.manual_seed(0)
        model = timm.create_model("selfcon_resnet10_w16_cifar", num_classes=0, **exits)
        built = build_method(method, model, head_batchnorm=batchnorm)
        norms = [m for m in built.modules() if isinstance(m, torch.nn.BatchNorm1d)]
        assert len(norms) == (2 if method == "selfcon" and batchnorm else int(batchnorm))
        losses[batchnorm] = float(built(views, labels)[0].detach())
    assert losses[True] != pytest.approx(losses[False], abs=1e-4)  # the option reaches the step


def test_head_batchnorm_must_be_a_bool() -> None:
    model = timm.create_model("selfcon_resnet10_w16_cifar", num_classes=0)
    with pytest.raises(ValueError, match=r"head_batchnorm: Input should be a valid boolean \(got 'yes'\)"):
        build_method("selfcon", model, head_batchnorm="yes")
