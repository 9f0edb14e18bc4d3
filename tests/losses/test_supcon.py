"""SupCon / SupCon-S / NT-Xent / SelfCon losses against loop references written from the formulas."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from timm_selfcon.losses import SelfConLoss, SupConLoss, selfcon_loss, supcon_loss

TOLERANCE = 1e-6


def loop_supcon(
    vectors: Sequence[Tensor],
    groups: Sequence[int],
    anchors: Sequence[int],
    temperature: float,
    base_temperature: float,
) -> Tensor:
    """SupCon L_out with explicit loops.

    ``vectors`` is the contrast set; ``anchors`` indexes the anchors in it. Positives of anchor ``a``: every
    other vector with the same group. Denominator: every other vector. Anchors without positives are skipped.
    """
    per_anchor = []
    for a in anchors:
        positives = [p for p in range(len(vectors)) if p != a and groups[p] == groups[a]]
        if not positives:
            continue
        denominator = 0.0
        for k in range(len(vectors)):
            if k != a:
                denominator = denominator + torch.exp(torch.dot(vectors[a], vectors[k]) / temperature)
        total = 0.0
        for p in positives:
            total = total + torch.log(
                torch.exp(torch.dot(vectors[a], vectors[p]) / temperature) / denominator
            )
        per_anchor.append(-total / len(positives))
    if not per_anchor:
        return vectors[0].sum() * 0.0
    return temperature / base_temperature * sum(per_anchor) / len(per_anchor)


def flatten(features: Tensor, row_groups: Sequence[int]) -> tuple[list[Tensor], list[int], list[int]]:
    """All ``features[i, v]`` as a list with the group of row ``i`` and the view index ``v`` of each."""
    vectors, groups, views = [], [], []
    for i in range(features.shape[0]):
        for v in range(features.shape[1]):
            vectors.append(features[i, v])
            groups.append(int(row_groups[i]))
            views.append(v)
    return vectors, groups, views


def random_features(*shape: int, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(*shape, generator=generator, dtype=torch.float64)
    return F.normalize(features, dim=-1).requires_grad_(True)


def assert_value_and_grad(
    ours: Callable[[], Tensor], reference: Callable[[], Tensor], inputs: list[Tensor]
) -> None:
    ours_value, reference_value = ours(), reference()
    assert ours_value.dtype == torch.float64
    assert torch.allclose(ours_value, reference_value, rtol=0, atol=TOLERANCE), (ours_value, reference_value)
    ours_grads = torch.autograd.grad(ours_value, inputs)
    reference_grads = torch.autograd.grad(reference_value, inputs)
    for ours_grad, reference_grad in zip(ours_grads, reference_grads, strict=True):
        assert torch.allclose(ours_grad, reference_grad, rtol=0, atol=TOLERANCE)
        assert ours_grad.abs().max() > 0


# ---------------------------------------------------------------------------------------------- SupCon


@pytest.mark.parametrize("temperature, base_temperature", [(0.1, 0.07), (0.5, 0.5)])
def test_supcon_with_labels_two_views_matches_loop(temperature: float, base_temperature: float) -> None:
    features = random_features(8, 2, 5)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0])
    vectors, groups, _ = flatten(features, labels.tolist())
    assert_value_and_grad(
        lambda: supcon_loss(features, labels, temperature=temperature, base_temperature=base_temperature),
        lambda: loop_supcon(vectors, groups, range(len(vectors)), temperature, base_temperature),
        [features],
    )


def test_supcon_s_single_view_drops_anchors_without_positive() -> None:
    features = random_features(9, 1, 6, seed=1)
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4])  # classes 1 and 3 have a single sample
    vectors, groups, _ = flatten(features, labels.tolist())
    assert_value_and_grad(
        lambda: supcon_loss(features, labels, temperature=0.1),
        lambda: loop_supcon(vectors, groups, range(len(vectors)), 0.1, 0.07),
        [features],
    )
    # Counting the two lonely anchors as zeros (current HobbitLong code) would give 7/9 of our value.
    kept = supcon_loss(features, labels, temperature=0.1)
    with_zeros = loop_supcon(vectors, groups, range(len(vectors)), 0.1, 0.07) * 7 / 9
    assert not torch.allclose(kept, with_zeros)


def test_supcon_s_without_any_positive_is_a_connected_zero() -> None:
    features = random_features(5, 1, 4, seed=2)
    loss = supcon_loss(features, torch.arange(5))
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    (grad,) = torch.autograd.grad(loss, features)
    assert torch.equal(grad, torch.zeros_like(grad))
    single = supcon_loss(random_features(1, 1, 4), torch.tensor([3]))
    assert single.item() == 0.0 and single.grad_fn is not None


@pytest.mark.parametrize("num_views", [2, 3])
def test_supcon_without_labels_matches_loop(num_views: int) -> None:
    features = random_features(6, num_views, 5, seed=3)
    vectors, groups, _ = flatten(features, list(range(6)))
    assert_value_and_grad(
        lambda: supcon_loss(features, temperature=0.2, base_temperature=0.07),
        lambda: loop_supcon(vectors, groups, range(len(vectors)), 0.2, 0.07),
        [features],
    )


def test_supcon_without_labels_is_nt_xent_when_base_temperature_equals_temperature() -> None:
    batch_size, temperature = 7, 0.3
    features = random_features(batch_size, 2, 8, seed=4)
    embeddings = torch.cat([features[:, 0], features[:, 1]])  # [2B, D]
    logits = embeddings @ embeddings.T / temperature
    logits = logits.masked_fill(torch.eye(2 * batch_size, dtype=torch.bool), float("-inf"))
    targets = (torch.arange(2 * batch_size) + batch_size) % (2 * batch_size)
    assert_value_and_grad(
        lambda: SupConLoss(temperature, temperature)(features),
        lambda: F.cross_entropy(logits, targets),
        [features],
    )


# ---------------------------------------------------------------------------------------------- SelfCon


def test_selfcon_over_stacked_exits_equals_supcon_and_loop() -> None:
    features = random_features(6, 3, 5, seed=5)  # two exits + backbone
    labels = torch.tensor([1, 0, 1, 1, 2, 0])
    vectors, groups, _ = flatten(features, labels.tolist())
    assert_value_and_grad(
        lambda: SelfConLoss(0.1)(features, labels),
        lambda: loop_supcon(vectors, groups, range(len(vectors)), 0.1, 0.07),
        [features],
    )
    assert torch.equal(selfcon_loss(features, labels), supcon_loss(features, labels))
    assert torch.equal(selfcon_loss(features), supcon_loss(features))


def test_selfcon_m_with_repeated_labels_matches_loop() -> None:
    num_images = 5
    features = random_features(2 * num_images, 2, 6, seed=6)  # two crops on the batch axis, one exit
    labels = torch.tensor([0, 1, 1, 2, 0])
    repeated = torch.cat([labels, labels])
    vectors, groups, _ = flatten(features, repeated.tolist())
    assert_value_and_grad(
        lambda: supcon_loss(features, repeated, temperature=0.1),
        lambda: loop_supcon(vectors, groups, range(len(vectors)), 0.1, 0.07),
        [features],
    )
    assert torch.allclose(
        selfcon_loss(features, labels, multiview=True, temperature=0.1),
        supcon_loss(features, repeated, temperature=0.1),
        rtol=0,
        atol=1e-12,
    )


def test_unlabeled_multicrop_sample_ids_make_other_crop_a_positive() -> None:
    num_images = 4
    features = random_features(2 * num_images, 2, 6, seed=7)
    sample_ids = torch.arange(num_images).repeat(2)
    vectors, same_image, _ = flatten(features, sample_ids.tolist())
    assert_value_and_grad(
        lambda: supcon_loss(features, sample_ids=sample_ids, temperature=0.1),
        lambda: loop_supcon(vectors, same_image, range(len(vectors)), 0.1, 0.07),
        [features],
    )
    assert torch.allclose(
        selfcon_loss(features, multiview=True, temperature=0.1),
        supcon_loss(features, sample_ids=sample_ids, temperature=0.1),
        rtol=0,
        atol=1e-12,
    )
    # Without sample_ids every row is its own image: the official SelfCon-MU (other crop = negative).
    _, own_row, _ = flatten(features, list(range(2 * num_images)))
    assert_value_and_grad(
        lambda: supcon_loss(features, temperature=0.1),
        lambda: loop_supcon(vectors, own_row, range(len(vectors)), 0.1, 0.07),
        [features],
    )
    assert not torch.allclose(supcon_loss(features), supcon_loss(features, sample_ids=sample_ids))


def test_sample_ids_need_not_be_contiguous() -> None:
    features = random_features(6, 1, 4, seed=8)
    sample_ids = torch.tensor([10, -3, 10, 7, -3, 7])
    vectors, groups, _ = flatten(features, sample_ids.tolist())
    assert_value_and_grad(
        lambda: supcon_loss(features, sample_ids=sample_ids),
        lambda: loop_supcon(vectors, groups, range(len(vectors)), 0.07, 0.07),
        [features],
    )


# ------------------------------------------------------------------------------------- FG-excluded variants


def fg_excluded_reference(
    vectors: list[Tensor], groups: list[int], views: list[int], num_outputs: int, temperature: float
) -> Tensor:
    """Exit outputs as anchors, exits + backbone as the contrast set."""
    exit_anchors = [index for index, view in enumerate(views) if view < num_outputs - 1]
    return loop_supcon(vectors, groups, exit_anchors, temperature, 0.07)


@pytest.mark.parametrize("labelled", [True, False])
def test_selfcon_s_star_matches_loop(labelled: bool) -> None:
    batch_size, num_outputs, alpha, temperature = 6, 3, 0.7, 0.1
    features = random_features(batch_size, num_outputs, 5, seed=9)
    labels = torch.tensor([0, 1, 0, 2, 2, 3]) if labelled else None
    row_groups = labels.tolist() if labelled else list(range(batch_size))
    vectors, groups, views = flatten(features, row_groups)

    def reference() -> Tensor:
        fg_excluded = fg_excluded_reference(vectors, groups, views, num_outputs, temperature)
        if not labelled:  # SelfCon-SU*: no SupCon-S term
            return alpha * fg_excluded
        backbone = [features[i, -1] for i in range(batch_size)]
        supcon_s = loop_supcon(backbone, row_groups, range(batch_size), temperature, 0.07)
        return supcon_s + alpha * fg_excluded

    assert_value_and_grad(
        lambda: SelfConLoss(temperature, alpha=alpha)(features, labels), reference, [features]
    )


@pytest.mark.parametrize("labelled", [True, False])
def test_selfcon_m_star_matches_loop(labelled: bool) -> None:
    num_images, num_outputs, alpha, temperature = 4, 3, 0.5, 0.1
    features = random_features(2 * num_images, num_outputs, 5, seed=10)
    labels = torch.tensor([0, 1, 1, 2]) if labelled else None
    image_groups = labels.tolist() if labelled else list(range(num_images))
    vectors, groups, views = flatten(features, image_groups * 2)

    def reference() -> Tensor:
        backbone = [features[i, -1] for i in range(2 * num_images)]  # both crops' backbone outputs
        supcon = loop_supcon(backbone, image_groups * 2, range(2 * num_images), temperature, 0.07)
        return supcon + alpha * fg_excluded_reference(vectors, groups, views, num_outputs, temperature)

    assert_value_and_grad(
        lambda: selfcon_loss(features, labels, alpha=alpha, multiview=True, temperature=temperature),
        reference,
        [features],
    )


def test_custom_backward_passes_gradcheck() -> None:
    features = random_features(4, 3, 3, seed=11)
    labels = torch.tensor([0, 1, 0, 1])
    assert torch.autograd.gradcheck(lambda f: supcon_loss(f, labels, temperature=0.3), (features,))
    assert torch.autograd.gradcheck(lambda f: selfcon_loss(f, alpha=1.0, temperature=0.3), (features,))


def test_backward_twice_with_retained_graph_and_input_untouched() -> None:
    features = random_features(6, 2, 4, seed=12)
    before = features.detach().clone()
    loss = supcon_loss(features, torch.tensor([0, 0, 1, 1, 2, 2]))
    loss.backward(retain_graph=True)
    first = features.grad.clone()
    loss.backward()
    assert torch.allclose(features.grad, 2 * first)
    assert torch.equal(features.detach(), before)


# ------------------------------------------------------------------------------------------ precision


@pytest.mark.parametrize("temperature", [0.05, 0.07, 0.1])
@pytest.mark.parametrize("variant", ["supcon", "supcon_s", "simclr", "selfcon_m_star"])
def test_bf16_autocast_is_finite_and_computed_in_float32(temperature: float, variant: str) -> None:
    generator = torch.Generator().manual_seed(13)
    batch_size, num_views = 16, 1 if variant == "supcon_s" else 3
    inputs = torch.randn(batch_size, num_views, 32, generator=generator)
    weight = torch.randn(32, 16, generator=generator).requires_grad_(True)
    labels = torch.randint(
        0, 4, (batch_size // 2 if variant == "selfcon_m_star" else batch_size,), generator=generator
    )

    def loss_fn(features: Tensor) -> Tensor:
        if variant == "simclr":
            return supcon_loss(features, temperature=temperature)
        if variant == "selfcon_m_star":
            return selfcon_loss(features, labels, alpha=1.0, multiview=True, temperature=temperature)
        return supcon_loss(features, labels, temperature=temperature)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        projections = inputs @ weight
        assert projections.dtype == torch.bfloat16
        features = F.normalize(projections, dim=-1)
        loss = loss_fn(features)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    (grad,) = torch.autograd.grad(loss, weight)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    # Same value as float32 math on the same bf16 features: nothing inside ran in bf16.
    expected = loss_fn(features.detach().float())
    assert torch.allclose(loss.detach(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_backward_inside_autocast_stays_float32(alpha: float) -> None:
    features = random_features(12, 3, 8, seed=14).detach().float().requires_grad_(True)
    labels = torch.tensor([0, 1, 2] * 4)
    (expected,) = torch.autograd.grad(selfcon_loss(features, labels, alpha=alpha, temperature=0.05), features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = selfcon_loss(features, labels, alpha=alpha, temperature=0.05)
        (grad,) = torch.autograd.grad(loss, features)
    assert torch.allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_half_features_give_float32_loss() -> None:
    features = random_features(8, 2, 16).detach().half()
    loss = SupConLoss(0.05)(features, torch.tensor([0, 1] * 4))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


# ---------------------------------------------------------------------------------------------- errors


def test_bad_inputs_raise_value_error() -> None:
    features = random_features(4, 2, 8).detach()
    with pytest.raises(ValueError, match=r"3-D .*got shape \(4, 8\)"):
        supcon_loss(features[:, 0])
    with pytest.raises(ValueError, match=r"3-D .*got shape \(4, 8\)"):
        selfcon_loss(features[:, 0])
    with pytest.raises(ValueError, match=r"labels must have shape \[4\].*got shape \(5,\)"):
        supcon_loss(features, torch.arange(5))
    with pytest.raises(ValueError, match=r"labels must have shape \[4\].*got shape \(4, 1\)"):
        SupConLoss()(features, torch.arange(4).unsqueeze(1))
    with pytest.raises(ValueError, match=r"sample_ids must have shape \[4\]"):
        supcon_loss(features, sample_ids=torch.arange(3))
    with pytest.raises(ValueError, match=r"single view .*\(4, 1, 8\).*no labels"):
        supcon_loss(features[:, :1])
    with pytest.raises(ValueError, match=r"single output .*no labels"):
        selfcon_loss(features[:, :1])
    with pytest.raises(ValueError, match="either labels or sample_ids"):
        supcon_loss(features, torch.arange(4), torch.arange(4))
    with pytest.raises(ValueError, match=r"labels must have shape \[2\].*multiview.*got shape \(4,\)"):
        selfcon_loss(features, torch.arange(4), multiview=True)
    with pytest.raises(ValueError, match=r"even number of rows\), got 3 rows"):
        selfcon_loss(features[:3], multiview=True)
    with pytest.raises(ValueError, match=r"alpha > 0 needs at least one exit.*\(4, 1, 8\)"):
        selfcon_loss(features[:, :1], torch.arange(4), alpha=0.5)
    with pytest.raises(ValueError, match=r"alpha must be a finite number >= 0, got -0\.1"):
        SelfConLoss(alpha=-0.1)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0, got -1"):
        selfcon_loss(features, alpha=-1)
    with pytest.raises(TypeError, match="floating-point"):
        supcon_loss(torch.ones(4, 2, 8, dtype=torch.long))


@pytest.mark.parametrize("value", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_temperature_raises_value_error(value: float) -> None:
    with pytest.raises(ValueError, match=rf"temperature must be a finite number > 0, got {value!r}"):
        SupConLoss(temperature=value)
    with pytest.raises(ValueError, match=rf"base_temperature must be a finite number > 0, got {value!r}"):
        SupConLoss(base_temperature=value)
    with pytest.raises(ValueError, match=rf"temperature must be a finite number > 0, got {value!r}"):
        SelfConLoss(temperature=value)
    with pytest.raises(ValueError, match=rf"temperature must be a finite number > 0, got {value!r}"):
        supcon_loss(random_features(2, 2, 3).detach(), temperature=value)


def test_modules_repr_and_have_no_state() -> None:
    assert "temperature=0.1, base_temperature=0.07" in repr(SupConLoss(0.1))
    assert "alpha=0.5, multiview=True" in repr(SelfConLoss(alpha=0.5, multiview=True))
    assert SupConLoss().state_dict() == {} and SelfConLoss().state_dict() == {}
