"""The shared exit builder (``build_exits``) and ``_create_*`` (``create_multi_exit_model``) of every family."""
from __future__ import annotations

import timm
import torch.nn as nn

import timm_selfcon  # noqa: F401  (registers the models)
from timm_selfcon.models.exits import FcExit, StageExit, build_exits, classifier_names_for

FEATURE_INFO = [dict(num_chs=c, reduction=r, module=f"layer{i}") for i, (c, r) in enumerate([(8, 1), (8, 1), (16, 2)])]


def stages_after(stage: int) -> nn.Sequential:
    """Two stages of two blocks each after any tap (enough to see ``small`` keep one block of each)."""
    return nn.Sequential(*[nn.Sequential(nn.Identity(), nn.Identity()) for _ in range(2)])


def test_fc_exits_map_the_tap_width_to_the_feature_width() -> None:
    exits = build_exits((0, 1, 2), "fc", FEATURE_INFO, 32, stages_after)
    assert [type(e) for e in exits] == [FcExit] * 3
    assert [(e.fc.in_features, e.fc.out_features) for e in exits] == [(8, 32), (8, 32), (16, 32)]


def test_same_and_small_exits_wrap_the_remaining_stages() -> None:
    same = build_exits((1,), "same", FEATURE_INFO, 32, stages_after)
    small = build_exits((1,), "small", FEATURE_INFO, 32, stages_after)
    assert isinstance(same[0], StageExit) and isinstance(small[0], StageExit)
    assert [len(stage) for stage in same[0].stages] == [2, 2]
    assert [len(stage) for stage in small[0].stages] == [1, 1]  # halve_blocks by default


def test_pool_norm_and_halve_factories_are_used_once_per_exit() -> None:
    calls = []

    def norm() -> nn.Module:
        calls.append("norm")
        return nn.LayerNorm(8)

    exits = build_exits((0, 1), "small", FEATURE_INFO, 32, stages_after, pool=lambda: "token", norm=norm,
                        halve=lambda rest: rest[:1])
    assert calls == ["norm", "norm"]
    assert all(e.pool.pool_type == "token" and isinstance(e.norm, nn.LayerNorm) and len(e.stages) == 1 for e in exits)
    assert exits[0].norm is not exits[1].norm


def test_classifier_names_for() -> None:
    assert classifier_names_for(0) == ("fc",)
    assert classifier_names_for(2, "head") == ("head", "exit_heads.0", "exit_heads.1")


def test_create_names_every_classifier_and_keeps_the_callers_overlay() -> None:
    model = timm.create_model("selfcon_resnet10_w16_cifar", exit_stages=(1, 3))
    assert tuple(model.pretrained_cfg["classifier"]) == ("fc", "exit_heads.0", "exit_heads.1")
    overlaid = timm.create_model("selfcon_wrn16_8_cifar", widen_factor=1,
                                 pretrained_cfg_overlay=dict(classifier="fc", mean=(0.5, 0.5, 0.5)))
    assert overlaid.pretrained_cfg["classifier"] == "fc"
    assert tuple(overlaid.pretrained_cfg["mean"]) == (0.5, 0.5, 0.5)
