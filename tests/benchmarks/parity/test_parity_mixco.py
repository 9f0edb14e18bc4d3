"""benchmarks/parity/parity_mixco.py: equal MixCo steps pass its judge, a planted mix temperature or λ shift fails, and the
pieces that line the official code up with ours (the λ feed, the weight renaming) do what they claim.

The official code is not part of the project, so, as in test_parity_official.py, the stand-in for it is this
package's own MoCo v2 + MixCo / SimCLR + MixCo step on a tiny model; the noise yardstick is the same step with the
mix term in float64. The renaming is checked on torchvision ResNet-18s shaped as the official code shapes them
(``--mlp`` head for MoCo; ``features`` + ``l1``/``l2`` for SimCLR), built here from torchvision alone.
"""

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import timm_selfcon  # noqa: F401
from benchmarks.parity import parity_mixco as parity
from benchmarks.parity.parity_official import LOSS_FLOOR, WEIGHT_FLOOR
from timm_selfcon.methods import build_method
from timm_selfcon.methods.mixing import mix_pairs

TINY = "selfcon_resnet10_w16_cifar"
CASES = ["moco_mixco", "simclr_mixco"]


def _initial(case: str) -> dict:
    torch.manual_seed(0)
    model = timm.create_model(TINY, num_classes=0, exit_stages=[])
    options = dict(queue_size=64, momentum=parity.MOCO_MOMENTUM) if case == "moco_mixco" else {}
    return {k: v.clone() for k, v in build_method(case, model, out_dim=parity.OUT_DIM, **options).state_dict().items()}


def _side(case: str, initial: dict, **plant):
    return parity.our_side(case, initial, parity.CASES[case], model_name=TINY, **plant)


def _compare(case: str, **plant) -> dict:
    initial = _initial(case)
    torch.manual_seed(1)
    batches = [(torch.randn(8, 2, 3, 32, 32), torch.zeros(8, dtype=torch.long)) for _ in range(3)]
    settings = parity.CASES[case]
    return parity.compare(lambda: _side(case, initial), lambda: _side(case, initial, **plant),
                          lambda: _side(case, initial, float64_mix=True), batches, lr=settings["lr"],
                          weight_decay=settings["weight_decay"], group_of=parity.group_of)


def _fails_at_step_1(result: dict) -> bool:
    """The first step's loss or the weights after it (the gradient) are already outside the noise."""
    def outside(difference: float, noise: float, floor: float) -> bool:
        return difference > parity.TOLERANCE_FACTOR * noise + floor

    return outside(result["loss_difference"][0], result["noise_loss_difference"][0], LOSS_FLOOR) or any(
        outside(g["weight_difference"][0], g["noise_weight_difference"][0], WEIGHT_FLOOR)
        for g in result["groups"].values())


@pytest.mark.parametrize("case", CASES)
def test_the_same_step_passes(case: str) -> None:
    result = _compare(case)
    assert result["passed"], result
    assert result["max_loss_difference"] == 0.0 and result["final_weight_difference"] == 0.0
    expected = {"query encoder", "key encoder", "queue"} if case == "moco_mixco" else {"query encoder"}
    assert set(result["groups"]) == expected
    assert result["max_noise_loss_difference"] > 0  # the yardstick is not empty


@pytest.mark.parametrize("case", CASES)
def test_a_mix_temperature_off_by_1e_3_fails(case: str) -> None:
    result = _compare(case, mix_temperature_offset=1e-3)
    assert not result["passed"] and _fails_at_step_1(result)


@pytest.mark.parametrize("case", CASES)
def test_a_shifted_lambda_fails(case: str) -> None:
    result = _compare(case, lambda_shift=0.01)
    assert not result["passed"] and _fails_at_step_1(result)


def test_the_key_encoder_is_judged_on_its_own() -> None:
    """After one step only the momentum update tells the sides apart: a key encoder left behind fails its group
    while the loss, the query encoder and the queue agree."""
    initial = _initial("moco_mixco")
    batches = [(torch.randn(8, 2, 3, 32, 32), torch.zeros(8, dtype=torch.long))]

    def frozen_keys():  # a momentum of 1 leaves the key encoder at its initial weights
        side = _side("moco_mixco", initial)
        side.module.momentum = 1.0
        return side

    result = parity.compare(lambda: _side("moco_mixco", initial), frozen_keys,
                            lambda: _side("moco_mixco", initial, float64_mix=True), batches, group_of=parity.group_of)
    assert not result["passed"] and not result["groups"]["key encoder"]["passed"]
    assert result["max_loss_difference"] == 0.0
    assert result["groups"]["query encoder"]["passed"] and result["groups"]["queue"]["passed"]


def test_the_lambda_feed_hands_out_what_our_method_draws() -> None:
    images = torch.randn(6, 3, 4, 4)
    generator, feed = torch.Generator().manual_seed(3), parity.LambdaFeed(3)
    for _ in range(2):  # in order, step after step
        _, ours = mix_pairs(images, generator)
        fed = feed.random.uniform(0, 1, size=(3, 1, 1, 1))
        assert fed.shape == (3, 1, 1, 1) and fed.dtype.name == "float64"
        assert torch.equal(torch.from_numpy(fed).float().flatten(), ours)
    with pytest.raises(ValueError, match="uniform"):
        feed.uniform(0, 2, size=(3, 1, 1, 1))


def _official_shaped_moco(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    resnet = torchvision.models.resnet18(num_classes=parity.OUT_DIM)
    resnet.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), resnet.fc)
    return resnet


def test_official_moco_weights_land_on_ours() -> None:
    query, key = _official_shaped_moco(0).eval(), _official_shaped_moco(1).eval()
    queue = F.normalize(torch.randn(parity.OUT_DIM, 64), dim=0)
    state = {**{f"encoder_q.{k}": v for k, v in query.state_dict().items()},
             **{f"encoder_k.{k}": v for k, v in key.state_dict().items()},
             "queue": queue, "queue_ptr": torch.tensor([8])}
    ours = build_method("moco_mixco", timm.create_model(parity.OUR_MODEL, num_classes=0), queue_size=64,
                        key_bn="none").eval()
    ours.load_state_dict(parity.official_moco_to_ours(state))  # strict: every tensor named, none left over
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.projector(images), F.normalize(query(images), dim=1))
        torch.testing.assert_close(ours.key_projector(images), F.normalize(key(images), dim=1))
    assert torch.equal(ours.queue, queue.T) and int(ours.queue_ptr) == 8
    assert {parity.group_of(k) for k in ours.state_dict()} == {"query encoder", "key encoder", "queue"}


def test_official_simclr_weights_land_on_ours() -> None:
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    features = nn.Sequential(*list(resnet.children())[:-1]).eval()
    l1, l2 = nn.Linear(512, 512), nn.Linear(512, parity.OUT_DIM)
    state = {**{f"features.{k}": v for k, v in features.state_dict().items()},
             **{f"l1.{k}": v for k, v in l1.state_dict().items()}, **{f"l2.{k}": v for k, v in l2.state_dict().items()}}
    ours = build_method("simclr_mixco", timm.create_model(parity.OUR_MODEL, num_classes=0)).eval()
    ours.load_state_dict(parity.official_simclr_to_ours(state))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = F.normalize(l2(F.relu(l1(torch.flatten(features(images), 1)))), dim=1)
        torch.testing.assert_close(ours.projector(images), expected)
