"""The multi-exit API (SelfCon, Bae et al., AAAI 2023, arXiv 2106.15499) across every registered family.

Covers ``forward_exits`` shapes and order, the ensemble (``forward``, ``forward_ensemble``), early exit,
gradient routing through a non-shared sub-network, ``plain_encoder``, ``reset_classifier`` and the
classifier list in ``pretrained_cfg``.
"""

from __future__ import annotations

import functools

import pytest
import timm
import torch
import torch.nn as nn
from torch import Tensor

import timm_selfcon

ATOL = 1e-5
RTOL = 1e-4
SUB_NETWORKS = ("fc", "same", "small")
CNN_SIZE = 16  # CIFAR CNNs take any size; 16 px keeps property tests fast (each family also runs at 32)
VIT_SMALL = dict(depth=4)  # a 4-block selfcon_vit_tiny_patch4_32: same code path, a third of the cost


def make(name: str, **kwargs) -> nn.Module:
    """A fresh registered model in eval mode with a fixed seed."""
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs).eval()


@functools.cache
def _cached(name: str, frozen_kwargs: tuple) -> nn.Module:
    return make(name, **dict(frozen_kwargs))


def shared(name: str, **kwargs) -> nn.Module:
    """A model shared between tests that do not modify it (eval mode, no_grad use only)."""
    return _cached(name, tuple(sorted(kwargs.items())))


def images(batch: int, size: int, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator)


# (model name, kwargs, input size): each family at its native size at least once, several exit layouts,
# every sub-network.
EXIT_CASES = [
    ("selfcon_resnet18_cifar", dict(exit_stages=(1, 2, 3), sub_network="fc"), 32),
    *[("selfcon_resnet18_cifar", dict(exit_stages=(1, 2, 3), sub_network=s), CNN_SIZE)
      for s in ("same", "small")],
    ("selfcon_resnet50_cifar", dict(exit_stages=(1, 3), sub_network="fc"), CNN_SIZE),
    ("selfcon_resnet18", dict(exit_stages=(2,), sub_network="same"), 224),
    ("selfcon_wrn16_8_cifar", dict(exit_stages=(1, 2), sub_network="fc"), 32),
    *[("selfcon_wrn16_8_cifar", dict(exit_stages=(1, 2), sub_network=s), CNN_SIZE)
      for s in ("same", "small")],
    *[("selfcon_vit_tiny_patch4_32", dict(exit_stages=(0, 1, 2), sub_network=s, **VIT_SMALL), 32)
      for s in SUB_NETWORKS],
    ("selfcon_vit_tiny_patch16_224", dict(), 224),
]


def case_id(name: str, kwargs: dict) -> str:
    return "-".join([name, *(f"{k}={v}" for k, v in kwargs.items())]).replace(" ", "")


def expected_exit_stages(name: str, kwargs: dict) -> tuple[int, ...]:
    if "exit_stages" in kwargs:
        return tuple(kwargs["exit_stages"])
    return (5,) if name.startswith("selfcon_vit_") else (2,)


@pytest.mark.parametrize(("name", "kwargs", "size"), EXIT_CASES,
                         ids=[case_id(n, k) for n, k, _ in EXIT_CASES])
def test_forward_exits_shapes_and_order(name: str, kwargs: dict, size: int) -> None:
    model = shared(name, num_classes=10, **kwargs)
    assert model.exit_stages == expected_exit_stages(name, kwargs)
    # record, per exit, the map it receives, and the output of the module each exit stage names
    exit_inputs: dict[int, Tensor] = {}
    stage_outputs: dict[int, Tensor] = {}
    hooks = [
        exit_module.register_forward_hook(lambda _m, inp, _out, k=k: exit_inputs.__setitem__(k, inp[0]))
        for k, exit_module in enumerate(model.exits)
    ]
    for stage in model.exit_stages:
        module = model.get_submodule(model.feature_info[stage]["module"])
        hooks.append(
            module.register_forward_hook(lambda _m, _i, out, s=stage: stage_outputs.__setitem__(s, out))
        )
    batch = 2
    x = images(batch, size)
    try:
        with torch.no_grad():
            feats = model.forward_exits(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(feats) == len(model.exit_stages) + 1 == model.num_exits + 1
    for feat in feats:
        assert feat.shape == (batch, model.num_features)
    # depth order: exit k is fed the output of stage exit_stages[k]
    for k, stage in enumerate(model.exit_stages):
        assert exit_inputs[k] is stage_outputs[stage]
        if exit_inputs[k].ndim == 4:
            assert exit_inputs[k].shape[1] == model.feature_info[stage]["num_chs"]
    # backbone last: the backbone's pooled pre-logits feature
    with torch.no_grad():
        backbone_feat = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(feats[-1], backbone_feat, atol=ATOL, rtol=RTOL)
    # exits are different networks: their features differ from the backbone's and from each other
    for k, feat in enumerate(feats[:-1]):
        assert not torch.allclose(feat, feats[-1], atol=1e-3)
        assert not torch.allclose(feat, feats[k + 1], atol=1e-3)


ENSEMBLE_CASES = [
    ("selfcon_resnet18_cifar", dict(exit_stages=(1, 2, 3), sub_network="fc"), CNN_SIZE),
    ("selfcon_resnet18_cifar", dict(exit_stages=(2,), sub_network="small"), CNN_SIZE),
    ("selfcon_wrn16_8_cifar", dict(exit_stages=(1, 2), sub_network="fc"), CNN_SIZE),
    ("selfcon_vit_tiny_patch4_32", dict(exit_stages=(0, 2), sub_network="same", **VIT_SMALL), 32),
]


@pytest.mark.parametrize(("name", "kwargs", "size"), ENSEMBLE_CASES,
                         ids=[case_id(n, k) for n, k, _ in ENSEMBLE_CASES])
def test_ensemble_is_mean_of_heads(name: str, kwargs: dict, size: int) -> None:
    model = shared(name, num_classes=7, **kwargs)
    x = images(3, size)
    with torch.no_grad():
        head_logits = model.forward_exit_logits(x)
        out = model(x)
        ensemble = model.forward_ensemble(x)
        ensemble_probs = model.forward_ensemble(x, average="probs")
        backbone_logits = model.forward_head(model.forward_features(x))
    assert len(head_logits) == model.num_exits + 1
    assert all(lg.shape == (3, 7) for lg in head_logits)
    mean_logits = torch.stack(head_logits).mean(0)
    mean_probs = torch.stack([lg.softmax(-1) for lg in head_logits]).mean(0)
    assert out.shape == (3, 7)
    torch.testing.assert_close(out, mean_logits, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ensemble, mean_logits, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ensemble_probs, mean_probs, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ensemble_probs.sum(-1), torch.ones(3), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(backbone_logits, head_logits[-1], atol=ATOL, rtol=RTOL)
    # the ensemble is not just the backbone: the exit heads contribute
    assert not torch.allclose(out, backbone_logits, atol=1e-4)
    torch.testing.assert_close(
        timm_selfcon.ensemble_from_logits(head_logits, average="probs"), mean_probs, atol=ATOL, rtol=RTOL
    )


def test_forward_ensemble_rejects_unknown_average() -> None:
    model = shared("selfcon_resnet18_cifar", num_classes=7, exit_stages=(2,), sub_network="small")
    with pytest.raises(ValueError, match="geometric"):
        model.forward_ensemble(images(1, CNN_SIZE), average="geometric")


@functools.cache
def three_exit_resnet() -> nn.Module:
    """ResNet-18 CIFAR with fc exits after layer1..layer3 and sharpened heads (a spread of confidences)."""
    model = make("selfcon_resnet18_cifar", num_classes=10, exit_stages=(1, 2, 3), sub_network="fc")
    with torch.no_grad():
        for head in [*model.exit_heads, model.fc]:
            head.weight.mul_(40.0)
    return model


def test_early_exit_threshold_zero_stops_at_first_exit() -> None:
    model = three_exit_resnet()
    x = images(4, CNN_SIZE)
    with torch.no_grad():
        logits, exit_index = model.forward_early_exit(x, threshold=0.0)
        first = model.forward_exit_logits(x)[0]
    assert exit_index.dtype == torch.long
    assert exit_index.tolist() == [0] * 4
    torch.testing.assert_close(logits, first, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(("name", "kwargs", "size"), [
    ("selfcon_resnet18_cifar", dict(exit_stages=(1, 2, 3), sub_network="fc"), CNN_SIZE),
    ("selfcon_vit_tiny_patch4_32", dict(exit_stages=(0, 1), sub_network="small", **VIT_SMALL), 32),
], ids=["resnet18_cifar", "vit_tiny_patch4_32"])
def test_early_exit_threshold_above_one_is_full_model(name: str, kwargs: dict, size: int) -> None:
    model = shared(name, num_classes=10, **kwargs)
    x = images(3, size)
    with torch.no_grad():
        logits, exit_index = model.forward_early_exit(x, threshold=1.5)
        full = model(x)
    assert exit_index.tolist() == [model.num_exits] * 3
    torch.testing.assert_close(logits, full, atol=ATOL, rtol=RTOL)


def test_early_exit_intermediate_threshold_matches_hand_computation() -> None:
    model = three_exit_resnet()
    x = images(12, CNN_SIZE, seed=3)
    with torch.no_grad():
        head_logits = model.forward_exit_logits(x)
    exit_confidences = torch.stack([lg.softmax(-1).amax(-1) for lg in head_logits[:-1]])  # [num_exits, B]
    # a threshold in the widest gap among the middle confidences of the first exit: float noise cannot flip it
    ordered = exit_confidences[0].sort().values
    gaps = ordered[1:] - ordered[:-1]
    middle = slice(len(gaps) // 4, 3 * len(gaps) // 4 + 1)
    pick = middle.start + int(gaps[middle].argmax())
    threshold = float((ordered[pick] + ordered[pick + 1]) / 2)
    assert float((exit_confidences - threshold).abs().min()) > 1e-4

    full = torch.stack(head_logits).mean(0)
    expected_index, expected_logits = [], []
    for i in range(x.shape[0]):
        passed = [k for k in range(model.num_exits) if exit_confidences[k, i] >= threshold]
        expected_index.append(passed[0] if passed else model.num_exits)
        expected_logits.append(head_logits[passed[0]][i] if passed else full[i])
    assert len(set(expected_index)) >= 2, f"threshold {threshold} gives no mix: {expected_index}"

    with torch.no_grad():
        logits, exit_index = model.forward_early_exit(x, threshold=threshold)
    assert exit_index.tolist() == expected_index
    torch.testing.assert_close(logits, torch.stack(expected_logits), atol=ATOL, rtol=RTOL)


def storages(module: nn.Module) -> set[int]:
    return {p.data_ptr() for p in module.parameters()}


@pytest.mark.parametrize(("name", "kwargs"), [
    ("selfcon_resnet18_cifar", dict(exit_stages=(2,), sub_network="same")),
    ("selfcon_resnet18_cifar", dict(exit_stages=(1,), sub_network="small")),
    ("selfcon_wrn16_8_cifar", dict(exit_stages=(1,), sub_network="same")),
    ("selfcon_vit_tiny_patch4_32", dict(exit_stages=(1,), sub_network="same", **VIT_SMALL)),
], ids=["resnet-same", "resnet-small", "wrn-same", "vit-same"])
def test_sub_network_shares_no_parameter_with_backbone(name: str, kwargs: dict) -> None:
    model = shared(name, num_classes=10, **kwargs)
    exit_ptrs = storages(model.exits)
    backbone_ptrs = {
        p.data_ptr() for n, p in model.named_parameters() if not n.startswith(("exits.", "exit_heads."))
    }
    assert exit_ptrs and backbone_ptrs
    assert exit_ptrs.isdisjoint(backbone_ptrs)
    assert storages(model.exit_heads).isdisjoint(backbone_ptrs | exit_ptrs)
    # a `same` copy has the shapes of the backbone's remaining stages but its own values
    if kwargs["sub_network"] == "same" and not name.startswith("selfcon_vit_"):
        copy_of_last = model.exits[0].stages[-1]
        last_stage = model.get_submodule(model.feature_info[-1]["module"])
        copy_shapes = [p.shape for p in copy_of_last.parameters()]
        assert copy_shapes == [p.shape for p in last_stage.parameters()]
        assert not all(torch.equal(a, b) for a, b in zip(copy_of_last.parameters(), last_stage.parameters()))


@pytest.mark.parametrize("sub_network", ["same", "fc"])
def test_exit_gradient_reaches_stem_but_not_later_stages(sub_network: str) -> None:
    model = make("selfcon_resnet18_cifar", num_classes=0, exit_stages=(2,), sub_network=sub_network).train()
    feats = model.forward_exits(images(2, CNN_SIZE))
    feats[0].pow(2).sum().backward()  # a loss on the exit's feature only
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0
    assert model.layer2[0].conv1.weight.grad.abs().sum() > 0
    for p in model.exits.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    for stage in (model.layer3, model.layer4):
        for p in stage.parameters():
            assert p.grad is None or not p.grad.any()


def test_backbone_gradient_does_not_reach_exit() -> None:
    model = make("selfcon_resnet18_cifar", num_classes=0, exit_stages=(2,), sub_network="small").train()
    feats = model.forward_exits(images(2, CNN_SIZE))
    feats[-1].pow(2).sum().backward()
    assert model.layer4[1].conv2.weight.grad.abs().sum() > 0
    for p in model.exits.parameters():
        assert p.grad is None or not p.grad.any()


@pytest.mark.parametrize(("name", "kwargs", "size"), [
    ("selfcon_resnet18_cifar", dict(exit_stages=(1, 2), sub_network="same"), CNN_SIZE),
    ("selfcon_vit_tiny_patch4_32", dict(exit_stages=(1,), sub_network="fc", **VIT_SMALL), 32),
], ids=["resnet", "vit"])
def test_grad_checkpointing_gives_same_exits_and_gradients(name: str, kwargs: dict, size: int) -> None:
    model = make(name, num_classes=0, **kwargs).train()
    x = images(2, size)
    plain_feats = model.forward_exits(x)
    sum(f.pow(2).sum() for f in plain_feats).backward()
    plain_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.set_grad_checkpointing(True)
    ckpt_feats = model.forward_exits(x)
    sum(f.pow(2).sum() for f in ckpt_feats).backward()
    for plain, ckpt in zip(plain_feats, ckpt_feats):
        torch.testing.assert_close(ckpt, plain, atol=1e-5, rtol=1e-4)
    assert plain_grads
    for param_name, grad in plain_grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[param_name].grad, grad, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(("name", "kwargs", "size"), [
    ("selfcon_resnet18_cifar", dict(exit_stages=(1, 2), sub_network="same"), CNN_SIZE),
    ("selfcon_wrn16_8_cifar", dict(exit_stages=(2,), sub_network="fc"), CNN_SIZE),
    ("selfcon_vit_tiny_patch4_32", dict(exit_stages=(2,), sub_network="fc", **VIT_SMALL), 32),
], ids=["resnet", "wrn", "vit"])
def test_plain_encoder_keeps_backbone(name: str, kwargs: dict, size: int) -> None:
    model = shared(name, num_classes=10, **kwargs)
    plain = model.plain_encoder().eval()
    assert plain.exit_stages == () and plain.num_exits == 0
    assert len(plain.exits) == 0 and len(plain.exit_heads) == 0
    assert model.num_exits == len(kwargs["exit_stages"]), "plain_encoder must not modify the original"
    full_state, plain_state = model.state_dict(), plain.state_dict()
    assert set(plain_state) == {k for k in full_state if not k.startswith(("exits.", "exit_heads."))}
    for key, value in plain_state.items():
        assert torch.equal(value, full_state[key]), key
    assert storages(plain).isdisjoint(storages(model)), "plain_encoder must be a copy"
    x = images(2, size)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model.forward_exit_logits(x)[-1], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(("name", "exit_stages", "size"), [
    ("selfcon_resnet18_cifar", (1, 2), CNN_SIZE),
    ("selfcon_wrn16_8_cifar", (1, 2), CNN_SIZE),
    ("selfcon_vit_tiny_patch4_32", (0, 1, 2), 32),
], ids=["resnet", "wrn", "vit"])
def test_reset_classifier_covers_every_head(name: str, exit_stages: tuple[int, ...], size: int) -> None:
    extra = VIT_SMALL if name.startswith("selfcon_vit_") else {}
    model = make(name, num_classes=10, exit_stages=exit_stages, sub_network="fc", **extra)
    model.reset_classifier(5)
    assert model.num_classes == 5
    assert [head.out_features for head in model.exit_heads] == [5] * len(exit_stages)
    x = images(2, size)
    with torch.no_grad():
        logits = model.forward_exit_logits(x)
        out = model(x)
    assert [lg.shape for lg in logits] == [torch.Size([2, 5])] * (len(exit_stages) + 1)
    assert out.shape == (2, 5)

    model.reset_classifier(0)
    assert all(isinstance(head, nn.Identity) for head in model.exit_heads)
    with torch.no_grad():
        pooled = model(x)
        feats = model.forward_exits(x)
    assert pooled.shape == (2, model.num_features)
    torch.testing.assert_close(pooled, feats[-1], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(("name", "size"), [
    ("selfcon_resnet18_cifar", CNN_SIZE),
    ("selfcon_wrn16_8_cifar", CNN_SIZE),
    ("selfcon_vit_tiny_patch4_32", 32),
])
def test_num_classes_zero_forward_is_backbone_feature(name: str, size: int) -> None:
    extra = VIT_SMALL if name.startswith("selfcon_vit_") else {}
    model = shared(name, num_classes=0, **extra)
    assert model.num_exits == 1
    x = images(2, size)
    with torch.no_grad():
        out = model(x)
        feats = model.forward_exits(x)
    assert out.shape == (2, model.num_features)
    torch.testing.assert_close(out, feats[-1], atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="num_classes=0"):
        model.forward_ensemble(x)


@pytest.mark.parametrize(("name", "exit_stages", "backbone"), [
    ("selfcon_resnet18_cifar", (1, 2, 3), "fc"),
    ("selfcon_resnet18_cifar", (), "fc"),
    ("selfcon_wrn16_8_cifar", (1, 2), "fc"),
    ("selfcon_vit_tiny_patch4_32", (0, 2), "head"),
])
def test_pretrained_cfg_lists_every_classifier(
    name: str, exit_stages: tuple[int, ...], backbone: str
) -> None:
    model = timm.create_model(name, exit_stages=exit_stages, sub_network="fc", device="meta")
    expected = (backbone, *[f"exit_heads.{i}" for i in range(len(exit_stages))])
    assert tuple(model.pretrained_cfg["classifier"]) == expected
    assert model.classifier_names() == expected
    state = model.state_dict()
    for classifier in expected:
        assert f"{classifier}.weight" in state and f"{classifier}.bias" in state


@pytest.mark.parametrize(("name", "backbone"), [
    ("selfcon_resnet18_cifar", "fc"), ("selfcon_vit_tiny_patch4_32", "head"),
])
def test_plain_encoder_pretrained_cfg_lists_only_backbone_classifier(name: str, backbone: str) -> None:
    model = timm.create_model(name, exit_stages=(1, 2), device="meta")
    plain = model.plain_encoder()
    assert plain.classifier_names() == (backbone,)
    state = plain.state_dict()
    for classifier in plain.pretrained_cfg["classifier"]:
        assert f"{classifier}.weight" in state, f"stale pretrained_cfg classifier {classifier!r}"
