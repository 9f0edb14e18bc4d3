"""Training methods of SelfCon (arXiv 2106.15499), MixCo (arXiv 2010.06300) and their baselines, one process.

Each method is checked against its formula rebuilt by hand from the method's own modules: a forward twice in
train mode gives the same outputs (BatchNorm uses batch statistics), so the hand-made loss must match.
"""
from __future__ import annotations

import warnings

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import timm_selfcon  # noqa: F401  (registers the models)
from timm_selfcon.errors import UserInputError
from timm_selfcon.losses import MixCoLoss, SelfConLoss, SupConLoss
from timm_selfcon.methods import (
    METHODS,
    MoCo,
    MoCoMixCo,
    SimCLRMixCo,
    TrainingMethod,
    all_gather_no_grad,
    all_gather_with_grad,
    build_method,
    get_rank,
    get_world_size,
    is_distributed,
    method_defaults,
    mix_pairs,
)

BATCH = 8
SIZE = 16
LAYERS = (1, 1, 1, 1)
RECIPE_NAMES = ("ce", "supcon", "supcon_s", "selfcon", "selfcon_m", "simclr", "moco", "simclr_mixco", "moco_mixco", "byol")



def make_model(name: str, num_classes: int = 0) -> nn.Module:
    """The registered CIFAR ResNet-18 models, one block per stage to keep the tests fast."""
    torch.manual_seed(0)
    if name.startswith("selfcon"):
        return timm.create_model("selfcon_resnet18_cifar", num_classes=num_classes, exit_stages=(2,), layers=LAYERS)
    return timm.create_model("mixco_resnet18_cifar", num_classes=num_classes, layers=LAYERS)


def make_method(name: str, **options) -> TrainingMethod:
    if name.startswith("moco"):
        options.setdefault("queue_size", 32)
    return build_method(name, make_model(name, num_classes=10 if name == "ce" else 0), **options)


def make_batch(views: int, batch: int = BATCH, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, views, 3, SIZE, SIZE, generator=generator)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])[:batch]
    return images, labels


def param_grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def assert_same_grads(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


# ---- every method: one step ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(METHODS))
def test_one_training_step(name: str) -> None:
    method = make_method(name)
    assert method.name == name and type(method) is METHODS[name]
    views, labels = make_batch(method.views_required)
    loss, logs = method(views, labels)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert logs and all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in logs.values())
    loss.backward()
    encoder_grads = [p.grad for p in method.encoder.parameters() if p.grad is not None]
    assert encoder_grads and any(g.abs().sum() > 0 for g in encoder_grads)
    assert all(torch.isfinite(g).all() for g in encoder_grads)
    method.after_optimizer_step(1, 10)


def test_registry_names_and_interface() -> None:
    assert set(METHODS) == set(RECIPE_NAMES), "a new method: add its name here and its declaration below"
    expected = {  # (views_required, needs_labels)
        "ce": (1, True), "supcon": (2, True), "supcon_s": (1, True), "selfcon": (1, True), "selfcon_m": (2, True),
        "simclr": (2, False), "moco": (2, False), "simclr_mixco": (2, False), "moco_mixco": (2, False), "byol": (2, False),
    }
    for name, (views, needs_labels) in expected.items():
        model = make_model(name, num_classes=10 if name == "ce" else 0)
        method = build_method(name, model, **({"queue_size": 32} if name.startswith("moco") else {}))
        assert (method.views_required, method.needs_labels) == (views, needs_labels), name
        assert method.encoder is model  # the registered timm model, for eval and export
    assert method_defaults("moco_mixco")["mix_temperature"] == 0.05
    assert method_defaults("simclr_mixco")["mix_temperature"] == 0.5
    assert method_defaults("moco")["temperature"] == 0.2
    assert method_defaults("simclr")["temperature"] == 0.5


def test_the_constructor_takes_the_options_and_checks_them_with_the_methods_model() -> None:
    method = build_method("moco", make_model("moco"), queue_size=32, momentum=0.99)
    assert method.options.model_dump() == {**method_defaults("moco"), "queue_size": 32, "momentum": 0.99}
    assert (method.momentum, method.queue.shape[0]) == (0.99, 32)
    with pytest.raises(UserInputError, match=r"momentum: Input should be less than or equal to 1 \(got 2\)"):
        build_method("moco", make_model("moco"), queue_size=32, momentum=2)


# ---- supervised -------------------------------------------------------------------------------------------
def test_ce_is_cross_entropy_on_backbone_logits() -> None:
    method = make_method("ce")
    views, labels = make_batch(1)
    loss, logs = method(views, labels)
    logits = method.encoder(views[:, 0])
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    assert float(logs["acc1"]) == pytest.approx((logits.argmax(1) == labels).float().mean().item())


def test_ce_on_multi_exit_model_warns_that_exits_are_untrained() -> None:
    with pytest.warns(UserWarning, match="1 exit"):
        build_method("ce", make_model("selfcon", num_classes=10))


def test_selfcon_loss_is_supcon_over_forward_projections() -> None:
    method = make_method("selfcon", temperature=0.1, base_temperature=0.07)
    views, labels = make_batch(1)
    loss, _ = method(views, labels)
    features = method.projector.forward_projections(views[:, 0])
    assert features.shape == (BATCH, 2, 128)  # one exit + backbone
    torch.testing.assert_close(loss, SupConLoss(0.1, 0.07)(features, labels))


def test_selfcon_unsupervised_ignores_labels() -> None:
    method = make_method("selfcon", supervised=False)
    assert not method.needs_labels
    views, labels = make_batch(1)
    loss, _ = method(views, labels)
    features = method.projector.forward_projections(views[:, 0])
    torch.testing.assert_close(loss, SelfConLoss(0.1, 0.07)(features, None))
    torch.testing.assert_close(method(views, None)[0], loss)


def test_selfcon_m_concatenates_crops_on_the_batch_axis() -> None:
    method = make_method("selfcon_m")
    views, labels = make_batch(2)
    loss, _ = method(views, labels)
    features = method.projector.forward_projections(torch.cat([views[:, 0], views[:, 1]]))  # [2B, K+1, D]
    torch.testing.assert_close(loss, SupConLoss(0.1, 0.07)(features, torch.cat([labels, labels])))


def test_selfcon_alpha_selects_fg_excluded_variant() -> None:
    views, labels = make_batch(1)
    method = make_method("selfcon", alpha=0.5)
    loss, _ = method(views, labels)
    features = method.projector.forward_projections(views[:, 0])
    torch.testing.assert_close(loss, SelfConLoss(0.1, 0.07, alpha=0.5)(features, labels))
    assert not torch.allclose(loss, SupConLoss(0.1, 0.07)(features, labels))


def test_supcon_stacks_two_crops_and_supcon_s_one() -> None:
    views, labels = make_batch(2)
    method = make_method("supcon")
    loss, _ = method(views, labels)
    z = method.projector(torch.cat([views[:, 0], views[:, 1]]))
    torch.testing.assert_close(loss, SupConLoss(0.1, 0.07)(torch.stack([z[:BATCH], z[BATCH:]], dim=1), labels))

    single = make_method("supcon_s")
    loss, _ = single(views[:, :1], labels)
    torch.testing.assert_close(loss, SupConLoss(0.1, 0.07)(single.projector(views[:, 0]).unsqueeze(1), labels))


# ---- SimCLR -----------------------------------------------------------------------------------------------
def test_simclr_is_nt_xent() -> None:
    method = make_method("simclr")
    views, _ = make_batch(2)
    loss, _ = method(views)
    z_i, z_j = method.projector(views[:, 0]), method.projector(views[:, 1])
    # NT-Xent by hand: 2B anchors, positive = the other view, denominator = every other embedding
    z = torch.cat([z_i, z_j])
    sim = (z @ z.T / 0.5).fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(BATCH, 2 * BATCH), torch.arange(BATCH)])
    torch.testing.assert_close(loss, F.cross_entropy(sim, targets))


def test_simclr_mixco_four_passes_and_loss_with_undetached_targets() -> None:
    method = make_method("simclr_mixco", generator=torch.Generator().manual_seed(7), mix_weight=2.0)
    assert isinstance(method, SimCLRMixCo)
    views, _ = make_batch(2)
    sizes: list[int] = []
    handle = method.encoder.conv1.register_forward_hook(lambda mod, args, out: sizes.append(args[0].shape[0]))
    loss, logs = method(views)
    handle.remove()
    assert sizes == [BATCH, BATCH, BATCH // 2, BATCH // 2]  # view i, view j, mixed i, mixed j: separate passes
    loss.backward()
    method_grads = param_grads(method)
    method.zero_grad()

    generator = torch.Generator().manual_seed(7)
    mixed_i, lam_i = mix_pairs(views[:, 0], generator)
    mixed_j, lam_j = mix_pairs(views[:, 1], generator)
    z_i, z_j = method.projector(views[:, 0]), method.projector(views[:, 1])
    base = SupConLoss(0.5, 0.5)(torch.stack([z_i, z_j], dim=1))
    mixco = MixCoLoss(0.5)
    mix = 0.5 * (mixco(method.projector(mixed_i), z_j, lam_i) + mixco(method.projector(mixed_j), z_i, lam_j))
    expected = base + 2.0 * mix
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logs["loss_mix"], mix.detach())
    expected.backward()
    assert_same_grads(method_grads, param_grads(method))

    # the same loss with detached targets has other gradients, so the comparison above can fail
    method.zero_grad()
    z_i, z_j = method.projector(views[:, 0]), method.projector(views[:, 1])
    base = SupConLoss(0.5, 0.5)(torch.stack([z_i, z_j], dim=1))
    detached_mix = 0.5 * (mixco(method.projector(mixed_i), z_j.detach(), lam_i)
                          + mixco(method.projector(mixed_j), z_i.detach(), lam_j))
    (base + 2.0 * detached_mix).backward()
    head_grad = param_grads(method)["projector.head.fc2.weight"]
    assert not torch.allclose(head_grad, method_grads["projector.head.fc2.weight"], atol=1e-6)


# ---- MoCo -------------------------------------------------------------------------------------------------
def split_bn_keys(method: MoCo, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([method.key_projector(chunk) for chunk in images.chunk(method.num_splits)])


def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / temperature


def test_moco_uses_the_pre_step_queue_then_enqueues() -> None:
    method = make_method("moco", queue_size=32)
    assert method.resolved_key_bn() == "split"  # one process
    views, _ = make_batch(2)
    queue_before = method.queue.clone()
    assert int(method.queue_ptr) == 0
    loss, logs = method(views)

    q = method.projector(views[:, 0])
    k = split_bn_keys(method, views[:, 1])
    logits = moco_logits(q, k, queue_before, 0.2)
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.zeros(BATCH, dtype=torch.long)))
    assert float(logs["acc1"]) == pytest.approx((logits.argmax(1) == 0).float().mean().item())
    # with the post-step queue the loss would differ (the keys themselves would be negatives)
    post = F.cross_entropy(moco_logits(q, k, method.queue, 0.2), torch.zeros(BATCH, dtype=torch.long))
    assert not torch.allclose(loss, post)

    torch.testing.assert_close(method.queue[:BATCH], k)
    torch.testing.assert_close(method.queue[BATCH:], queue_before[BATCH:])
    assert int(method.queue_ptr) == BATCH
    method(make_batch(2, seed=2)[0])
    assert int(method.queue_ptr) == 2 * BATCH
    torch.testing.assert_close(method.queue[:BATCH], k)  # the first keys are still there
    for _ in range(2):
        method(views)
    assert int(method.queue_ptr) == 0  # 4 * 8 = 32: wrapped around


def test_moco_queue_is_a_buffer_and_key_encoder_is_frozen() -> None:
    method = make_method("moco")
    state = method.state_dict()
    assert "queue" in state and "queue_ptr" in state
    assert state["queue"].shape == (32, 128)
    torch.testing.assert_close(state["queue"].norm(dim=1), torch.ones(32))
    assert all(not p.requires_grad for p in method.key_projector.parameters())
    trainable = {id(p) for p in method.trainable_parameters()}
    assert not trainable & {id(p) for p in method.key_projector.parameters()}
    assert {id(p) for p in method.projector.parameters()} <= trainable
    for key_param, query_param in zip(method.key_projector.parameters(), method.projector.parameters()):
        torch.testing.assert_close(key_param, query_param)  # initialised as a copy


def test_moco_momentum_update_formula() -> None:
    method = make_method("moco", momentum=0.9)
    with torch.no_grad():
        for p in method.projector.parameters():
            p.add_(torch.randn_like(p))
    before_keys = [p.clone() for p in method.key_projector.parameters()]
    queries = [p.clone() for p in method.projector.parameters()]
    method.after_optimizer_step(1, 10)
    for after, before, query in zip(method.key_projector.parameters(), before_keys, queries):
        torch.testing.assert_close(after, 0.9 * before + 0.1 * query)
    for query, now in zip(queries, method.projector.parameters()):
        torch.testing.assert_close(now, query)  # the query encoder is untouched


def test_split_bn_key_depends_only_on_its_chunk() -> None:
    method = make_method("moco", num_splits=2)
    images = make_batch(1)[0][:, 0]
    keys, _ = method.compute_keys(images)
    half = BATCH // 2
    changed = images.clone()
    changed[half:] = torch.randn_like(changed[half:]) * 3.0
    keys_changed, _ = method.compute_keys(changed)
    torch.testing.assert_close(keys_changed[:half], keys[:half])  # other chunk changed, these keys did not
    with torch.no_grad():
        torch.testing.assert_close(keys[:half], method.key_projector(images[:half]))
        whole_batch = method.key_projector(images)
    assert not torch.allclose(keys, whole_batch, atol=1e-4)  # splitting really changes the BN statistics

    plain = make_method("moco", key_bn="none")
    plain_keys, _ = plain.compute_keys(images)
    plain_changed, _ = plain.compute_keys(changed)
    assert not torch.allclose(plain_changed[:half], plain_keys[:half], atol=1e-4)  # one BN batch: they depend


def test_moco_mixco_one_query_pass_and_loss_by_hand() -> None:
    method = make_method("moco_mixco", generator=torch.Generator().manual_seed(3), mix_weight=0.5)
    assert isinstance(method, MoCoMixCo)
    views, _ = make_batch(2)
    query_sizes: list[int] = []
    key_sizes: list[int] = []
    hooks = [
        method.projector.model.conv1.register_forward_hook(lambda mod, args, out: query_sizes.append(len(args[0]))),
        method.key_projector.model.conv1.register_forward_hook(lambda mod, args, out: key_sizes.append(len(args[0]))),
    ]
    queue_before = method.queue.clone()
    loss, logs = method(views)
    for hook in hooks:
        hook.remove()
    assert query_sizes == [BATCH + BATCH // 2]  # clean + mixed in ONE pass (shared BN batch)
    assert key_sizes == [BATCH // 2, BATCH // 2]  # split-BN over the clean key crops only

    mixed, lam = mix_pairs(views[:, 0], torch.Generator().manual_seed(3))
    embeddings = method.projector(torch.cat([views[:, 0], mixed]))
    q, q_mix = embeddings[:BATCH], embeddings[BATCH:]
    k = split_bn_keys(method, views[:, 1])
    moco = F.cross_entropy(moco_logits(q, k, queue_before, 0.2), torch.zeros(BATCH, dtype=torch.long))
    mix = MixCoLoss(0.05)(q_mix, k, lam, queue_before)
    torch.testing.assert_close(logs["loss_moco"], moco.detach())
    torch.testing.assert_close(logs["loss_mix"], mix.detach())
    torch.testing.assert_close(loss, moco + 0.5 * mix)
    torch.testing.assert_close(method.queue[:BATCH], k)  # only clean keys are enqueued
    assert set(logs) == {"loss_moco", "loss_mix", "acc1"}


# ---- mixing -----------------------------------------------------------------------------------------------
def test_mix_pairs_formula() -> None:
    images = torch.randn(6, 3, 4, 4)
    mixed, lam = mix_pairs(images, torch.Generator().manual_seed(0))
    assert mixed.shape == (3, 3, 4, 4) and lam.shape == (3,)
    assert ((lam >= 0) & (lam <= 1)).all()
    expected = lam.view(3, 1, 1, 1) * images[:3] + (1 - lam.view(3, 1, 1, 1)) * images[3:]
    torch.testing.assert_close(mixed, expected)
    _, lam_again = mix_pairs(images, torch.Generator().manual_seed(0))
    torch.testing.assert_close(lam_again, lam)
    assert len(set(lam.tolist())) == 3  # one λ per pair


def test_mix_pairs_lambda_is_uniform() -> None:
    _, lam = mix_pairs(torch.zeros(20000, 1), torch.Generator().manual_seed(1))
    assert abs(lam.mean().item() - 0.5) < 0.01 and abs(lam.var().item() - 1 / 12) < 0.005


def test_mix_pairs_rejects_odd_batch() -> None:
    with pytest.raises(ValueError, match=r"even per-process batch.*N=7"):
        mix_pairs(torch.randn(7, 3, 4, 4))


# ---- distributed helpers in one process -------------------------------------------------------------------
def test_gather_is_identity_without_process_group() -> None:
    assert not is_distributed() and get_rank() == 0 and get_world_size() == 1
    x = torch.randn(4, 3, requires_grad=True)
    assert all_gather_with_grad(x) is x
    gathered = all_gather_no_grad(x)
    assert not gathered.requires_grad
    torch.testing.assert_close(gathered, x.detach())


# ---- validation -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["moco_mixco", "simclr_mixco"])
def test_odd_local_batch_for_mixco(name: str) -> None:
    method = make_method(name, **({"queue_size": 35} if name == "moco_mixco" else {}))
    views, _ = make_batch(2, batch=7)
    with pytest.raises(ValueError, match=r"even per-process batch.*N=7"):
        method(views)


def test_queue_size_must_be_a_multiple_of_the_global_batch() -> None:
    method = make_method("moco", queue_size=20)
    with pytest.raises(ValueError, match="queue_size 20 must be a multiple of the global batch 8"):
        method(make_batch(2)[0])
    assert int(method.queue_ptr) == 0


@pytest.mark.parametrize("name", ["moco_mixco", "simclr_mixco"])
def test_negative_mix_weight(name: str) -> None:
    with pytest.raises(ValueError, match=r"mix_weight: Input should be greater than or equal to 0 \(got -0\.5\)"):
        make_method(name, mix_weight=-0.5)


def test_unknown_method_name_lists_valid_ones() -> None:
    expected = r"unknown method 'not_a_method'; expected one of \['ce', 'supcon'.*'moco_mixco'.*\]"
    with pytest.raises(ValueError, match=expected):
        build_method("not_a_method", make_model("moco"))


def test_unknown_option_is_a_user_input_error() -> None:
    with pytest.raises(UserInputError, match=r"method 'simclr' got unknown option\(s\) \['queue_size'\]"):
        build_method("simclr", make_model("simclr"), queue_size=8)


@pytest.mark.parametrize(("name", "given"), [("supcon", 1), ("selfcon", 2), ("moco", 1), ("simclr", 3), ("ce", 2)])
def test_wrong_number_of_views(name: str, given: int) -> None:
    method = make_method(name)
    views, labels = make_batch(given) if given < 3 else (torch.randn(BATCH, 3, 3, SIZE, SIZE), make_batch(1)[1])
    needed = method.views_required
    with pytest.raises(ValueError, match=rf"method '{name}' needs .* \[B, {needed}, C, H, W\], got shape \(8, {given},"):
        method(views, labels)


def test_views_must_be_5d_and_labels_present() -> None:
    method = make_method("selfcon")
    views, labels = make_batch(1)
    with pytest.raises(ValueError, match=r"got shape \(8, 3, 16, 16\)"):
        method(views[:, 0], labels)
    with pytest.raises(ValueError, match="needs labels"):
        method(views, None)
    with pytest.raises(ValueError, match=r"labels must have shape \[B\] = \[8\]"):
        method(views, labels[:4])
    with pytest.raises(TypeError, match="integer"):
        method(views, labels.float())


def test_other_option_checks() -> None:
    with pytest.raises(ValueError, match="key_bn"):
        make_method("moco", key_bn="sync")
    with pytest.raises(ValueError, match="momentum"):
        make_method("moco", momentum=1.5)
    with pytest.raises(ValueError, match="temperature"):
        make_method("selfcon", temperature=0)
    with pytest.raises(ValueError, match="num_classes=0"):
        build_method("ce", make_model("ce", num_classes=0))
    method = make_method("moco", num_splits=3, queue_size=48)
    with pytest.raises(ValueError, match=r"local batch \(8\) to be a multiple of num_splits \(3\)"):
        method(make_batch(2)[0])


def test_baselines_warn_about_untrained_exits() -> None:
    with pytest.warns(UserWarning, match="exit_stages=\\(\\)"):
        build_method("supcon", make_model("selfcon"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_method("selfcon", make_model("selfcon"))
        build_method("supcon", make_model("moco"))


def test_every_method_declares_what_the_engine_and_the_card_need() -> None:
    from timm_selfcon.methods import method_options

    for name, cls in METHODS.items():
        assert cls.name == name and cls.paper and cls.description and cls.augmentation, name
        assert cls.views_required in (1, 2) and cls.per_process_batch_multiple >= 1
        options = method_options(name).model_fields
        assert cls.Options is method_options(name) and all(f.description for f in options.values()), name
        # declared in the method's own file (a method without options keeps the empty base model)
        assert cls.Options.__module__ == cls.__module__ or not options, name
    # the engine's three special cases are declarations, not names
    assert [n for n, c in METHODS.items() if c.trains_classifier] == ["ce"]
    assert [n for n, c in METHODS.items() if c.allows_gradient_accumulation] == ["ce"]
    assert sorted(n for n, c in METHODS.items() if c.per_process_batch_multiple == 2) == ["moco_mixco", "simclr_mixco"]


def test_a_new_method_registers_with_the_decorator_and_is_refused_when_incomplete() -> None:
    from timm_selfcon.methods import register_method
    from timm_selfcon.methods.base import TrainingMethod

    class Incomplete(TrainingMethod):
        name = "incomplete"

    with pytest.raises(TypeError, match="must set paper, description, augmentation"):
        register_method(Incomplete)

    class SecondDefault(TrainingMethod):  # an option's default kept outside its Options model: a second default
        name, paper, description, augmentation = "wrong_key", "p", "d", "supcon"

        def __init__(self, model, temperature: float = 0.1) -> None:
            super().__init__(model)

    with pytest.raises(TypeError, match=r"constructor takes \['temperature'\], which SecondDefault.Options does not"):
        register_method(SecondDefault)
    with pytest.raises(ValueError, match="registered twice"):
        register_method(type("Again", (METHODS["ce"],), {}))
    assert "incomplete" not in METHODS and "wrong_key" not in METHODS


@pytest.mark.parametrize("name", ["ce", "supcon", "moco", "simclr"])
def test_a_backbone_only_method_freezes_the_exits_it_leaves_without_gradient(name: str) -> None:
    model = timm.create_model("selfcon_resnet10_w16_cifar", num_classes=10 if name == "ce" else 0)
    assert model.num_exits == 1
    with pytest.warns(UserWarning, match="exit\\(s\\) are frozen"):
        method = build_method(name, model, **({"queue_size": 8} if name == "moco" else {}))
    exits = {id(p) for part in (model.exits, model.exit_heads) for p in part.parameters()}
    assert exits and not any(p.requires_grad for part in (model.exits, model.exit_heads) for p in part.parameters())
    assert not exits & {id(p) for p in method.trainable_parameters()}
    assert {id(p) for p in method.trainable_parameters()} >= {id(p) for n, p in model.named_parameters()
                                                              if not n.startswith(("exits.", "exit_heads."))}
