"""Typed configs for every command, and the one ``key.sub=value`` override parser they share.

Training recipes are YAML files under ``recipes/``; a recipe may name a ``base:`` recipe (a path relative to
itself) whose keys it overrides. Every key is a field of :class:`TrainConfig` (documented in
``recipes/README.md``), typed and range-checked by pydantic v2: a bad value is refused when the config is
resolved, before any data is read, with the key's path and what was expected; an unknown key names the nearest
valid one. A method's options (temperature, queue size...) are not keys of :class:`TrainConfig`: they go under
``method_kwargs:`` and are declared, typed and defaulted once, by the method's own ``Options`` model (in its file
under ``timm_selfcon.methods``). Recipes and saved configs of earlier versions, which had them at the top level
(:data:`LEGACY_METHOD_KEYS`), are converted when read.

Why pydantic rather than OmegaConf structured configs: pydantic checks ranges (``gt=0``), unions
(``num_workers: int | "auto"``) and cross-field rules in one model and reports every error with its path;
OmegaConf checks types only, and we would still hand-write the ranges.
"""
from __future__ import annotations

import difflib
import math
import sys
import typing
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StrictInt, model_validator

from .augmentations import AUGMENTATIONS
from .errors import UserInputError
from .typed import (  # noqa: F401  (re-exported: the configs of engine/ and hub/ import them from here)
    Float,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StrictModel,
    UnitFloat,
    describe_error,
)

Precision = Literal["fp32", "bf16", "fp16", "auto"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
Schedule = Literal["cosine", "cosine_per_step", "constant", "simclr_official"]
DataPipeline = Literal["workers", "device"]


def _workers(value: Any) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ValueError(f"expected an int >= 0 or auto, got {value!r}")


def _resume(value: Any) -> Any:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f"expected true, false or auto, got {value!r}")


def _known_method(method: str) -> str:
    from .methods import method_class

    method_class(method)
    return method


def _known_optimizer(optimizer: str) -> str:
    check_optimizer(optimizer)
    return optimizer


def _known_augmentation(name: str) -> str:
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown pipeline {name!r}; expected one of {list(AUGMENTATIONS)}")
    return name


def _known_trackers(log_with: str | list[str] | None) -> str | list[str] | None:
    tracker_names(log_with)
    return log_with


# names checked against what the package and timm know (shared by every config that takes them)
MethodName = Annotated[str, AfterValidator(_known_method)]
OptimizerName = Annotated[str, AfterValidator(_known_optimizer)]
AugmentationName = Annotated[str, AfterValidator(_known_augmentation)]


class ProbeSettings(StrictModel):
    """``probe:``: the quickstart's ``linear_fast`` probe after training (trained encoder vs a random one)."""

    enabled: StrictBool = False
    epochs: PositiveInt = 100


class TrainConfig(StrictModel):
    """Every recipe key, with its default. ``batch_size`` is global (all processes together)."""

    provenance: str = "ours"
    model: str = "selfcon_resnet18_cifar"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    method: MethodName = "selfcon"
    # the method's options, checked by its Options model; once resolved, every option with the value the run uses
    # (the method's own default where the recipe sets none), which the saved config.yaml records
    method_kwargs: dict[str, Any] = Field(default_factory=dict)
    data: str = "uoft-cs/cifar10"
    train_split: str = "train"
    eval_split: str = "test"
    image_column: str | None = None
    label_column: str | None = None
    class_list: list[str] | None = None
    strict_data: StrictBool = False
    augmentation: AugmentationName = "auto"  # auto: the method's own pipeline (its declaration in timm_selfcon.methods)
    image_size: PositiveInt = 32
    num_workers: Annotated[int | str, BeforeValidator(_workers)] = "auto"  # auto: the cores this process may use, less one
    data_pipeline: DataPipeline = "workers"
    device_data_max_gib: PositiveFloat = 24.0
    epochs: PositiveInt = 1000
    max_steps: PositiveInt | None = None
    batch_size: PositiveInt = 1024
    gradient_accumulation_steps: PositiveInt = 1
    optimizer: OptimizerName = "sgd"
    lr: PositiveFloat = 0.5
    momentum: NonNegativeFloat = 0.9
    weight_decay: NonNegativeFloat = 1e-4
    schedule: Schedule = "cosine"
    min_lr_ratio: UnitFloat = 0.001
    warmup_epochs: NonNegativeInt = 10
    warmup_from: NonNegativeFloat = 0.01
    clip_grad_norm: PositiveFloat | None = None
    head_lr_warmup_steps: NonNegativeInt = 0
    precision: Precision = "fp32"
    channels_last: StrictBool = False
    compile: StrictBool = False
    sync_bn: StrictBool = False
    output_dir: str = "runs/selfcon"
    save_every_steps: PositiveInt = 500
    save_total_limit: PositiveInt | None = None  # keep only the newest N checkpoints (never the one `last` points to)
    log_every_steps: PositiveInt = 10
    log_with: Annotated[str | list[str] | None, AfterValidator(_known_trackers)] = "auto"  # auto = tensorboard if installed
    seed: StrictInt = 0
    deterministic: StrictBool = False
    resume: Annotated[bool | str, BeforeValidator(_resume)] = False  # true, false or auto (resume if there is a checkpoint)
    overwrite: StrictBool = False  # clear a previous run's files from output_dir before starting
    allow_config_change: StrictBool = False  # resume although computation keys differ (recorded in config_history.yaml)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)

    @model_validator(mode="before")
    @classmethod
    def _method_augmentation(cls, values: Any) -> Any:
        """``augmentation: auto`` (the default) becomes the method's declared pipeline."""
        if not isinstance(values, dict) or values.get("augmentation", "auto") != "auto":
            return values
        from .methods import METHODS

        method = METHODS.get(values.get("method", cls.model_fields["method"].default))
        return {**values, "augmentation": method.augmentation} if method is not None else values

    @model_validator(mode="before")
    @classmethod
    def _method_options(cls, values: Any) -> Any:
        """``method_kwargs`` checked by the method's ``Options`` model and completed with its defaults; the method
        options of earlier versions' top-level keys (:data:`LEGACY_METHOD_KEYS`) are moved into it first."""
        if not isinstance(values, dict):
            return values
        from .methods import METHODS

        method = METHODS.get(values.get("method", cls.model_fields["method"].default))
        values = convert_legacy_method_keys(values, method.Options.model_fields if method is not None else None)
        if method is None:  # an unknown method: its own validator names it
            return values
        return {**values, "method_kwargs": method_options_used(method.name, values.get("method_kwargs") or {})}

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.resume is True and self.overwrite:
            raise ValueError("resume=true and overwrite=true contradict each other: resume continues the run in "
                             "output_dir, overwrite clears it; choose one")
        return self


def method_options_used(method: str, method_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of ``method`` with the value a run with these ``method_kwargs`` uses (the method's own default
    where none is given); an unknown option names the nearest one, a bad value its range (``ValueError``)."""
    from .methods import method_class

    options = method_class(method).Options
    if not isinstance(method_kwargs, Mapping):
        raise ValueError(f"method_kwargs: expected a mapping of {method!r}'s options to values, got {method_kwargs!r}")
    for key in method_kwargs:
        if key not in options.model_fields:
            nearest = difflib.get_close_matches(str(key), list(options.model_fields), n=1)
            hint = f"did you mean {nearest[0]!r}? " if nearest else ""
            raise ValueError(f"method_kwargs.{key}: method {method!r} has no option {key!r}; {hint}"
                             f"its options: {', '.join(options.model_fields) or 'none'}")
    try:
        return options(**dict(method_kwargs)).model_dump()
    except UserInputError as err:  # "key: problem (got value)" for each bad option, "; "-separated
        raise ValueError("; ".join(f"method_kwargs.{part}" for part in str(err).split("; "))) from None


def convert_legacy_method_keys(values: Mapping[str, Any], takes: Collection[str] | None) -> dict[str, Any]:
    """``values`` with the top-level method options of earlier versions (:data:`LEGACY_METHOD_KEYS`) moved into
    ``method_kwargs``: only those the method takes (``takes``: its option names; None keeps them all), and never
    over a ``method_kwargs`` entry (which is what the run used: it won over the top-level key)."""
    values = dict(values)
    given = values.get("method_kwargs")
    method_kwargs = dict(given or {}) if given is None or isinstance(given, Mapping) else None  # else: refused later
    moved = {}
    for key, option in LEGACY_METHOD_KEYS.items():
        value = values.pop(key, None)
        if value is not None and (takes is None or option in takes):
            moved[option] = value
    if moved and method_kwargs is not None:
        values["method_kwargs"] = {**moved, **method_kwargs}
    return values


def legacy_note(key: str) -> str:
    """The one line a recipe or override using an earlier version's top-level method option gets."""
    return f"note: {key} is a method option now: method_kwargs.{LEGACY_METHOD_KEYS[key]}"


def tracker_names(log_with: str | list[str] | None) -> list[str] | None:
    """``log_with`` as Accelerate tracker names: None for ``auto``, ``[]`` for ``none``; unknown names are refused."""
    if log_with == "auto":
        return None
    if log_with is None or log_with == "none" or log_with == []:
        return []
    names = [log_with] if isinstance(log_with, str) else log_with
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS
    from accelerate.utils import LoggerType

    valid = sorted({t.value for t in LoggerType} | set(LOGGER_TYPE_TO_CLASS))
    if not isinstance(names, (list, tuple)) or any(not isinstance(n, str) or n not in valid for n in names):
        raise UserInputError(f"log_with must be auto, none, or Accelerate tracker names ({', '.join(valid)}), "
                             f"got {log_with!r}")
    return list(names)


def check_optimizer(optimizer: str) -> None:
    """An optimizer name ``timm.optim.create_optimizer_v2`` knows (``sgd`` is the recipes' momentum SGD), else an
    error listing timm's names."""
    from timm.optim import list_optimizers

    names = list_optimizers()
    if not isinstance(optimizer, str) or optimizer.lower().split("_")[-1] not in {*names, "sgd"}:
        nearest = difflib.get_close_matches(str(optimizer).lower(), names, n=1)
        hint = f"did you mean {nearest[0]!r}? " if nearest else ""
        raise UserInputError(f"unknown optimizer {optimizer!r}; {hint}timm's optimizers (create_optimizer_v2): "
                             f"{', '.join(names)}")


#: Top-level recipe keys of versions up to 0.3 that set a method option -> the option (``method_kwargs.<option>``)
#: now. Recipes, overrides and saved configs that use them still work: they are moved into ``method_kwargs``.
LEGACY_METHOD_KEYS = {"temperature": "temperature", "base_temperature": "base_temperature", "projection_dim": "out_dim",
                      "queue_size": "queue_size", "moco_momentum": "momentum", "mix_temperature": "mix_temperature",
                      "mix_weight": "mix_weight", "gather": "gather"}
#: Keys that do not change what a run computes: where and how often it writes, how data is loaded (augmentation
#: depends only on (seed, epoch, index)), how far it trains, and the run-folder switches. They may differ when a run
#: is resumed, and overriding them leaves a recipe's provenance as it is.
NON_COMPUTATION_KEYS = frozenset({
    "output_dir", "num_workers", "log_every_steps", "save_every_steps", "save_total_limit", "log_with", "resume",
    "overwrite", "allow_config_change", "max_steps", "probe", "provenance",
})
FIELD_NAMES = tuple(TrainConfig.model_fields)
COMMON_ALIASES = {"learning_rate": "lr", "bs": "batch_size", "wd": "weight_decay", "temp": "method_kwargs.temperature",
                  "arch": "model", "dataset": "data", "num_epochs": "epochs", "amp": "precision"}
#: Keys of earlier versions, dropped when a saved config has them at their old default; any other value is refused.
REMOVED_KEYS = {
    "streaming": (False, "streaming was removed in 0.3.0: training indexes samples by position (exact mid-epoch "
                          "resume, per-sample augmentation seeds), which a streamed dataset cannot do; load the "
                          "dataset map-style (the default)"),
}

ConfigT = TypeVar("ConfigT", bound=StrictModel)


# ------------------------------------------------------------------------------------------ overrides
def parse_override(item: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)``; values are YAML (``3``, ``0.5``, ``true``, ``[2]``, ``{a: 1}``).

    The one parser of every command's ``key=value`` arguments (``train``, ``eval``, ``finetune``, ``demo``).
    """
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UserInputError(f"expected key=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        try:
            number = float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
            value = number if math.isfinite(number) and any(c.isdigit() for c in value) else value
        except ValueError:
            pass
    if isinstance(value, str) and value.startswith("("):
        import ast

        value = list(ast.literal_eval(value))
    return key, value


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}`` in order (a dotted key stays one key: ``"probe.epochs"``)."""
    return dict(parse_override(item) for item in items)


def apply_overrides(values: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` updated by ``overrides``; ``top.sub`` keys update one entry of a mapping-valued key."""
    values = dict(values)
    for key, value in overrides.items():
        top, _, sub = key.partition(".")
        if sub:
            values[top] = {**dict(values.get(top) or {}), sub: value}
        else:
            values[key] = value
    return values


# ------------------------------------------------------------------------------------------ validation
def check_keys(config_cls: type[StrictModel], keys: Sequence[str], where: str,
               aliases: Mapping[str, str] | None = None) -> None:
    """Refuse a key ``config_cls`` lacks (``top.sub`` checked inside a section), naming the nearest valid one."""
    for key in keys:
        top, _, sub = key.partition(".")
        _check_key(config_cls, top, where, aliases or {})
        if top not in config_cls.model_fields:  # an earlier version's method option (converted when resolved)
            continue
        section = config_cls.model_fields[top].annotation
        if sub and isinstance(section, type) and issubclass(section, StrictModel):
            _check_key(section, sub, where, {}, prefix=f"{top}.")


def _check_key(config_cls: type[StrictModel], key: str, where: str, aliases: Mapping[str, str],
               prefix: str = "") -> None:
    kind = "recipe key" if config_cls is TrainConfig else "key"
    fields = tuple(config_cls.model_fields)
    if key in fields or (not prefix and config_cls is TrainConfig and key in LEGACY_METHOD_KEYS):
        return
    if not prefix and key in REMOVED_KEYS:
        raise UserInputError(f"{key} in {where}: {REMOVED_KEYS[key][1]}")
    # a misspelt alias ("learning_rte") is nearer to the alias than to any key
    nearest = [aliases.get(m, m) for m in difflib.get_close_matches(key, fields + tuple(aliases), n=1)]
    hint = f"; did you mean {prefix + nearest[0]!r}?" if nearest else f"; valid keys: {', '.join(fields)}"
    raise UserInputError(f"unknown {kind} {prefix + key!r} in {where}{hint}")


def resolve(config_cls: type[ConfigT], overrides: Sequence[str] | Mapping[str, Any] = (),
            base: Mapping[str, Any] | None = None, where: str = "the overrides") -> ConfigT:
    """A typed config from ``base`` values and ``key=value`` overrides (strings, or an already parsed mapping)."""
    parsed = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    check_keys(config_cls, list(parsed), where)
    return config_cls(**apply_overrides(dict(base or {}), parsed))


# ------------------------------------------------------------------------------------------ recipes
def read_recipe(path: str | Path) -> dict[str, Any]:
    """The merged key/value mapping of a recipe file and its chain of ``base:`` files."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"recipe {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserInputError(f"recipe {str(path)!r} is not valid YAML: {yaml_problem(err)}") from None
    if not isinstance(raw, Mapping):
        raise UserInputError(f"recipe {str(path)!r} must be a mapping of keys to values, got {type(raw).__name__}")
    check_keys(TrainConfig, [k for k in raw if k != "base"], str(path), COMMON_ALIASES)
    _note_legacy_keys(raw, str(path))
    merged: dict[str, Any] = read_recipe(path.parent / raw["base"]) if raw.get("base") else {}
    return _merge_method_options(merged, {k: v for k, v in raw.items() if k != "base"})


def _note_legacy_keys(values: Mapping[str, Any], where: str) -> None:
    for key in values:
        if key in LEGACY_METHOD_KEYS:
            print(f"{legacy_note(key)} (in {where})", file=sys.stderr)


def _merge_method_options(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` updated by ``overrides`` (a recipe file over its base, or parsed ``key=value`` overrides).

    ``method_kwargs`` is merged entry by entry (a recipe sets some options, its base others; ``method_kwargs.<option>``
    sets one; a recipe that names another method than its base keeps only the base's options that method takes),
    and a method option set in one form replaces the other form's value: an earlier version's top-level key
    (``temperature``) drops the ``method_kwargs`` entry it would shadow, and a ``method_kwargs`` entry drops the
    top-level key (also when both are set at once: ``method_kwargs`` is what the method receives).
    """
    values = dict(values)
    kwargs = values.get("method_kwargs")
    kwargs = dict(kwargs) if isinstance(kwargs, Mapping) else kwargs
    if "method" in overrides and overrides["method"] != values.get("method") and isinstance(kwargs, Mapping):
        from .methods import METHODS

        # another method than the base's: the base's options that it does not take are not its options
        new_method = METHODS.get(overrides["method"]) if isinstance(overrides["method"], str) else None
        if new_method is not None:
            kwargs = {k: v for k, v in kwargs.items() if k in new_method.Options.model_fields}
    set_in_kwargs: set[str] = set()
    # the top-level forms first: a method_kwargs entry set alongside wins over them
    for key, value in sorted(overrides.items(), key=lambda item: item[0] not in LEGACY_METHOD_KEYS):
        top, _, option = key.partition(".")
        if top == "method_kwargs" and option:
            kwargs = {**(kwargs if isinstance(kwargs, Mapping) else {}), option: value}
            set_in_kwargs.add(option)
        elif key == "method_kwargs":
            both = isinstance(kwargs, Mapping) and isinstance(value, Mapping)
            kwargs = {**kwargs, **value} if both else value
            set_in_kwargs |= set(value) if isinstance(value, Mapping) else set()
        elif key in LEGACY_METHOD_KEYS:
            if isinstance(kwargs, Mapping):
                kwargs.pop(LEGACY_METHOD_KEYS[key], None)
            values[key] = value
        else:
            values = apply_overrides(values, {key: value})
    for key, option in LEGACY_METHOD_KEYS.items():
        if option in set_in_kwargs:
            values.pop(key, None)
    if kwargs is not None:
        values["method_kwargs"] = kwargs
    return values


def yaml_problem(err: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where (1-based line and column) and what, e.g. ``line 3, column 7:
    expected ',' or ']', but got ':' (while parsing a flow sequence started at line 2, column 5)``.

    PyYAML's own message names the stream (``"<unicode string>"``), not the file, over several lines.
    """
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = getattr(err, "problem", None) or str(err).splitlines()[0]
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None and (context_mark.line, context_mark.column) != (
            getattr(mark, "line", None), getattr(mark, "column", None)):
        context = f"{context} started at line {context_mark.line + 1}, column {context_mark.column + 1}"
    return f"{where}{what}" + (f" ({context})" if context else "")


def load_saved_config(values: Mapping[str, Any]) -> TrainConfig:
    """A run's saved ``config.yaml`` values as a TrainConfig; keys removed since it was written are dropped when
    they hold their old default, and method options saved at the top level (up to 0.3) move into ``method_kwargs``
    (only those its method takes; a ``method_kwargs`` entry, which won over them in training, stays)."""
    values = dict(values)
    for key, (old_default, message) in REMOVED_KEYS.items():
        if key in values and values.pop(key) != old_default:
            raise UserInputError(f"{key} in the saved config: {message}")
    return TrainConfig(**values)


def resolve_config(recipe: str | Path | None = None, overrides: Sequence[str] | Mapping[str, Any] = ()) -> TrainConfig:
    """Recipe file (or defaults) + overrides -> a validated :class:`TrainConfig`.

    ``model_kwargs.exit_stages=[1,2]`` style dotted keys update one entry of a dict-valued key. The model and its
    ``model_kwargs`` are checked by building the model on PyTorch's ``meta`` device (no memory, no weights).
    """
    values = read_recipe(recipe) if recipe is not None else {}
    parsed = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    check_keys(TrainConfig, list(parsed), "the overrides", COMMON_ALIASES)
    _note_legacy_keys(parsed, "the overrides")
    changed = [f"{key}={value}" for key, value in parsed.items()
               if key.partition(".")[0] not in NON_COMPUTATION_KEYS and value != _lookup(values, key)]
    values = _merge_method_options(values, parsed)
    if recipe is not None and changed and "provenance" in values and "provenance" not in parsed:
        # a recipe's provenance ("official script values") no longer describes a run with other values
        values["provenance"] = f"{values['provenance']}; overridden: {', '.join(changed)}"
    config = TrainConfig(**values)
    model = check_model(config.model, config.model_kwargs)
    if model is not None:
        from .methods import method_class

        method_class(config.method).check_model(model)
    return config


def _lookup(values: Mapping[str, Any], key: str) -> Any:
    if key in LEGACY_METHOD_KEYS and key not in values:
        return (values.get("method_kwargs") or {}).get(LEGACY_METHOD_KEYS[key])
    top, _, sub = key.partition(".")
    return (values.get(top) or {}).get(sub) if sub else values.get(key)


def check_model(model: str, model_kwargs: Mapping[str, Any]) -> Any:
    """Build ``model`` with ``model_kwargs`` on the meta device (no memory, no weights) and return it: an unknown
    model or keyword, or a bad value, is an error naming it now rather than after the data has loaded. Hub and
    local models (``hf-hub:``, ``local-dir:``) are checked when they are loaded (None is returned)."""
    if model.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        return None
    import torch

    from .models.factory import create_model

    with torch.device("meta"):
        try:
            return create_model(model, num_classes=0, **model_kwargs)
        except UserInputError as err:
            where = "model" if str(err).startswith("unknown model") else "model_kwargs"
            raise UserInputError(f"{where}: {err}") from None
