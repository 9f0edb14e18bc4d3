"""MixCo soft cross-entropy against a loop reference written from the formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from timm_selfcon.losses import MixCoLoss, mixco_loss

TOLERANCE = 1e-6


def loop_mixco(q_mix: Tensor, keys: Tensor, lam: Tensor, queue: Tensor | None, temperature: float) -> Tensor:
    """-1/M sum_i [lam_i log p(k_i | q_i) + (1 - lam_i) log p(k_{i+M} | q_i)]; p: softmax over keys, queue."""
    num_mixed = q_mix.shape[0]
    contrast = list(keys) + ([] if queue is None else list(queue))
    total = 0.0
    for i in range(num_mixed):
        denominator = 0.0
        for column in contrast:
            denominator = denominator + torch.exp(torch.dot(q_mix[i], column) / temperature)
        prob_first = torch.exp(torch.dot(q_mix[i], keys[i]) / temperature) / denominator
        prob_second = torch.exp(torch.dot(q_mix[i], keys[i + num_mixed]) / temperature) / denominator
        total = total - (lam[i] * torch.log(prob_first) + (1 - lam[i]) * torch.log(prob_second))
    return total / num_mixed


def normalized(*shape: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("queue_size", [0, 9])
@pytest.mark.parametrize("temperature", [0.05, 0.2])
def test_mixco_matches_loop(queue_size: int, temperature: float) -> None:
    num_mixed, dim = 5, 6
    q_mix = normalized(num_mixed, dim, seed=0).requires_grad_(True)
    keys = normalized(2 * num_mixed, dim, seed=1).requires_grad_(True)
    lam = torch.rand(num_mixed, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    queue = normalized(queue_size, dim, seed=3).requires_grad_(True) if queue_size else None
    inputs = [q_mix, keys] + ([queue] if queue is not None else [])

    ours = MixCoLoss(temperature)(q_mix, keys, lam, queue)
    reference = loop_mixco(q_mix, keys, lam, queue, temperature)
    assert ours.dtype == torch.float64
    assert torch.allclose(ours, reference, rtol=0, atol=TOLERANCE), (ours, reference)
    for ours_grad, reference_grad in zip(
        torch.autograd.grad(ours, inputs), torch.autograd.grad(reference, inputs), strict=True
    ):
        assert torch.allclose(ours_grad, reference_grad, rtol=0, atol=TOLERANCE)
        assert ours_grad.abs().max() > 0  # keys are not detached inside the loss


def test_mixco_equals_soft_target_cross_entropy() -> None:
    num_mixed, queue_size = 4, 6
    q_mix = normalized(num_mixed, 8, seed=4)
    keys = normalized(2 * num_mixed, 8, seed=5)
    queue = normalized(queue_size, 8, seed=6)
    lam = torch.tensor([0.0, 0.3, 0.5, 1.0], dtype=torch.float64)
    logits = q_mix @ torch.cat([keys, queue]).T / 0.05
    targets = torch.cat([torch.diag(lam), torch.diag(1 - lam), torch.zeros(num_mixed, queue_size)], dim=1)
    expected = F.cross_entropy(logits, targets.double())
    assert torch.allclose(mixco_loss(q_mix, keys, lam, queue), expected, rtol=0, atol=1e-12)


def test_mixco_finite_where_log_of_softmax_underflows() -> None:
    # Target key opposite to the query: its softmax probability is exp(-40) at τ = 0.05, which is 0 in fp16.
    q_mix = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float16)
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float16)
    lam = torch.tensor([0.5, 0.5], dtype=torch.float16)
    naive = torch.log(torch.softmax(q_mix @ keys.T / 0.05, dim=1))
    assert torch.isinf(naive).any()
    loss = mixco_loss(q_mix, keys, lam)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    expected = loop_mixco(q_mix.double(), keys.double(), lam.double(), None, 0.05)
    assert torch.allclose(loss.double(), expected, rtol=1e-5)


@pytest.mark.parametrize("temperature", [0.05, 0.07, 0.1])
def test_mixco_bf16_autocast_is_finite_and_computed_in_float32(temperature: float) -> None:
    generator = torch.Generator().manual_seed(7)
    num_mixed = 8
    inputs = torch.randn(3 * num_mixed, 32, generator=generator)
    weight = torch.randn(32, 16, generator=generator).requires_grad_(True)
    queue = F.normalize(torch.randn(20, 16, generator=generator), dim=-1)
    lam = torch.rand(num_mixed, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        projections = inputs @ weight
        assert projections.dtype == torch.bfloat16
        embeddings = F.normalize(projections, dim=-1)
        q_mix, keys = embeddings[:num_mixed], embeddings[num_mixed:]
        loss = mixco_loss(q_mix, keys, lam, queue, temperature=temperature)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    (grad,) = torch.autograd.grad(loss, weight)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    expected = mixco_loss(q_mix.detach().float(), keys.detach().float(), lam, queue, temperature=temperature)
    assert torch.allclose(loss.detach(), expected, rtol=1e-5, atol=1e-5)


def test_mixco_backward_inside_autocast_stays_float32() -> None:
    q_mix = normalized(8, 16, seed=11).float().requires_grad_(True)
    keys = normalized(16, 16, seed=12).float().requires_grad_(True)
    queue = normalized(30, 16, seed=13).float()
    lam = torch.rand(8, generator=torch.Generator().manual_seed(14))
    expected = torch.autograd.grad(mixco_loss(q_mix, keys, lam, queue), (q_mix, keys))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grads = torch.autograd.grad(mixco_loss(q_mix, keys, lam, queue), (q_mix, keys))
    for grad, expected_grad in zip(grads, expected, strict=True):
        assert torch.allclose(grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_mixco_bad_inputs_raise_value_error() -> None:
    q_mix, keys, lam = normalized(3, 4, seed=8), normalized(6, 4, seed=9), torch.rand(3)
    with pytest.raises(ValueError, match=r"keys must have shape \[2 \* M, D\] = \[6, 4\].*got \(5, 4\)"):
        mixco_loss(q_mix, keys[:5], lam)
    with pytest.raises(ValueError, match=r"keys must have shape \[2 \* M, D\] = \[6, 4\].*got \(6, 3\)"):
        mixco_loss(q_mix, keys[:, :3], lam)
    with pytest.raises(ValueError, match=r"q_mix must be 2-D .*got shape \(3, 1, 4\)"):
        mixco_loss(q_mix.unsqueeze(1), keys, lam)
    with pytest.raises(ValueError, match=r"lam must have shape \[M\] = \[3\].*got \(3, 1\)"):
        mixco_loss(q_mix, keys, lam.unsqueeze(1))
    with pytest.raises(ValueError, match=r"lam must have shape \[M\] = \[3\].*got \(4,\)"):
        mixco_loss(q_mix, keys, torch.rand(4))
    with pytest.raises(ValueError, match=r"queue must have shape \[K, 4\].*got \(10, 5\)"):
        mixco_loss(q_mix, keys, lam, normalized(10, 5, seed=10))
    with pytest.raises(ValueError, match=r"queue must be 2-D .*got shape \(10,\)"):
        mixco_loss(q_mix, keys, lam, torch.zeros(10))
    for value in (0.0, -0.05):
        with pytest.raises(ValueError, match=rf"temperature must be a finite number > 0, got {value!r}"):
            MixCoLoss(value)
        with pytest.raises(ValueError, match=rf"temperature must be a finite number > 0, got {value!r}"):
            mixco_loss(q_mix, keys, lam, temperature=value)


def test_mixco_module_repr_and_no_state() -> None:
    loss = MixCoLoss(0.2)
    assert "temperature=0.2" in repr(loss)
    assert loss.state_dict() == {}
