"""SelfCon exits on any timm CNN that exposes stages: the generic path.

Paper: "Self-Contrastive Learning: Single-viewed Supervised Contrastive Framework using Sub-network",
Bae et al., AAAI 2023 (arXiv 2106.15499). The official code supports ResNet, WRN, VGG and one
EfficientNet; this module turns *any* timm CNN whose ``forward_features`` runs its children in
order (ResNets, ConvNeXt, EfficientNet, RegNet, ... the same assumption timm's ``FeatureListNet``
makes) into a multi-exit model registered as ``selfcon_timm``::

    timm.create_model("selfcon_timm", backbone="efficientnet_b0", exit_stages=(2,), sub_network="fc")

``exit_stages`` uses the backbone's ``feature_info`` numbering (default: the middle tap,
``(len(feature_info) - 1) // 2``). Sub-networks: ``fc`` (pool + Linear), ``same`` (the remaining
stages taken from a second, independently initialised backbone, so nothing is shared) and
``small`` (the same with half the blocks of each remaining stage). Because ``backbone`` is a model
kwarg, exports record it in ``config.json`` and load back with ``timm.create_model``.
"""

from typing import Any, ClassVar

import timm
import torch
import torch.nn as nn
from timm.models import generate_default_cfgs, register_model

from ..errors import UserInputError
from .exits import (
    MultiExitMixin,
    build_exits,
    classifier_names_for,
    create_multi_exit_model,
    validate_exit_stages,
    validate_sub_network,
)

__all__ = ["DEFAULT_BACKBONE", "SelfConTimmNet"]

DEFAULT_BACKBONE = "convnext_atto"
HEAD_MODULE_NAMES = ("global_pool", "head", "fc", "classifier", "head_drop", "fc_norm", "flatten", "pre_logits")


def _segment_names(backbone: nn.Module, num_taps: int | None = None) -> tuple[list[list[str]], list[str]]:
    """Split the backbone's flattened children at its ``feature_info`` taps.

    Returns ``segments`` (segment 0 ends at tap 0, segment i runs from after tap i-1 to tap i) and
    ``norm_names`` (modules after the last tap that belong to ``forward_features``).
    """
    taps = [info["module"] for info in backbone.feature_info][:num_taps]
    dotted_names = []
    for name, child in backbone.named_children():
        # a Sequential is opened only when taps point inside it (ConvNeXt ``stages.i``), as FeatureListNet does
        if isinstance(child, nn.Sequential) and any(tap.startswith(f"{name}.") for tap in taps):
            dotted_names += [f"{name}.{sub}" for sub, _ in child.named_children()]
        else:
            dotted_names.append(name)
    segments, start = [], 0
    for tap in taps:
        if tap not in dotted_names:
            raise UserInputError(
                f"cannot split {type(backbone).__name__} at feature tap {tap!r}: the generic SelfCon path needs a "
                "backbone whose feature taps are its (possibly Sequential-nested) children, as timm's FeatureListNet"
            )
        end = dotted_names.index(tap) + 1
        segments.append(dotted_names[start:end])
        start = end
    norm_names = []
    for dotted in dotted_names[start:]:
        if dotted.split(".")[0] in HEAD_MODULE_NAMES:
            break
        norm_names.append(dotted)
    return segments, norm_names


class SelfConTimmNet(MultiExitMixin, nn.Module):
    """A timm CNN (``self.backbone``) with SelfCon exits attached at its ``feature_info`` taps."""

    __jit_unused_properties__: ClassVar[list[str]] = ["backbone_classifier_name"]

    def __init__(
            self,
            backbone: str = DEFAULT_BACKBONE,
            num_classes: int = 1000,
            in_chans: int = 3,
            global_pool: str = "avg",
            exit_stages: Any = None,
            sub_network: str = "fc",
            backbone_kwargs: dict[str, Any] | None = None,
            device=None,
            dtype=None,
    ) -> None:
        """
        Args:
            backbone: a timm model name (its architecture, no pretrained weights are loaded here).
            num_classes: classes of every head; 0 removes the classifiers.
            in_chans: input channels.
            global_pool: backbone pooling type.
            exit_stages: ``feature_info`` indices followed by an exit (not the first or last tap).
            sub_network: ``same``, ``small`` or ``fc``.
            backbone_kwargs: extra kwargs for ``timm.create_model(backbone, ...)``.
        """
        super().__init__()
        if not isinstance(backbone, str) or not timm.is_model(backbone):
            raise UserInputError(f"unknown timm backbone {backbone!r}; expected a name from timm.list_models()")
        dd = dict(device=device, dtype=dtype)
        self.backbone_name = backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.backbone = timm.create_model(
            backbone, num_classes=num_classes, in_chans=in_chans, global_pool=global_pool,
            **self.backbone_kwargs, **dd)
        self.in_chans = in_chans
        self.grad_checkpointing = False
        self.global_pool_type = global_pool
        self.feature_info = [dict(info) for info in self.backbone.feature_info]
        for info in self.feature_info:
            info["module"] = f"backbone.{info['module']}"
        self._segments, self._norm_names = _segment_names(self.backbone)
        self.num_stages = len(self._segments) - 1
        if exit_stages is None:
            exit_stages = (self.num_stages // 2,)
        self.exit_stages = validate_exit_stages(exit_stages, range(1, self.num_stages), f"selfcon_timm({backbone})")
        self.sub_network = validate_sub_network(sub_network)
        self.num_features = self.backbone.num_features
        self.head_hidden_size = self.backbone.head_hidden_size

        self.exits = build_exits(self.exit_stages, self.sub_network, self.feature_info, self.num_features,
                                 lambda stage: self._fresh_remaining_stages(stage, dd), **dd)
        self._init_exit_heads(**dd)

    def _fresh_remaining_stages(self, stage: int, dd: dict[str, Any]) -> nn.Sequential:
        """The stages after tap ``stage`` and the final norm, from an independently initialised backbone."""
        fresh = timm.create_model(self.backbone_name, num_classes=0, in_chans=self.in_chans,
                                  **self.backbone_kwargs, **dd)
        names = [name for segment in self._segments[stage + 1:] for name in segment] + self._norm_names
        return nn.Sequential(*[fresh.get_submodule(name) for name in names])

    @property
    def num_classes(self) -> int:
        return self.backbone.num_classes

    @property
    def backbone_classifier_name(self) -> str:
        name = self.backbone.pretrained_cfg.get("classifier") or "fc"
        return f"backbone.{name}"

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        inner = self.backbone.group_matcher(coarse=coarse)
        matcher = {}
        for key, value in inner.items():
            if isinstance(value, str):
                matcher[key] = "|".join(f"^backbone\\.{part.lstrip('^')}" for part in value.split("|"))
            else:
                matcher[key] = [(f"^backbone\\.{pattern.lstrip('^')}", *rest) for pattern, *rest in value]
        matcher["exits"] = r"^exit(?:s|_heads)\.(\d+)"
        return matcher

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        self.backbone.set_grad_checkpointing(enable)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        inner = getattr(self.backbone, "no_weight_decay", None)
        return {f"backbone.{name}" for name in inner()} if inner is not None else set()

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        """The backbone's classifier (exit classifiers are ``exit_heads``)."""
        return self.backbone.get_classifier()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifiers with ``num_classes`` outputs on the backbone and on every exit."""
        self.backbone.reset_classifier(num_classes, global_pool)
        if global_pool is not None:
            self.global_pool_type = global_pool
        self.head_hidden_size = self.backbone.head_hidden_size
        self._reset_exit_heads()

    def _ensemble_active(self) -> bool:
        return len(self.exit_stages) > 0 and self.num_classes > 0 and self.global_pool_type != ""

    @torch.jit.ignore
    def _forward_with_exit_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # runs in Python under TorchScript, with self a scripted module: only submodules and attributes here
        def run(name: str, x: torch.Tensor) -> torch.Tensor:
            module = self.backbone
            for part in name.split("."):  # not get_submodule: under TorchScript these are C++ ScriptModules
                module = getattr(module, part)
            return module(x) if isinstance(module, nn.Module) else module.forward(x)

        exit_maps = []
        for index, names in enumerate(self._segments):
            for name in names:
                x = run(name, x)
            if index in self.exit_stages:
                exit_maps.append(x)
        for name in self._norm_names:
            x = run(name, x)
        return x, exit_maps

    def _run_names(self, names: list[str], x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = self.backbone.get_submodule(name)(x)
        return x

    def _forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_names(self._segments[0], x)

    def _forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self._run_names(self._segments[index], x)

    def _forward_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_names(self._norm_names, x)

    @torch.jit.ignore
    def prune_intermediate_layers(
            self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True,
    ) -> list[int]:
        """The backbone's pruning; the exits go with the head or with any pruned stage."""
        num_taps = len(self.feature_info)
        take_indices = self.backbone.prune_intermediate_layers(indices, prune_norm=prune_norm, prune_head=prune_head)
        if prune_head or max(take_indices) < num_taps - 1:
            self._drop_exits()
        self._segments, self._norm_names = _segment_names(self.backbone, max(take_indices) + 1)
        self.num_stages = len(self._segments) - 1
        self.num_features = self.backbone.num_features
        self.head_hidden_size = self.backbone.head_hidden_size
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's unpooled features."""
        return self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The backbone's head: pooled ``[B, num_features]`` or logits ``[B, num_classes]``."""
        return self.backbone.forward_head(x, pre_logits=pre_logits)


def backbone_pretrained_cfg(backbone: str, num_exits: int) -> dict[str, Any]:
    """The backbone's preprocessing cfg with head / first-conv names moved under ``backbone.``."""
    cfg = timm.get_pretrained_cfg(backbone)
    cfg = cfg.to_dict() if cfg is not None else {}
    keep = ("input_size", "min_input_size", "fixed_input_size", "interpolation", "crop_pct", "crop_mode",
            "mean", "std", "pool_size", "num_classes")
    out = {key: cfg[key] for key in keep if key in cfg}
    out["classifier"] = classifier_names_for(num_exits, f"backbone.{cfg.get('classifier') or 'fc'}")
    out["first_conv"] = f"backbone.{cfg.get('first_conv') or 'conv1'}"
    return out


def _create_selfcon_timm(variant: str, pretrained: bool = False, **kwargs: Any) -> SelfConTimmNet:
    backbone = kwargs.get("backbone", DEFAULT_BACKBONE)
    if not isinstance(backbone, str) or not timm.is_model(backbone):
        raise UserInputError(f"unknown timm backbone {backbone!r}; expected a name from timm.list_models()")
    exit_stages = kwargs.get("exit_stages")
    # the count only names the classifiers; a value of the wrong type is refused by the class (validate_exit_stages)
    num_exits = len(exit_stages) if isinstance(exit_stages, (list, tuple)) else 1
    cfg = backbone_pretrained_cfg(backbone, num_exits)
    feature_info = timm.create_model(backbone, device="meta", **kwargs.get("backbone_kwargs") or {}).feature_info
    if len({info["reduction"] for info in feature_info}) == 1:
        # a ViT-style backbone: every tap is a token block of one stride, not a stage; the builder would also
        # pass it img_size, which this class does not take
        raise UserInputError(
            f"selfcon_timm takes timm CNNs whose feature taps are stages of growing stride (ResNet, ConvNeXt, "
            f"EfficientNet, RegNet, ...); {backbone!r} is a transformer with {len(feature_info)} equal-stride "
            f"blocks. For Vision Transformers use this package's ViT models: "
            f"{', '.join(timm.list_models('selfcon_vit_*'))}")
    num_taps = len(feature_info)
    return create_multi_exit_model(
        SelfConTimmNet, variant, pretrained, num_exits=num_exits, backbone_classifier=cfg["classifier"][0], cfg_overlay=cfg,
        feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(num_taps))), **kwargs,
    )


default_cfgs = generate_default_cfgs({
    "selfcon_timm.untrained": dict(
        paper_ids="arXiv:2106.15499", paper_name="Self-Contrastive Learning (generic timm backbone)",
        license="apache-2.0", **backbone_pretrained_cfg(DEFAULT_BACKBONE, 1)),
})


@register_model
def selfcon_timm(pretrained: bool = False, **kwargs: Any) -> SelfConTimmNet:
    """SelfCon exits on any timm CNN: ``backbone=`` names it (default ``convnext_atto``), ``fc`` exit at the middle tap."""
    return _create_selfcon_timm("selfcon_timm", pretrained, **kwargs)
