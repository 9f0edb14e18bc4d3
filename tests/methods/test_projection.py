"""Projection heads of SelfCon (arXiv 2106.15499) and MixCo (arXiv 2010.06300): one MLP per output.

Official head per output: ``Linear(d, d) -> ReLU -> Linear(d, 128)``, no BatchNorm, L2-normalised.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import timm_selfcon  # noqa: F401  (registers the models)
from timm_selfcon.methods import ProjectedModel, ProjectionHead, with_projection_heads

NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
)


def official_head_params(width: int, out_dim: int = 128) -> int:
    """``Linear(d, d) + Linear(d, out_dim)`` with biases (the official ``head`` / ``sub_heads.k``)."""
    return width * width + width + width * out_dim + out_dim


@pytest.mark.parametrize(("name", "kwargs", "size", "width"), [
    ("selfcon_resnet18_cifar", dict(exit_stages=(2,), sub_network="fc"), 32, 512),
    ("selfcon_resnet18_cifar", dict(exit_stages=(1, 2, 3), sub_network="small"), 16, 512),
    ("selfcon_resnet50_cifar", dict(exit_stages=(2,), sub_network="fc"), 16, 2048),
    ("selfcon_wrn16_8_cifar", dict(exit_stages=(1, 2), sub_network="fc"), 16, 512),
    ("selfcon_vit_tiny_patch4_32", dict(exit_stages=(2,), sub_network="fc", depth=4), 32, 192),
    ("mixco_resnet18_cifar", dict(), 16, 512),
], ids=["r18-fc", "r18-3exits", "r50-fc", "wrn", "vit", "mixco"])
def test_unit_norm_projections(name: str, kwargs: dict, size: int, width: int) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=0, **kwargs)
    projected = with_projection_heads(model)
    assert isinstance(projected, ProjectedModel)
    n_exits = len(kwargs.get("exit_stages", ()))
    assert projected.num_outputs == n_exits + 1
    projected.eval()
    assert [head.fc1.in_features for head in projected.heads] == [width] * (n_exits + 1)
    with torch.no_grad():
        z = projected.forward_projections(torch.randn(3, 3, size, size))
    assert z.shape == (3, n_exits + 1, 128)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3, n_exits + 1), atol=1e-5, rtol=0)
    # the outputs are different heads on different features: not copies of each other
    for k in range(n_exits):
        assert not torch.allclose(z[:, k], z[:, -1], atol=1e-3)


def test_projection_order_follows_forward_exits() -> None:
    torch.manual_seed(0)
    model = timm.create_model("selfcon_resnet18_cifar", num_classes=0, exit_stages=(1, 3), sub_network="fc")
    projected = with_projection_heads(model, out_dim=16).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        z = projected(x)
        feats = model.forward_exits(x)
        for k, (head, feat) in enumerate(zip(projected.heads, feats)):
            torch.testing.assert_close(z[:, k], F.normalize(head(feat), dim=-1), atol=1e-6, rtol=1e-5)
    assert z.shape == (2, 3, 16)


@pytest.mark.parametrize(("name", "kwargs", "width"), [
    ("selfcon_resnet18_cifar", dict(exit_stages=(2,)), 512),
    ("selfcon_resnet18_cifar", dict(exit_stages=(1, 2, 3)), 512),
    ("selfcon_resnet50_cifar", dict(exit_stages=(2,)), 2048),
    ("selfcon_wrn16_8_cifar", dict(exit_stages=(1,)), 512),
    ("mixco_resnet18", dict(), 512),
])
def test_heads_match_official_parameter_count(name: str, kwargs: dict, width: int) -> None:
    model = timm.create_model(name, num_classes=0, device="meta", **kwargs)  # counting needs no storage
    projected = with_projection_heads(model)
    n_heads = len(kwargs.get("exit_stages", ())) + 1
    assert len(projected.heads) == n_heads
    head_params = sum(p.numel() for p in projected.heads.parameters())
    assert head_params == n_heads * official_head_params(width)
    if width == 512:
        assert official_head_params(512) == 328_320  # (512,512)+(512,)+(128,512)+(128,)
    for head in projected.heads:
        assert isinstance(head, ProjectionHead)
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        assert [(lin.in_features, lin.out_features) for lin in linears] == [(width, width), (width, 128)]
        assert all(lin.bias is not None for lin in linears)
        assert not any(isinstance(m, NORM_LAYERS) for m in head.modules())


def test_relu_between_linears() -> None:
    head = ProjectionHead(8, 4)
    with torch.no_grad():
        head.fc1.weight.copy_(-torch.eye(8))
        head.fc1.bias.zero_()
        x = torch.ones(1, 8)  # fc1 gives all -1: the ReLU zeroes it, so the output is fc2's bias
        torch.testing.assert_close(head(x), head.fc2.bias.unsqueeze(0))


def test_heads_not_in_registered_model_state_dict() -> None:
    torch.manual_seed(0)
    model = timm.create_model("selfcon_resnet18_cifar", num_classes=10, exit_stages=(2,))
    keys_before = set(model.state_dict())
    projected = with_projection_heads(model)
    keys_after = set(model.state_dict())
    assert keys_after == keys_before
    fresh = timm.create_model("selfcon_resnet18_cifar", num_classes=10, exit_stages=(2,))
    assert set(fresh.state_dict()) == keys_after
    head_keys = {f"heads.{k}" for k in projected.heads.state_dict()}
    wrapper_keys = set(projected.state_dict())
    assert head_keys and head_keys <= wrapper_keys
    assert wrapper_keys == head_keys | {f"model.{k}" for k in keys_before}
    head_ptrs = {p.data_ptr() for p in projected.heads.parameters()}
    assert head_ptrs.isdisjoint(p.data_ptr() for p in model.parameters())


def test_training_step_moves_heads_and_encoder() -> None:
    torch.manual_seed(0)
    model = timm.create_model("selfcon_resnet18_cifar", num_classes=0, exit_stages=(2,), sub_network="fc")
    projected = with_projection_heads(model).train()
    z = projected.forward_projections(torch.randn(2, 3, 16, 16))
    z[:, 0].sum().backward()
    assert projected.heads[0].fc1.weight.grad.abs().sum() > 0
    unused = projected.heads[1].fc1.weight.grad  # the backbone's head is not in this loss
    assert unused is None or not unused.any()
    assert model.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("out_dim", [0, -3, 1.5])
def test_bad_out_dim(out_dim: object) -> None:
    model = timm.create_model("mixco_resnet18_cifar", num_classes=0)
    with pytest.raises(ValueError, match=str(out_dim)):
        with_projection_heads(model, out_dim=out_dim)
