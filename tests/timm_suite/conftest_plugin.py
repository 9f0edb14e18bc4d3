"""conftest for running timm's own ``tests/test_models.py`` against timm-selfcon's models only.

``run_timm_suite.py`` copies this file, as ``conftest.py``, next to the ``test_models.py`` it takes
from the sdist of the installed timm version. pytest imports a conftest before the test modules of
its folder, so the ``timm.list_models`` / ``timm.list_pretrained`` replaced here are the ones that
``test_models.py`` binds with ``from timm import list_models, list_pretrained`` at import.

What changes, and nothing else:

- every listing is restricted to this package's timm modules (``module=`` is forced to them, found
  in timm's registry, so a new model module is picked up without edits here); the other arguments
  (``filter``, ``exclude_filters``, ``pretrained``, ``name_matches_cfg``, ``include_tags``) keep
  timm's semantics. This includes the ``forward_intermediates`` tests, which timm lists by
  ``module=FEAT_INTER_FILTERS`` (timm's own module names).
- timm routes transformer models to its non-standard tests by name (``NON_STD_FILTERS`` holds ``vit_*``);
  this package's ViTs are named ``selfcon_vit_*`` like its other families, so ``filter`` / ``exclude_filters``
  patterns are matched against their timm-style name too (``selfcon_vit_tiny_patch4_32`` as
  ``vit_tiny_patch4_32``).
- ``TIMM_SELFCON_SUITE_MODELS`` (comma-separated model names or fnmatch patterns; unset or empty:
  every model of this package) narrows the listing further, e.g. to one model per family.
- tests not parametrized by one of this package's models (timm's regression tests that name
  timm's own models, e.g. ``test_gcvit_batch_consistency``) are deselected: they test timm, not us.

timm's markers are declared so that ``-m`` selections do not warn.
"""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable

import pytest
import timm
import timm.models
from timm.models import _registry

import timm_selfcon

PACKAGE = timm_selfcon.__name__
MODELS_ENV = "TIMM_SELFCON_SUITE_MODELS"

TIMM_MARKERS = {
    "base": "timm: model-independent and base tests",
    "cfg": "timm: config / API contract tests (meta device)",
    "cfg_nonstd": "timm: config tests of non-standard (transformer-like) models",
    "torchscript": "timm: torch.jit.script forward",
    "features": "timm: features_only / forward_intermediates / pruning",
    "fxforward": "timm: torch.fx traced forward",
    "fxbackward": "timm: torch.fx traced backward",
    "forward": "timm: eager forward",
    "backward": "timm: eager backward",
}

_timm_list_models = _registry.list_models


def package_models() -> set[str]:
    """Names of every model registered by this package's modules."""
    return {
        name for name, entrypoint in _registry._model_entrypoints.items()
        if entrypoint.__module__ == PACKAGE or entrypoint.__module__.startswith(PACKAGE + ".")
    }


def package_modules() -> list[str]:
    """timm's registry module names (last part of the defining module) of this package's models."""
    return sorted({_registry._model_to_module[name] for name in package_models()})


def selected_patterns() -> list[str]:
    """The model names / patterns of ``TIMM_SELFCON_SUITE_MODELS``; empty: all of this package's models."""
    return [p.strip() for p in os.environ.get(MODELS_ENV, "").split(",") if p.strip()]


def arch_name(model_name: str) -> str:
    """``arch.tag`` -> ``arch`` (listings with ``include_tags=True`` give tagged names)."""
    return model_name.split(".", 1)[0]


def is_selected(model_name: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(arch_name(model_name), p) for p in patterns)


TRANSFORMER_PREFIX = "selfcon_vit_"


def timm_style_names(model_name: str) -> set[str]:
    """The names timm's filters see for ``model_name``: itself, and for a ViT of ours also ``vit_...``."""
    if model_name.startswith(TRANSFORMER_PREFIX):
        return {model_name, model_name.removeprefix("selfcon_")}
    return {model_name}


def _patterns(value: str | Iterable[str]) -> list[str]:
    return [p for p in ([value] if isinstance(value, str) else list(value)) if p]


def _matches(model_name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for name in timm_style_names(model_name) for p in patterns)


def list_models(
        filter: str | Iterable[str] = "",
        module: str | Iterable[str] = "",
        pretrained: bool = False,
        exclude_filters: str | Iterable[str] = "",
        name_matches_cfg: bool = False,
        include_tags: bool | None = None,
) -> list[str]:
    """timm's ``list_models`` over this package's modules only (``module`` is replaced by them)."""
    del module  # timm's tests pass timm's module names; ours replace them
    names = _timm_list_models(module=package_modules(), pretrained=pretrained, name_matches_cfg=name_matches_cfg,
                              include_tags=include_tags)
    filters, excludes, patterns = _patterns(filter), _patterns(exclude_filters), selected_patterns()
    return [name for name in names if (not filters or _matches(name, filters)) and not _matches(name, excludes)
            and is_selected(name, patterns)]


def list_pretrained(filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = "") -> list[str]:
    """timm's ``list_pretrained`` (tagged names of models with weights) over this package's models."""
    return list_models(filter=filter, pretrained=True, exclude_filters=exclude_filters, include_tags=True)


for _namespace in (timm, timm.models):
    _namespace.list_models = list_models
    _namespace.list_pretrained = list_pretrained


def pytest_configure(config: pytest.Config) -> None:
    for marker, description in TIMM_MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {description}")
    ours = package_models()
    unknown = [p for p in selected_patterns() if not fnmatch.filter(ours, p)]
    if unknown:
        raise pytest.UsageError(
            f"{MODELS_ENV} names {unknown}, which match no model of {PACKAGE}; registered: {sorted(ours)}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the tests parametrized by one of this package's (selected) models."""
    ours = package_models()
    patterns = selected_patterns()
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        model_name = callspec.params.get("model_name") if callspec is not None else None
        is_ours = isinstance(model_name, str) and arch_name(model_name) in ours
        (keep if is_ours and is_selected(model_name, patterns) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
