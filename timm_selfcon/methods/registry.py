"""Methods register themselves, as timm models do with ``@register_model``.

A method is a :class:`~timm_selfcon.methods.base.TrainingMethod` subclass in its own module of this package,
decorated with :func:`register_method`. Its class attributes declare everything the engine, the config and the
model card need (name, paper, views, labels, augmentation, batch constraints, recipe keys, card text), so the
engine never names a method and adding one is one new file plus a recipe (this package imports every module in
it, see ``methods/__init__.py``).
"""
from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch.nn as nn

from ..errors import UserInputError
from .base import TrainingMethod

__all__ = ["METHODS", "MethodOption", "build_method", "method_class", "method_defaults", "method_options",
           "options_from_recipe", "register_method"]

#: Recipe method name -> method class, filled by :func:`register_method` in import order.
METHODS: dict[str, type[TrainingMethod]] = {}

_REQUIRED = ("name", "paper", "description", "augmentation")


def register_method(cls: type[TrainingMethod]) -> type[TrainingMethod]:
    """Class decorator: check the method's declaration and add it to :data:`METHODS` under ``cls.name``."""
    missing = [attr for attr in _REQUIRED if not getattr(cls, attr, "")]
    if missing:
        raise TypeError(f"method class {cls.__name__} must set {', '.join(missing)} to be registered")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} is registered twice ({METHODS[cls.name].__name__}, {cls.__name__})")
    if cls.views_required not in (1, 2):
        raise ValueError(f"{cls.__name__}.views_required must be 1 or 2, got {cls.views_required!r}")
    options = method_options_of(cls)
    unknown = sorted(arg for arg in cls.recipe_keys.values() if arg not in options)
    if unknown:
        raise TypeError(f"{cls.__name__}.recipe_keys map to {unknown}, which its constructor does not take")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[TrainingMethod]:
    """The class registered as ``name``, or a UserInputError listing the registered names."""
    if name not in METHODS:
        raise UserInputError(f"unknown method {name!r}; expected one of {list(METHODS)}")
    return METHODS[name]


@dataclass(frozen=True)
class MethodOption:
    """One constructor option of a method: its type annotation (resolved) and default."""

    annotation: Any
    default: Any


@functools.cache
def method_options_of(cls: type[TrainingMethod]) -> Mapping[str, MethodOption]:
    """The constructor options of ``cls`` (keyword arguments after ``model``) with types and defaults (read once per
    class: every config validation and ``build_method`` asks)."""
    hints = typing.get_type_hints(cls.__init__)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, model
    return MappingProxyType({p.name: MethodOption(hints.get(p.name, Any), p.default) for p in parameters})


def method_options(name: str) -> Mapping[str, MethodOption]:
    """The options method ``name`` takes (``method_kwargs`` keys and the targets of its ``recipe_keys``)."""
    return method_options_of(method_class(name))


def method_defaults(name: str) -> dict[str, Any]:
    """The options of method ``name`` and their defaults."""
    return {key: option.default for key, option in method_options(name).items()}


def options_from_recipe(name: str, recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor options of method ``name`` from a resolved recipe (a mapping of recipe keys).

    The method's ``recipe_keys`` map top-level recipe keys (``temperature``, ``projection_dim``...) to its
    arguments; ``method_kwargs`` entries are passed as they are and win.
    """
    cls = method_class(name)
    options = {argument: recipe[key] for key, argument in cls.recipe_keys.items() if key in recipe}
    return {**options, **dict(recipe.get("method_kwargs") or {})}


def build_method(name: str, model: nn.Module, **options: Any) -> TrainingMethod:
    """Build the training method ``name`` around ``model`` (a timm model), e.g.

    ``build_method("moco_mixco", timm.create_model("mixco_resnet18_cifar", num_classes=0), queue_size=4096)``.

    Raises :class:`~timm_selfcon.errors.UserInputError` (a ``ValueError``) for an unknown name or option.
    """
    cls = method_class(name)
    valid = method_options_of(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserInputError(f"method {name!r} got unknown option(s) {unknown}; valid options: {sorted(valid)}")
    return cls(model, **options)
