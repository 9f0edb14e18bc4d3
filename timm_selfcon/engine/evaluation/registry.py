"""Protocols register themselves, as methods do with ``@register_method``.

A protocol is a module of this package whose ``run(inputs, report)`` is decorated with :func:`register_protocol`.
The declaration says everything the evaluation, the export and the model card need, so none of them names a
protocol: what it trains (classifiers or nothing), what it needs of the model (``early_exit``: exits), its card
text (and, for the papers' protocol, the texts for a run with other settings), how a run differs from the papers'
protocol, the shape of its results and its place in ``protocol=all`` and in ``export``'s default choice.

The registry imports every module of this package the first time it is asked (:func:`protocols`), so a new
protocol is one new module. The names are also declared, without any import, in :mod:`.names` for the torch-free
``--help`` and the light parts of ``hub`` (a test keeps the two in step).
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ...errors import UserInputError
from .names import ALL

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from ..evaluate import EvalConfig
    from .features import EvalInputs
    from .report import EvalReport

__all__ = ["ALL", "Protocol", "ResultShape", "all_protocols", "classifier_protocols", "data_deviations",
           "protocol", "protocol_choices", "protocols", "register_protocol"]

#: A protocol's ``results``: per head, the probe's epochs (``{"last": {...}, "best_val": ..., "best_test": ...}``),
#: or per head, top-1 per neighbour count (``{"k20": 41.2, "k200": 40.8}``).
ResultShape = Literal["epochs per head", "top-1 per k"]

ProtocolRun = Callable[["EvalInputs", "EvalReport"], "dict[str, torch.Tensor] | None"]


def data_deviations(config: EvalConfig) -> list[str]:
    """How the rows the classifiers train on differ from the papers' (the whole training split)."""
    found = []
    if config.max_train_samples:
        found.append(f"classifiers trained on the first {config.max_train_samples} training rows only "
                     f"(max_train_samples={config.max_train_samples}; the papers': the whole training split)")
    if config.val_fraction:
        found.append(f"{config.val_fraction:.0%} of the training split held out for validation "
                     f"(val_fraction={config.val_fraction:g}): the classifiers train on the rest")
    return found


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol's declaration (see the module docstring)."""

    name: str
    title: str  # how a sentence names it ("kNN")
    run: ProtocolRun  # fills the report; returns the trained classifiers' state dict, or None (trains nothing)
    card_text: str  # the model card's paragraph on this protocol
    trains_classifiers: bool  # writes classifiers.safetensors, which ``export`` can include
    result_shape: ResultShape
    all_rank: int  # its place in ``protocol=all`` (ascending: the fast ones first)
    export_rank: int | None = None  # its place in ``export``'s default choice (protocols that train classifiers)
    needs_exits: bool = False  # applies only to a multi-exit model
    #: the papers' protocol when run with the papers' settings: ``deviations`` then says how a run differs from them
    papers_protocol_possible: bool = False
    #: how every run differs from the papers' protocol (None: the report's ``hyperparameters["deviation"]``)
    standing_deviation: str | None = None
    deviations: Callable[[EvalConfig, EvalReport], list[str]] | None = None  # None: :meth:`standing_deviations`
    card_text_not_papers: str = ""  # papers_protocol_possible: a run with other settings than the papers'
    card_text_unrecorded: str = ""  # papers_protocol_possible: a report that does not record its settings

    def applies_to(self, encoder: nn.Module) -> bool:
        """Whether this protocol can run on ``encoder`` (``early_exit`` needs exits)."""
        return not self.needs_exits or bool(getattr(encoder, "num_exits", 0))

    def deviations_from_papers(self, config: EvalConfig, report: EvalReport) -> list[str]:
        """How this run differs from the papers' linear protocol (empty only for the papers' protocol itself)."""
        if self.deviations is not None:
            return self.deviations(config, report)
        return self.standing_deviations(config, report)

    def standing_deviations(self, config: EvalConfig, report: EvalReport) -> list[str]:
        standing = self.standing_deviation or (report.hyperparameters or {}).get("deviation")
        return [*([standing] if standing else []), *data_deviations(config)]

    def card_description(self, papers_protocol: bool | None) -> str:
        """The card's paragraph; the papers' protocol is called so only when its report says it ran with the papers'
        settings (``papers_protocol`` true; None: a report written before the settings were recorded)."""
        if self.papers_protocol_possible and not papers_protocol:
            return self.card_text_unrecorded if papers_protocol is None else self.card_text_not_papers
        return self.card_text


#: protocol name -> declaration, filled by :func:`register_protocol`; read it through :func:`protocols`
_PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(name: str, *, title: str | None = None, **declaration) -> Callable[[ProtocolRun], ProtocolRun]:
    """Decorator of a protocol module's ``run(inputs, report)``: register it as ``name`` (see :class:`Protocol`)."""
    if name == ALL:
        raise ValueError(f"{ALL!r} is not a protocol name: it means every protocol that applies")

    def register(run: ProtocolRun) -> ProtocolRun:
        declared = Protocol(name=name, title=title or name, run=run, **declaration)
        if declared.trains_classifiers != (declared.export_rank is not None):
            raise TypeError(f"protocol {name!r}: export_rank is given exactly when it trains classifiers")
        if name in _PROTOCOLS and _PROTOCOLS[name].run is not run:
            raise ValueError(f"protocol name {name!r} is registered twice")
        _PROTOCOLS[name] = declared
        return run

    return register


@functools.cache
def _import_protocol_modules() -> None:
    """Import every module of this package once: each protocol module registers itself on import."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")


def protocols() -> Mapping[str, Protocol]:
    """Every registered protocol by name (the protocol modules imported first)."""
    _import_protocol_modules()
    return _PROTOCOLS


def all_protocols() -> tuple[str, ...]:
    """Every registered protocol, in the order ``protocol=all`` runs them."""
    registered = protocols()
    return tuple(sorted(registered, key=lambda name: registered[name].all_rank))


def classifier_protocols() -> tuple[str, ...]:
    """The protocols that train classifiers, in the order ``export`` picks one by default."""
    trained = [p for p in protocols().values() if p.trains_classifiers]
    return tuple(p.name for p in sorted(trained, key=lambda p: p.export_rank))


def protocol_choices() -> tuple[str, ...]:
    """The ``protocol=`` values: every registered protocol, then ``all``."""
    return (*all_protocols(), ALL)


def protocol(name: str) -> Protocol:
    """The protocol registered as ``name``, or a UserInputError listing the registered names."""
    if name not in protocols():
        raise UserInputError(f"unknown protocol {name!r}; expected one of {list(all_protocols())}")
    return _PROTOCOLS[name]
