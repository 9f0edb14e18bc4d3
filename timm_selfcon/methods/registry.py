"""Recipe method names -> method classes (SelfCon, arXiv 2106.15499; MixCo, arXiv 2010.06300; baselines)."""
from __future__ import annotations

import inspect
from typing import Any

import torch.nn as nn

from ..errors import UserInputError
from .base import TrainingMethod
from .moco import MoCo, MoCoMixCo
from .simclr import SimCLR, SimCLRMixCo
from .supervised import CrossEntropy, SelfCon, SelfConM, SupCon, SupConS

__all__ = ["METHODS", "build_method", "method_defaults"]

METHODS: dict[str, type[TrainingMethod]] = {
    cls.name: cls
    for cls in (CrossEntropy, SupCon, SupConS, SelfCon, SelfConM, SimCLR, MoCo, SimCLRMixCo, MoCoMixCo)
}


def _method_class(name: str) -> type[TrainingMethod]:
    if name not in METHODS:
        raise UserInputError(f"unknown method {name!r}; expected one of {list(METHODS)}")
    return METHODS[name]


def method_defaults(name: str) -> dict[str, Any]:
    """The options of method ``name`` (constructor keyword arguments after ``model``) and their defaults."""
    parameters = list(inspect.signature(_method_class(name).__init__).parameters.values())[2:]  # self, model
    return {p.name: p.default for p in parameters}


def build_method(name: str, model: nn.Module, **options: Any) -> TrainingMethod:
    """Build the training method ``name`` around ``model`` (a timm model), e.g.

    ``build_method("moco_mixco", timm.create_model("mixco_resnet18_cifar", num_classes=0), queue_size=4096)``.

    Raises :class:`~timm_selfcon.errors.UserInputError` (a ``ValueError``) for an unknown name or option.
    """
    cls = _method_class(name)
    valid = method_defaults(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserInputError(f"method {name!r} got unknown option(s) {unknown}; valid options: {sorted(valid)}")
    return cls(model, **options)
