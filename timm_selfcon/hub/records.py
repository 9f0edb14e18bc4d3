"""Typed records of an export: ``export_info.json`` (:class:`ExportInfo`) and the evaluation reports it carries.

``export`` builds one :class:`ExportInfo` for every source (a training checkpoint or a ``timm-selfcon finetune``
output), writes it as ``export_info.json`` and renders the model card from it; ``push`` reads it back to render the
card for the real repository id. The JSON keys are those of format ``timm-selfcon-export/1``, unchanged since the
first export, so exports written before these records load here and exports written here load in older versions.

Reading old or partial files is done in one place, the ``from_dict`` methods: a missing key gets the default the card
used to assume, and an evaluation report's dataset is read from its ``dataset`` block or, failing that, from the
top-level keys of a fine-tuning report (``data``, ``split``, ``num_classes``). Evaluation reports are typed views:
``EvaluationReport.raw`` keeps the report as ``timm-selfcon eval`` / ``finetune`` wrote it, and that is what is
written back, so no key of theirs is lost.

Plain dataclasses rather than pydantic models: the records are written and read by this package only, their
validation is the few fallbacks above, and the package then needs no further dependency.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..fileio import write_json_atomic

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_INFO",
    "Accuracy",
    "EarlyExitRow",
    "EvalDataset",
    "EvaluationReport",
    "ExitsInfo",
    "ExportInfo",
    "ExportSource",
    "HeadResult",
    "Preprocessing",
]

EXPORT_INFO = "export_info.json"
EXPORT_FORMAT = "timm-selfcon-export/1"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any] | None:
    return None if value is None else list(value)


# ------------------------------------------------------------------------------------------ evaluation reports
@dataclass(frozen=True)
class Accuracy:
    """Top-1 / top-5 accuracy (%) of one head at one epoch (None: not reported)."""

    top1: float | None = None
    top5: float | None = None
    epoch: int | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Accuracy | None:
        if not isinstance(data, Mapping):
            return None
        return cls(top1=data.get("top1"), top5=data.get("top5"), epoch=data.get("epoch"))


@dataclass(frozen=True)
class HeadResult:
    """One head's results in a report: the linear protocols' epochs, or kNN's top-1 per ``k<k>``."""

    last: Accuracy | None = None  # the last probe epoch (the number the metadata reports)
    best_val: Accuracy | None = None  # the epoch chosen on a held-out validation split
    best_test: Accuracy | None = None  # the epoch chosen on the test split (the papers' protocol; optimistic)
    knn: dict[str, float] = field(default_factory=dict)  # kNN: {"k20": top-1, ...}

    @classmethod
    def from_dict(cls, data: Any, *, knn: bool) -> HeadResult:
        data = _mapping(data)
        if knn:
            return cls(knn=dict(data))
        return cls(last=Accuracy.from_dict(data.get("last")), best_val=Accuracy.from_dict(data.get("best_val")),
                   best_test=Accuracy.from_dict(data.get("best_test")))


def top1_per_k(entry: Any) -> bool:
    """Whether a head's results are top-1 per neighbour count (``{"k20": 41.2, ...}``, kNN's) rather than a probe's
    epochs (``{"last": {...}, ...}``): read from the results' shape, so a report of any protocol, old or new, reads
    without asking the protocols' registry (which imports torch)."""
    return isinstance(entry, Mapping) and bool(entry) and all(
        isinstance(value, (int, float)) and not isinstance(value, bool) for value in entry.values())


@dataclass(frozen=True)
class EarlyExitRow:
    """One threshold of an ``early_exit`` sweep."""

    threshold: float
    top1: float | None = None
    mean_flops: float = 0.0  # per image
    full_flops: float = 0.0  # per image, the whole model
    exit_fraction: list[float] = field(default_factory=list)  # share stopping at each exit (last: full model)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EarlyExitRow:
        return cls(threshold=data["threshold"], top1=data.get("top1"), mean_flops=data.get("mean_flops") or 0.0,
                   full_flops=data.get("full_flops") or 0.0, exit_fraction=list(data.get("exit_fraction") or []))


@dataclass(frozen=True)
class EvalDataset:
    """The data an evaluation trained its classifiers on and tested them on."""

    data: str | None = None
    train_split: str | None = "train"
    eval_split: str | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> EvalDataset:
        """The report's ``dataset`` block; a fine-tuning report keeps ``data`` / ``split`` / ``num_classes`` on top."""
        dataset = _mapping(report.get("dataset"))
        return cls(data=dataset.get("data") or report.get("data"),
                   train_split=dataset.get("train_split", "train"),
                   eval_split=dataset.get("eval_split") or report.get("split"),
                   num_classes=dataset.get("num_classes") or report.get("num_classes"),
                   class_names=_list(dataset.get("class_names")))


@dataclass(frozen=True)
class EvaluationReport:
    """An evaluation report (``eval/<protocol>/report.json``, or a fine-tuning's ``report.json``), typed.

    ``raw`` is the report as written; :meth:`to_dict` returns it, so ``export_info.json`` carries every key.
    """

    protocol: str
    dataset: EvalDataset
    checkpoint: str | None = None  # the checkpoint whose features the classifiers were trained on
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    results: dict[str, HeadResult] = field(default_factory=dict)  # head name -> results (not fine-tuning)
    final: Accuracy | None = None  # fine-tuning: the last epoch (``result.last``)
    early_exit: list[EarlyExitRow] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)  # recorded image_size / mean / std / ... if any
    settings: dict[str, Any] = field(default_factory=dict)  # every evaluation key (empty in older reports)
    papers_protocol: bool | None = None  # ran with the papers' settings (None: a report that does not say)
    deviations: list[str] = field(default_factory=list)  # how it differs from the papers' protocol
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, protocol: str, report: Mapping[str, Any]) -> EvaluationReport:
        return cls(
            protocol=protocol,
            dataset=EvalDataset.from_report(report),
            checkpoint=report.get("checkpoint"),
            hyperparameters=dict(_mapping(report.get("hyperparameters"))),
            results={head: HeadResult.from_dict(entry, knn=top1_per_k(entry))
                     for head, entry in _mapping(report.get("results")).items()},
            final=Accuracy.from_dict(_mapping(report.get("result")).get("last")),
            early_exit=[EarlyExitRow.from_dict(row) for row in report.get("early_exit") or []],
            preprocessing=dict(_mapping(report.get("preprocessing"))),
            settings=dict(_mapping(report.get("settings"))),
            papers_protocol=report.get("papers_protocol"),
            deviations=[str(d) for d in report.get("deviations") or []],
            raw=dict(report),
        )

    @classmethod
    def from_finetune_report(cls, report: Mapping[str, Any]) -> EvaluationReport:
        """A ``timm-selfcon finetune`` report, given the ``dataset`` block the evaluation reports have."""
        dataset = dict(data=report.get("data"), eval_split=report.get("split"), num_classes=report.get("num_classes"))
        return cls.from_dict("finetune", dict(report, dataset=dataset))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


# ------------------------------------------------------------------------------------------ the export
@dataclass(frozen=True)
class ExitsInfo:
    """The sub-network exits the encoder was trained with (exported or not: ``ExportInfo.with_exits``)."""

    stages: list[int]
    sub_network: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> ExitsInfo | None:
        if not isinstance(data, Mapping) or not data:
            return None
        return cls(stages=list(data.get("stages") or []), sub_network=data.get("sub_network"))

    def to_dict(self) -> dict[str, Any]:
        return dict(stages=list(self.stages), sub_network=self.sub_network)


@dataclass(frozen=True)
class ExportSource:
    """What was exported: a training checkpoint (``kind="training"``) or a fine-tuning output (``"finetune"``)."""

    kind: str
    checkpoint: str | None = None  # its folder name (``ckpt-<step>`` or the fine-tuning folder)
    step: int | None = None
    run: str | None = None  # training: the run folder's name
    method: str | None = None  # training: the method
    base: str | None = None  # fine-tuning: the model it was fine-tuned from (``hf-hub:...`` / ``local-dir:...``)
    provenance: str | None = None  # read if present (the card falls back on it); not written by export

    @classmethod
    def from_dict(cls, data: Any) -> ExportSource | None:
        if not isinstance(data, Mapping) or not data:
            return None
        return cls(kind=str(data.get("kind") or ""), checkpoint=data.get("checkpoint"), step=data.get("step"),
                   run=data.get("run"), method=data.get("method"), base=data.get("base"),
                   provenance=data.get("provenance"))

    def to_dict(self) -> dict[str, Any]:
        """``kind``, ``checkpoint`` and ``step`` always; the other keys when set (the keys export always wrote)."""
        out: dict[str, Any] = dict(kind=self.kind, checkpoint=self.checkpoint, step=self.step)
        out.update({key: value for key in ("run", "method", "base", "provenance")
                    if (value := getattr(self, key)) is not None})
        return out


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing the reported numbers were measured with (also written to ``config.json``)."""

    input_size: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    crop_pct: float | None = None
    crop_mode: str | None = None
    interpolation: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Preprocessing:
        data = _mapping(data)
        return cls(input_size=_list(data.get("input_size")), mean=_list(data.get("mean")), std=_list(data.get("std")),
                   crop_pct=data.get("crop_pct"), crop_mode=data.get("crop_mode"),
                   interpolation=data.get("interpolation"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ExportInfo:
    """``export_info.json``: everything the model card is rendered from, and the variant ``push`` names.

    Field order is the JSON's key order. Defaults are what the card assumed for a missing key.
    """

    architecture: str
    model_args: dict[str, Any] = field(default_factory=dict)  # config.json's model_args
    num_classes: int = 0
    label_names: list[str] | None = None
    classifier_names: list[str] = field(default_factory=list)  # state-dict prefixes of every head
    exits: ExitsInfo | None = None  # the exits training used (None: not a multi-exit model)
    with_exits: bool = False  # whether the export keeps them
    encoder_only: bool = False
    classifiers_protocol: str | None = None  # where the classifiers came from: a protocol, "trained" or "finetune"
    card_protocol: str | None = None  # the evaluation the card's metadata reports
    source: ExportSource | None = None
    recipe: dict[str, Any] = field(default_factory=dict)  # the run's config.yaml (fine-tuning: its hyperparameters)
    evaluations: dict[str, EvaluationReport] = field(default_factory=dict)  # protocol -> report
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    suggested_name: str | None = None  # <architecture>.<method>_<dataset>
    notes: list[str] = field(default_factory=list)
    base_model: str | None = None  # Hub id of the model this one was fine-tuned from
    license: str | None = None
    timm_selfcon_version: str | None = None
    format: str | None = None  # EXPORT_FORMAT
    num_params: int = 0
    num_features: int | None = None

    @property
    def method(self) -> str | None:
        """The training method of the recipe (``finetune`` for a fine-tuned model)."""
        return self.recipe.get("method")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportInfo:
        """An ``export_info.json``'s contents, of this or any earlier version (missing keys take the defaults)."""
        if not isinstance(data, Mapping) or not data.get("architecture"):
            raise UserInputError("export info must be a JSON object with at least 'architecture' "
                                 f"(got {type(data).__name__} with keys {sorted(_mapping(data))[:8]})")
        fmt = data.get("format")
        if fmt is not None and fmt != EXPORT_FORMAT:
            raise UserInputError(f"export info has format {fmt!r}; this timm-selfcon reads {EXPORT_FORMAT!r} "
                                 "(export it again, or use the timm-selfcon version that wrote it)")
        return cls(
            architecture=data["architecture"],
            model_args=dict(_mapping(data.get("model_args"))),
            num_classes=data.get("num_classes", 0),
            label_names=_list(data.get("label_names")),
            classifier_names=list(data.get("classifier_names") or []),
            exits=ExitsInfo.from_dict(data.get("exits")),
            with_exits=bool(data.get("with_exits")),
            encoder_only=bool(data.get("encoder_only")),
            classifiers_protocol=data.get("classifiers_protocol"),
            card_protocol=data.get("card_protocol"),
            source=ExportSource.from_dict(data.get("source")),
            recipe=dict(_mapping(data.get("recipe"))),
            evaluations={protocol: EvaluationReport.from_dict(protocol, _mapping(report))
                         for protocol, report in _mapping(data.get("evaluations")).items()},
            preprocessing=Preprocessing.from_dict(data.get("preprocessing")),
            suggested_name=data.get("suggested_name"),
            notes=[str(note) for note in data.get("notes") or []],
            base_model=data.get("base_model"),
            license=data.get("license"),
            timm_selfcon_version=data.get("timm_selfcon_version"),
            format=fmt,
            num_params=data.get("num_params", 0),
            num_features=data.get("num_features"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``export_info.json`` (format ``timm-selfcon-export/1`` keys)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "evaluations":
                value = {protocol: report.to_dict() for protocol, report in value.items()}
            elif hasattr(value, "to_dict"):
                value = value.to_dict()
            out[f.name] = value
        return out

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> ExportInfo:
        """``<folder>/export_info.json``."""
        path = Path(folder) / EXPORT_INFO
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise UserInputError(f"{str(path)!r} does not exist: {str(folder)!r} is not a timm-selfcon export") from err
        except json.JSONDecodeError as err:
            raise UserInputError(f"{str(path)!r} is not valid JSON ({err})") from err
        try:
            return cls.from_dict(data)
        except UserInputError as err:
            raise UserInputError(f"{str(path)!r}: {err}") from err

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``<folder>/export_info.json`` (atomically) and return its path."""
        path = Path(folder) / EXPORT_INFO
        write_json_atomic(path, self.to_dict(), default=_json_default)
        return path


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)  # Path and anything else a recipe may hold
