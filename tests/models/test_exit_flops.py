"""``MultiExitMixin.exit_flops``: FLOPs per image of stopping at each exit and of the full model.

The early-exit evaluation (SelfCon, Bae et al., AAAI 2023, arXiv 2106.15499: multi-exit inference) reports mean
FLOPs per image from these numbers, so they must be what the model really computes: checked against direct
``FlopCounterMode`` counts of ``forward_exit_logits`` (the full model) and of ``forward_early_exit`` at a
threshold that stops every image at the first exit (0) and at none (above 1).
"""
from __future__ import annotations

import itertools

import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import timm_selfcon  # noqa: F401  (registers the models)

# (model name, kwargs, input size): a CNN with three exits, a WRN with two, a ViT with an exit after the stem
# (feature_info index 0) and a generic timm backbone with its default exit.
CASES = [
    ("selfcon_resnet18_cifar", dict(exit_stages=(1, 2, 3), sub_network="fc"), 16),
    ("selfcon_wrn16_8_cifar", dict(exit_stages=(1, 2), sub_network="small"), 16),
    ("selfcon_vit_tiny_patch4_32", dict(exit_stages=(0, 1, 2), sub_network="same", depth=4), 32),
    ("selfcon_timm", dict(backbone="resnet18", sub_network="fc"), 32),
]


def count(fn, *args) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return float(counter.get_total_flops())


@pytest.mark.parametrize(("name", "kwargs", "size"), CASES, ids=[c[0] for c in CASES])
def test_exit_flops_match_direct_counts_and_increase(name: str, kwargs: dict, size: int) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, **kwargs)
    model.train()
    flops = model.exit_flops((3, size, size))
    assert model.training  # its mode is restored
    model.eval()
    assert len(flops) == model.num_exits + 1 >= 2
    assert all(a < b for a, b in itertools.pairwise(flops))  # each exit costs more than the one before
    x = torch.zeros(1, 3, size, size)
    assert flops[-1] == pytest.approx(count(model.forward_exit_logits, x), rel=1e-9)
    assert flops[-1] == pytest.approx(count(model.forward_early_exit, x, 1.01), rel=1e-9)
    assert flops[0] == pytest.approx(count(model.forward_early_exit, x, 0.0), rel=1e-9)


def test_exit_flops_without_exits_is_the_full_forward() -> None:
    torch.manual_seed(0)
    model = timm.create_model("selfcon_resnet18_cifar", num_classes=10, exit_stages=()).eval()
    assert model.exit_flops((3, 16, 16)) == [pytest.approx(count(model, torch.zeros(1, 3, 16, 16)), rel=1e-9)]
