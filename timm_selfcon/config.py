"""Typed configs for every command, and the one ``key.sub=value`` override parser they share.

Training recipes are YAML files under ``recipes/``; a recipe may name a ``base:`` recipe (a path relative to
itself) whose keys it overrides. Every key is a field of :class:`TrainConfig` (documented in
``recipes/README.md``), typed and range-checked by pydantic v2: a bad value is refused when the config is
resolved, before any data is read, with the key's path and what was expected; an unknown key names the nearest
valid one. The method-specific keys come from the method's own declaration (``timm_selfcon.methods``): the
top-level keys it maps (``recipe_keys``) and the options ``method_kwargs`` may set, with their types.

Why pydantic rather than OmegaConf structured configs: pydantic checks ranges (``gt=0``), unions
(``num_workers: int | "auto"``) and cross-field rules in one model and reports every error with its path;
OmegaConf checks types only, and we would still hand-write the ranges.
"""
from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .augmentations import AUGMENTATIONS
from .errors import UserInputError

Precision = Literal["fp32", "bf16", "fp16", "auto"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
Schedule = Literal["cosine", "cosine_per_step", "constant", "simclr_official"]
DataPipeline = Literal["workers", "device"]


def _number(value: Any) -> Any:
    """Refuse booleans where a number is expected (pydantic would read ``true`` as 1)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got true/false")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


Float = Annotated[float, BeforeValidator(_number), AfterValidator(_finite)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
UnitFloat = Annotated[Float, Field(ge=0, le=1)]
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]


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


class StrictModel(BaseModel):
    """A config section: unknown keys refused, values checked again when assigned."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise UserInputError("; ".join(_describe(e) for e in err.errors())) from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


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
    method_kwargs: dict[str, Any] = Field(default_factory=dict)
    # method options (METHOD_OPTION_KEYS): unset (None), each becomes the method's own default when the method
    # takes it, else stays None; the saved config.yaml records the value the run used
    temperature: PositiveFloat | None = None
    base_temperature: PositiveFloat | None = None
    projection_dim: PositiveInt | None = None
    queue_size: PositiveInt | None = None
    moco_momentum: UnitFloat | None = None
    mix_temperature: PositiveFloat | None = None
    mix_weight: NonNegativeFloat | None = None
    gather: StrictBool | None = None
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
    def _method_option_defaults(cls, values: Any) -> Any:
        """A method option left unset (absent or null) is the method's own default (``simclr_mixco``: temperature 0.5,
        ``moco``: 0.2), or the value ``method_kwargs`` passes it; options the method does not take stay None."""
        if not isinstance(values, dict):
            return values
        from .methods import METHODS, method_defaults

        method = METHODS.get(values.get("method", cls.model_fields["method"].default))
        if method is None:  # an unknown method: its own validator names it
            return values
        defaults = method_defaults(method.name)
        passed = values.get("method_kwargs") if isinstance(values.get("method_kwargs"), Mapping) else {}
        filled = dict(values)
        for key, argument in method.recipe_keys.items():
            if filled.get(key) is None:
                filled[key] = passed.get(argument, defaults[argument])
        return filled

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        check_method_kwargs(self.method, self.method_kwargs)
        if self.resume is True and self.overwrite:
            raise ValueError("resume=true and overwrite=true contradict each other: resume continues the run in "
                             "output_dir, overwrite clears it; choose one")
        return self


def check_method_kwargs(method: str, method_kwargs: Mapping[str, Any]) -> None:
    """Every ``method_kwargs`` key is an option of ``method`` and has the option's type."""
    from .methods import method_options

    options = method_options(method)
    for key, value in method_kwargs.items():
        if key not in options:
            nearest = difflib.get_close_matches(key, list(options), n=1)
            hint = f"did you mean {nearest[0]!r}? " if nearest else ""
            raise ValueError(f"method_kwargs.{key}: method {method!r} has no option {key!r}; {hint}"
                             f"its options: {', '.join(options)}")
        try:
            TypeAdapter(options[key].annotation, config=ConfigDict(strict=True)).validate_python(value)
        except ValidationError as err:
            expected = getattr(options[key].annotation, "__name__", str(options[key].annotation))
            raise ValueError(f"method_kwargs.{key}: expected {expected}, got {value!r} "
                             f"({err.errors()[0]['msg']})") from None


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


#: Recipe keys that set an option of the method (each method declares the ones it takes in ``recipe_keys``).
METHOD_OPTION_KEYS = ("temperature", "base_temperature", "projection_dim", "queue_size", "moco_momentum",
                      "mix_temperature", "mix_weight", "gather")
#: Keys that do not change what a run computes: where and how often it writes, how data is loaded (augmentation
#: depends only on (seed, epoch, index)), how far it trains, and the run-folder switches. They may differ when a run
#: is resumed, and overriding them leaves a recipe's provenance as it is.
NON_COMPUTATION_KEYS = frozenset({
    "output_dir", "num_workers", "log_every_steps", "save_every_steps", "save_total_limit", "log_with", "resume",
    "overwrite", "allow_config_change", "max_steps", "probe", "provenance",
})
FIELD_NAMES = tuple(TrainConfig.model_fields)
COMMON_ALIASES = {"learning_rate": "lr", "bs": "batch_size", "wd": "weight_decay", "temp": "temperature",
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
        section = config_cls.model_fields[top].annotation
        if sub and isinstance(section, type) and issubclass(section, StrictModel):
            _check_key(section, sub, where, {}, prefix=f"{top}.")


def _check_key(config_cls: type[StrictModel], key: str, where: str, aliases: Mapping[str, str],
               prefix: str = "") -> None:
    kind = "recipe key" if config_cls is TrainConfig else "key"
    fields = tuple(config_cls.model_fields)
    if key in fields:
        return
    if not prefix and key in REMOVED_KEYS:
        raise UserInputError(f"{key} in {where}: {REMOVED_KEYS[key][1]}")
    # a misspelt alias ("learning_rte") is nearer to the alias than to any key
    nearest = [aliases.get(m, m) for m in difflib.get_close_matches(key, fields + tuple(aliases), n=1)]
    hint = f"; did you mean {prefix + nearest[0]!r}?" if nearest else f"; valid keys: {', '.join(fields)}"
    raise UserInputError(f"unknown {kind} {prefix + key!r} in {where}{hint}")


def _describe(error: Mapping[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = "" if error["type"] == "value_error" else f" (got {error['input']!r})"
    return f"{path}: {message}{shown}" if path else f"{message}{shown}"


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
    merged: dict[str, Any] = {}
    if raw.get("base"):
        merged.update(read_recipe(path.parent / raw["base"]))
    merged.update({k: v for k, v in raw.items() if k != "base"})
    return merged


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
    they hold their old default."""
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
    changed = [f"{key}={value}" for key, value in parsed.items()
               if key.partition(".")[0] not in NON_COMPUTATION_KEYS and value != _lookup(values, key)]
    values = apply_overrides(values, parsed)
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
