"""Methods register themselves, as timm models do with ``@register_model``.

A method is a :class:`~timm_selfcon.methods.base.TrainingMethod` subclass in its own module of this package,
decorated with :func:`register_method`. Its class attributes declare everything the engine, the config and the
model card need (name, paper, views, labels, augmentation, batch constraints, its options model ``Options``, card
text), so the engine never names a method and adding one is one new file plus a recipe (this package imports every
module in it, see ``methods/__init__.py``).
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from ..errors import UserInputError
from .base import MethodOptions, TrainingMethod

__all__ = ["METHODS", "build_method", "method_class", "method_defaults", "method_options", "options_from_recipe",
           "register_method"]

#: Recipe method name -> method class, filled by :func:`register_method` in import order.
METHODS: dict[str, type[TrainingMethod]] = {}

_REQUIRED = ("name", "paper", "description", "augmentation")
#: constructor arguments that are not options (not settable from a recipe)
_NOT_OPTIONS = ("self", "model", "generator")


def register_method(cls: type[TrainingMethod]) -> type[TrainingMethod]:
    """Class decorator: check the method's declaration and add it to :data:`METHODS` under ``cls.name``."""
    missing = [attr for attr in _REQUIRED if not getattr(cls, attr, "")]
    if missing:
        raise TypeError(f"method class {cls.__name__} must set {', '.join(missing)} to be registered")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} is registered twice ({METHODS[cls.name].__name__}, {cls.__name__})")
    if cls.views_required not in (1, 2):
        raise ValueError(f"{cls.__name__}.views_required must be 1 or 2, got {cls.views_required!r}")
    if not (isinstance(cls.Options, type) and issubclass(cls.Options, MethodOptions)):
        raise TypeError(f"{cls.__name__}.Options must be a MethodOptions subclass, got {cls.Options!r}")
    # an option's one default is its Options field's: a constructor parameter outside Options would be a second one
    parameters = inspect.signature(cls.__init__).parameters.values()
    outside = sorted(p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
                     and p.name not in _NOT_OPTIONS and p.name not in cls.Options.model_fields)
    if outside:
        raise TypeError(f"{cls.__name__}'s constructor takes {outside}, which {cls.__name__}.Options does not declare "
                        "(declare each option once, in its Options model, and take them as **options)")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[TrainingMethod]:
    """The class registered as ``name``, or a UserInputError listing the registered names."""
    if name not in METHODS:
        raise UserInputError(f"unknown method {name!r}; expected one of {list(METHODS)}")
    return METHODS[name]


def method_options(name: str) -> type[MethodOptions]:
    """The options model of method ``name`` (its ``method_kwargs``: fields with types, ranges and defaults)."""
    return method_class(name).Options


def method_defaults(name: str) -> dict[str, Any]:
    """The options of method ``name`` and their defaults."""
    return method_options(name)().model_dump()


def options_from_recipe(name: str, recipe: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of method ``name`` with the value a resolved recipe (a mapping of recipe keys) gives it: its
    ``method_kwargs``, completed with the method's defaults."""
    return method_options(name)(**dict(recipe.get("method_kwargs") or {})).model_dump()


def build_method(name: str, model: nn.Module, **options: Any) -> TrainingMethod:
    """Build the training method ``name`` around ``model`` (a timm model), e.g.

    ``build_method("moco_mixco", timm.create_model("mixco_resnet18_cifar", num_classes=0), queue_size=4096)``.

    Raises :class:`~timm_selfcon.errors.UserInputError` (a ``ValueError``) for an unknown name or option.
    """
    cls = method_class(name)
    valid = [*cls.Options.model_fields, *(p for p in inspect.signature(cls.__init__).parameters if p == "generator")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserInputError(f"method {name!r} got unknown option(s) {unknown}; valid options: {sorted(valid)}")
    return cls(model, **options)
