"""benchmarks/parity/parity_official.py's judgement: equal implementations pass, a planted difference fails.

The official code is not part of the project, so the stand-in for it is this package's own SelfCon step on a tiny
model; the noise yardstick is the same step with the loss in float64, as the script does for the official code.
"""

import pytest
import timm
import torch

import timm_selfcon  # noqa: F401
from benchmarks.parity import parity_official as parity
from timm_selfcon.methods import build_method


def _stand_in(parity, initial: dict, temperature: float = 0.1, float64_loss: bool = False):
    model = timm.create_model("selfcon_resnet10_w16_cifar", num_classes=0)
    method = build_method("selfcon", model, temperature=temperature, gather=False)
    method.load_state_dict(initial)

    def loss(views: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = method.projector.forward_projections(views[:, 0])
        if float64_loss:
            return method.criterion(features.double(), labels).float()
        return method.criterion(features, labels)

    return parity.Side(method, loss, lambda: {k: v.detach().clone() for k, v in method.state_dict().items()})


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(0)
    initial = build_method("selfcon", timm.create_model("selfcon_resnet10_w16_cifar", num_classes=0)).state_dict()
    batches = [(torch.randn(16, 1, 3, 32, 32), torch.randint(0, 4, (16,))) for _ in range(3)]
    return initial, batches


def test_the_same_step_passes(setting) -> None:
    initial, batches = setting
    result = parity.compare(lambda: _stand_in(parity, initial), lambda: _stand_in(parity, initial),
                            lambda: _stand_in(parity, initial, float64_loss=True), batches)
    assert result["passed"], result
    assert result["max_loss_difference"] == 0.0 and result["final_weight_difference"] == 0.0


def test_a_temperature_off_by_1e_3_fails(setting) -> None:
    initial, batches = setting
    result = parity.compare(lambda: _stand_in(parity, initial), lambda: _stand_in(parity, initial, temperature=0.101),
                            lambda: _stand_in(parity, initial, float64_loss=True), batches)
    assert not result["passed"]
    assert result["max_loss_difference"] > 100 * result["max_noise_loss_difference"]


def test_different_initial_weights_fail(setting) -> None:
    initial, batches = setting
    shifted = {k: v + 1e-3 if v.is_floating_point() else v for k, v in initial.items()}
    result = parity.compare(lambda: _stand_in(parity, initial), lambda: _stand_in(parity, shifted),
                            lambda: _stand_in(parity, initial, float64_loss=True), batches)
    assert not result["passed"] and result["initial_weight_difference"] > 0


def test_each_step_is_held_to_the_noise_seen_so_far() -> None:
    """A difference at an early step, where the noise is small, fails even if later steps are noisier."""
    assert parity.within_noise([1e-6, 0.5], [1e-6, 0.1], 1e-6)
    assert not parity.within_noise([1e-3, 0.01], [1e-6, 0.1], 1e-6)
    assert parity.within_noise([0.0, 1e-6, 0.5], [0.0, 0.1, 0.0], 1e-6)  # the noise so far, not the step's own
