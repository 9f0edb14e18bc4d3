"""One schema for training recipes: YAML files under ``recipes/`` plus ``key=value`` overrides.

A recipe may name a ``base:`` recipe (a path relative to itself) whose keys it overrides, so each
setting is a small file on top of a shared base. Every key is a field of :class:`TrainConfig`
(documented in ``recipes/README.md``); an unknown key is an error naming the nearest valid one.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import UserInputError

METHOD_NAMES = ("ce", "supcon", "supcon_s", "selfcon", "selfcon_m", "simclr", "moco", "simclr_mixco", "moco_mixco")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DATA_PIPELINES = ("workers", "device")


@dataclasses.dataclass
class TrainConfig:
    """Every recipe key, with its default. ``batch_size`` is global (all processes together)."""

    provenance: str = "ours"
    model: str = "selfcon_resnet18_cifar"
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    method: str = "selfcon"
    method_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    temperature: float = 0.1
    base_temperature: float = 0.07
    projection_dim: int = 128
    queue_size: int = 65536
    moco_momentum: float = 0.999
    mix_temperature: float = 0.05
    mix_weight: float = 1.0
    gather: bool = True
    data: str = "uoft-cs/cifar10"
    train_split: str = "train"
    eval_split: str = "test"
    image_column: str | None = None
    label_column: str | None = None
    class_list: list[str] | None = None
    streaming: bool = False
    strict_data: bool = False
    augmentation: str = "supcon"
    image_size: int = 32
    num_workers: int | str = "auto"  # DataLoader workers per process; auto: the cores this process may use, less one
    data_pipeline: str = "workers"
    device_data_max_gib: float = 24.0
    epochs: int = 1000
    max_steps: int | None = None
    batch_size: int = 1024
    gradient_accumulation_steps: int = 1
    optimizer: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    min_lr_ratio: float = 0.001
    warmup_epochs: int = 10
    warmup_from: float = 0.01
    clip_grad_norm: float | None = None
    head_lr_warmup_steps: int = 0
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    output_dir: str = "runs/selfcon"
    save_every_steps: int = 500
    save_total_limit: int | None = None  # keep only the newest N checkpoints (never the one `last` points to)
    log_every_steps: int = 10
    log_with: str | list[str] | None = "auto"  # Accelerate trackers; auto = tensorboard when installed; none
    seed: int = 0
    deterministic: bool = False
    resume: bool | str = False  # true, false or "auto" (resume if output_dir has a checkpoint, else start)
    overwrite: bool = False  # clear a previous run's files from output_dir before starting
    allow_config_change: bool = False  # resume although computation keys differ (recorded in config_history.yaml)
    probe: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> TrainConfig:
        for key in FLOAT_KEYS:
            value = getattr(self, key)
            if isinstance(value, str) and _EXPONENT_NUMBER.match(value):
                value = float(value)  # YAML 1.1 reads "1e-4" (no dot) as a string
                setattr(self, key, value)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserInputError(f"{key} must be a finite number, got {value!r}")
        if self.method not in METHOD_NAMES:
            raise UserInputError(f"unknown method {self.method!r}; expected one of {list(METHOD_NAMES)}")
        if self.data_pipeline not in DATA_PIPELINES:
            raise UserInputError(f"unknown data_pipeline {self.data_pipeline!r}; expected one of {list(DATA_PIPELINES)}")
        if self.data_pipeline == "device" and self.streaming:
            raise UserInputError("data_pipeline=device decodes the whole split into memory once, which streaming=true "
                                 "exists to avoid; use data_pipeline=workers with streaming data")
        if self.device_data_max_gib <= 0:
            raise UserInputError(f"device_data_max_gib must be > 0, got {self.device_data_max_gib}")
        if self.precision not in PRECISIONS:
            raise UserInputError(f"unknown precision {self.precision!r}; expected one of {list(PRECISIONS)}")
        for key in ("batch_size", "epochs", "save_every_steps", "log_every_steps", "gradient_accumulation_steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UserInputError(f"{key} must be a positive int, got {value!r}")
        value = self.head_lr_warmup_steps
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UserInputError(f"head_lr_warmup_steps must be an int >= 0 (0 = off), got {value!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps <= 0):
            raise UserInputError(f"max_steps must be a positive int or null, got {self.max_steps!r}")
        from .engine.schedule import SCHEDULES

        if self.schedule not in SCHEDULES:
            raise UserInputError(f"unknown schedule {self.schedule!r}; expected one of {list(SCHEDULES)}")
        if self.mix_weight < 0:
            raise UserInputError(f"mix_weight must be >= 0, got {self.mix_weight}")
        if self.lr <= 0:
            raise UserInputError(f"lr must be > 0, got {self.lr}")
        for key in BOOL_KEYS:  # "resume=ture" would otherwise be a truthy string
            if not isinstance(getattr(self, key), bool):
                raise UserInputError(f"{key} must be true or false, got {getattr(self, key)!r}")
        self._validate_run_keys()
        self._validate_optimizer()
        self._validate_num_workers()
        self._validate_log_with()
        if self.clip_grad_norm is not None:
            value = self.clip_grad_norm
            if isinstance(value, str) and _EXPONENT_NUMBER.match(value):
                value = self.clip_grad_norm = float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise UserInputError(f"clip_grad_norm must be a positive number or null, got {value!r}")
        return self

    def _validate_num_workers(self) -> None:
        value = self.num_workers
        if value != "auto" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise UserInputError(f"num_workers must be an int >= 0 or auto, got {value!r}")

    def _validate_optimizer(self) -> None:
        check_optimizer(self.optimizer)

    def _validate_log_with(self) -> None:
        tracker_names(self.log_with)

    def _validate_run_keys(self) -> None:
        """The keys that say what to do with an existing ``output_dir`` and its checkpoints (issue 14)."""
        limit = self.save_total_limit
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise UserInputError(f"save_total_limit must be a positive int or null (keep all), got {limit!r}")
        if self.resume not in (True, False, "auto"):
            raise UserInputError(f"resume must be true, false or auto, got {self.resume!r}")
        if self.resume is True and self.overwrite:
            raise UserInputError("resume=true and overwrite=true contradict each other: resume continues the run in "
                                 "output_dir, overwrite clears it; choose one")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


#: Keys that do not change what a run computes: where and how often it writes, how data is loaded (augmentation
#: depends only on (seed, epoch, index)), how far it trains, and the run-folder switches. They may differ when a run
#: is resumed, and overriding them leaves a recipe's provenance as it is.
NON_COMPUTATION_KEYS = frozenset({
    "output_dir", "num_workers", "log_every_steps", "save_every_steps", "save_total_limit", "log_with", "resume",
    "overwrite", "allow_config_change", "max_steps", "probe", "provenance",
})
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))
BOOL_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.type in (bool, "bool"))
FLOAT_KEYS = ("temperature", "base_temperature", "moco_momentum", "mix_temperature", "mix_weight", "lr", "momentum",
              "weight_decay", "min_lr_ratio", "warmup_from", "device_data_max_gib")
_EXPONENT_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
COMMON_ALIASES = {"learning_rate": "lr", "bs": "batch_size", "wd": "weight_decay", "temp": "temperature",
                  "arch": "model", "dataset": "data", "num_epochs": "epochs", "amp": "precision"}


def _check_keys(keys: Sequence[str], where: str) -> None:
    for key in keys:
        if key == "base":
            continue
        if key not in FIELD_NAMES:
            # a misspelt alias ("learning_rte") is nearer to the alias than to any key
            candidates = FIELD_NAMES + tuple(COMMON_ALIASES)
            nearest = [COMMON_ALIASES.get(m, m) for m in difflib.get_close_matches(key, candidates, n=1)]
            hint = f"; did you mean {nearest[0]!r}?" if nearest else f"; valid keys: {', '.join(FIELD_NAMES)}"
            raise UserInputError(f"unknown recipe key {key!r} in {where}{hint}")


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The merged key/value mapping of a recipe file and its chain of ``base:`` files."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"recipe {str(path)!r} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, Mapping):
        raise UserInputError(f"recipe {str(path)!r} must be a mapping of keys to values, got {type(raw).__name__}")
    _check_keys(list(raw), str(path))
    merged: dict[str, Any] = {}
    if raw.get("base"):
        merged.update(read_recipe(path.parent / raw["base"]))
    merged.update({k: v for k, v in raw.items() if k != "base"})
    return merged


def parse_override(item: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)``; values are YAML (``3``, ``0.5``, ``true``, ``[2]``, ``{a: 1}``)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UserInputError(f"expected key=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value):
        value = float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
    if isinstance(value, str) and value.startswith("("):
        value = list(ast.literal_eval(value))
    return key, value


def resolve_config(recipe: str | Path | None = None, overrides: Sequence[str] | Mapping[str, Any] = ()) -> TrainConfig:
    """Recipe file (or defaults) + overrides -> a validated :class:`TrainConfig`.

    ``model_kwargs.exit_stages=[1,2]`` style dotted keys update one entry of a dict-valued key.
    """
    values = read_recipe(recipe) if recipe is not None else {}
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
    changed, own_provenance = [], False
    for key, value in items:
        own_provenance = own_provenance or key == "provenance"
        top, _, sub = key.partition(".")
        _check_keys([top], "the overrides")
        before = (values.get(top) or {}).get(sub) if sub else values.get(key)
        if top not in NON_COMPUTATION_KEYS and value != before:
            changed.append(f"{key}={value}")
        if sub:
            values[top] = {**(values.get(top) or {}), sub: value}
        else:
            values[key] = value
    if recipe is not None and changed and "provenance" in values and not own_provenance:
        # a recipe's provenance ("official script values") no longer describes a run with other values
        values["provenance"] = f"{values['provenance']}; overridden: {', '.join(changed)}"
    return TrainConfig(**values).validate()
