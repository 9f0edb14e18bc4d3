"""Evaluation: linear probes per exit and of the ensemble, kNN, early exit; a JSON report, classifiers and a plot.

One module per protocol under :mod:`timm_selfcon.engine.evaluation`, each registered with its declaration
(:mod:`timm_selfcon.engine.evaluation.registry`), over shared feature extraction and report writing; this module
holds the configuration, the choice of data and the order of work (one load of the encoder and the data for
``protocol=all``).

Protocols (``protocol=``; each module's docstring has the details):

- ``linear``: the papers' protocol (SelfCon arXiv 2106.15499, MixCo arXiv 2010.06300): frozen encoder in
  eval mode, one linear classifier per output (each exit and the backbone) on pooled pre-head features,
  train-time crop + flip, SGD (lr 3, momentum 0.9, wd 0, batch 512), 100 epochs, x0.1 at 60 and 80, on the
  whole training split (``val_fraction=0``; the default holds 10% out for the ``best_val`` selection).
- ``linear_fast``: a documented deviation: features are extracted once without augmentation and the
  classifiers are trained on the cache (standardised features, SGD lr 0.1, cosine). Much faster; its numbers
  are labelled ``linear_fast`` and are not the papers' protocol.
- ``knn``: cosine kNN on L2-normalised backbone features, k = 20 and 200, votes weighted by exp(sim / 0.07).
- ``early_exit``: the linear classifiers plugged into the model, ``forward_early_exit`` over a threshold sweep,
  accuracy and mean FLOPs per image.
- ``all``: every registered protocol that applies to the model, in the registry's order.

Reported top-1/top-5 for ``backbone``, each ``exit_k`` and ``ensemble`` (mean of the heads' logits):
``last`` (last epoch; the default), ``best_val`` (epoch chosen on a validation split held out from the
training data) and ``best_test`` (epoch chosen on the test split itself, labelled as the papers' protocol:
optimistic). Every report (:class:`~timm_selfcon.engine.evaluation.report.EvalReport`) records its ``settings`` and
its ``deviations`` from the papers' protocol; ``papers_protocol`` is true only for ``linear`` with the papers'
settings. Evaluation never modifies a training checkpoint: it writes ``<output_dir>/eval/<protocol>/``.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field, StrictBool, StrictInt, field_validator

from ..config import NonNegativeInt, PositiveFloat, PositiveInt, StrictModel, UnitFloat
from ..data import (
    NORMALIZATION,
    ContrastiveImageDataset,
    build_eval_loader,
    build_transform,
    class_names,
    load_image_dataset,
    resolve_columns,
    select_classes,
    split_train_val,
)
from ..errors import UserInputError
from ..fileio import write_json_atomic
from .checkpoint import load_encoder
from .evaluation.features import EvalInputs
from .evaluation.names import DEFAULT_PROTOCOL
from .evaluation.registry import ALL, all_protocols, protocol_choices
from .evaluation.registry import protocol as registered_protocol
from .evaluation.report import EvalReport, write_report

#: The dataset a timm model name is evaluated on when no ``data=`` is given (a training run uses its own).
DEFAULT_EVAL_DATA = "uoft-cs/cifar10"


class EvalConfig(StrictModel):
    """Evaluation keys (``timm-selfcon eval MODEL key=value ...``).

    ``pretrained`` (a timm model name): None loads the weights of a Hub or local model (``hf-hub:``, ``local-dir:``)
    and of a name with a pretrained tag (``resnet50.a1_in1k``), and leaves a plain name randomly initialised from
    ``seed``; true / false decide. The report's ``weights`` says which weights were evaluated.

    ``data``, ``train_split``, ``split``, ``image_column`` and ``label_column`` left at None mean: a training run's
    or checkpoint's own (its ``config.yaml``: ``data``, ``train_split``, ``eval_split``, columns, ``class_list``),
    or for a timm model name ``uoft-cs/cifar10`` with ``train`` / ``test``. ``data=`` overrides the run's dataset;
    then the splits default to ``train`` / ``test`` and the columns are detected, unless given.
    """

    data: str | None = None
    train_split: str | None = None
    split: str | None = None
    val_fraction: Annotated[UnitFloat, Field(lt=1)] = 0.1
    image_column: str | None = None
    label_column: str | None = None
    protocol: str = DEFAULT_PROTOCOL
    epochs: PositiveInt | None = None
    lr: PositiveFloat | None = None
    batch_size: PositiveInt = 512
    milestones: tuple[UnitFloat, UnitFloat] = (0.6, 0.8)
    knn_k: tuple[PositiveInt, ...] = (20, 200)
    knn_temperature: PositiveFloat = 0.07
    image_size: PositiveInt | None = None
    num_workers: NonNegativeInt = 2
    seed: StrictInt = 0
    output: str | None = None
    output_dir: str | None = None
    max_train_samples: PositiveInt | None = None
    pretrained: StrictBool | None = None  # a timm model name: None = its tag decides (plain name: random init)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, protocol: str) -> str:
        if protocol not in protocol_choices():
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {list(protocol_choices())}")
        return protocol


# ------------------------------------------------------------------------------------------ data
@dataclass
class DataChoice:
    """The dataset an evaluation or fine-tuning reads, and where each setting came from."""

    data: str
    train_split: str
    split: str
    image_column: str | None
    label_column: str | None
    class_list: list[str] | None
    source: str  # "run config" (the run's config.yaml), "data=" (an override) or "default"

    def describe(self) -> str:
        where = {"run config": "the run's config.yaml", "data=": "data=", "default": "the default: no data= given"}
        return (f"data {self.data!r}, train split {self.train_split!r}, evaluation split {self.split!r} "
                f"(from {where[self.source]})")


def choose_data(info: dict[str, Any], data: str | None, train_split: str | None, split: str | None,
                image_column: str | None, label_column: str | None) -> DataChoice:
    """The run's own dataset, splits, columns and classes unless ``data`` overrides them (see :class:`EvalConfig`)."""
    recipe = info.get("recipe")
    if data is None and recipe:
        return DataChoice(data=recipe["data"], train_split=train_split or recipe.get("train_split") or "train",
                          split=split or recipe.get("eval_split") or "test",
                          image_column=image_column or recipe.get("image_column"),
                          label_column=label_column or recipe.get("label_column"),
                          class_list=recipe.get("class_list"), source="run config")
    return DataChoice(data=data or DEFAULT_EVAL_DATA, train_split=train_split or "train", split=split or "test",
                      image_column=image_column, label_column=label_column, class_list=None,
                      source="data=" if data else "default")


def load_split(choice: DataChoice, split: str, image_column: str | None = None, label_column: str | None = None):
    """One split of ``choice``'s dataset, restricted to (and relabelled by) the run's ``class_list`` if it had one."""
    hf = load_image_dataset(choice.data, split, image_column=image_column or choice.image_column,
                            label_column=label_column or choice.label_column)
    if choice.class_list:
        _, label = resolve_columns(hf, image_column or choice.image_column, label_column or choice.label_column,
                                   data=choice.data)
        hf = select_classes(hf, label, choice.class_list)
    return hf


# ------------------------------------------------------------------------------------------ orchestration
def evaluate(source: str | os.PathLike[str], config: EvalConfig | None = None, callbacks: Sequence[Any] = (),
             **overrides: Any) -> dict[str, Any]:
    """Evaluate ``source`` (checkpoint, training output_dir or timm model name) and write the report.

    ``callbacks`` get ``on_epoch_begin(epoch)`` / ``on_epoch_end(epoch, record)`` of the linear probes' training.

    Returns the report as a dict (:meth:`EvalReport.to_dict`: ``report.json``'s keys); writes ``report.json``,
    ``classifiers.safetensors`` (protocols that train classifiers) and ``plot.png`` under
    ``<output_dir>/eval/<protocol>/`` (``output_dir`` = the training run's, or ``output_dir=``). ``protocol=all``
    runs every registered protocol that applies to the model (``early_exit`` needs exits) on one load of the
    encoder and the data, each from the random state it would start from alone, and returns ``{protocol: report}``.
    """
    config = config or EvalConfig(**overrides)
    torch.manual_seed(config.seed)  # a timm model name without weights is initialised from this seed
    encoder, info = load_encoder(source, config.pretrained, **config.model_kwargs)
    info = {**info, "weights": described_weights(info, config.seed)}  # plain words, in every report
    requested = all_protocols() if config.protocol == ALL else (config.protocol,)
    protocols = []
    for name in requested:
        if registered_protocol(name).applies_to(encoder):
            protocols.append(name)
        elif config.protocol != ALL:  # only the exits are ever missing (Protocol.needs_exits)
            raise UserInputError(f"protocol {name!r} needs a multi-exit model; {info['model']} has no exits")
        else:
            print(f"note: protocol={ALL}: {name} skipped: {info['model']} has no exits", file=sys.stderr)
    encoder.to(torch.device("cuda" if torch.cuda.is_available() else "cpu")).eval()
    data = _EvalData.load(encoder, info, config)
    # each protocol starts from the random state it would start from alone (after the loading above)
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    reports: dict[str, Any] = {}
    for protocol in protocols:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        protocol_config = config if protocol == config.protocol else EvalConfig(
            **{**config.to_dict(), "protocol": protocol, "output": None})
        reports[protocol] = _run_protocol(encoder, info, data, protocol_config, callbacks)
    if config.protocol != ALL:
        return reports[config.protocol]
    if config.output:
        write_json_atomic(Path(config.output), reports)
    return reports


@dataclass
class _EvalData:
    """The data every protocol of one evaluation reads, loaded once: splits, columns, classes, preprocessing."""

    choice: DataChoice
    train: Any
    val: Any | None
    test: Any
    columns: tuple[str, str]
    names: list[str] | None
    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def load(cls, encoder: torch.nn.Module, info: dict[str, Any], config: EvalConfig) -> _EvalData:
        cfg = encoder.pretrained_cfg
        image_size = config.image_size or cfg["input_size"][-1]
        mean, std = cfg.get("mean", NORMALIZATION["imagenet"][0]), cfg.get("std", NORMALIZATION["imagenet"][1])
        choice = choose_data(info, config.data, config.train_split, config.split, config.image_column,
                             config.label_column)
        data = choice.data
        print(f"evaluating {info['model']} ({info['weights']}) on {choice.describe()}", file=sys.stderr)
        train_hf = load_split(choice, choice.train_split)
        image_col, label_col = resolve_columns(train_hf, choice.image_column, choice.label_column, data=data)
        if label_col is None:
            raise UserInputError(f"evaluation needs labels; dataset {data!r} has no label column "
                                 f"(columns: {train_hf.column_names})")
        test_hf = load_split(choice, choice.split, image_col, label_col)
        if config.max_train_samples:
            train_hf = train_hf.select(range(min(config.max_train_samples, len(train_hf))))
        train_hf, val_hf = split_train_val(train_hf, config.val_fraction, config.seed) if config.val_fraction else (
            train_hf, None)
        names = class_names(train_hf, label_col)
        num_classes = len(names) if names else int(max(train_hf[label_col])) + 1
        return cls(choice=choice, train=train_hf, val=val_hf, test=test_hf, columns=(image_col, label_col),
                   names=names, num_classes=num_classes, image_size=image_size, mean=mean, std=std)


def _run_protocol(encoder: torch.nn.Module, info: dict[str, Any], data: _EvalData, config: EvalConfig,
                  callbacks: Sequence[Any]) -> dict[str, Any]:
    """One protocol (``config.protocol``) on the loaded encoder and data: the report, written with its files."""
    choice = data.choice
    plain = build_transform("eval", data.image_size, data.mean, data.std)

    def loader(hf):
        ds = ContrastiveImageDataset(hf, plain, *data.columns, seed=config.seed)
        return build_eval_loader(ds, config.batch_size, config.num_workers)

    protocol = registered_protocol(config.protocol)
    out_dir = eval_output_dir(config.output_dir, info) / "eval" / protocol.name
    report = EvalReport(
        model=info["model"], model_kwargs=info.get("model_kwargs"), checkpoint=info["checkpoint"],
        weights=info["weights"], method=info.get("method"),
        dataset=dict(data=choice.data, train_split=choice.train_split, eval_split=choice.split,
                     val_fraction=config.val_fraction, num_classes=data.num_classes, class_names=data.names,
                     class_list=choice.class_list, data_from=choice.source, train_rows=len(data.train),
                     val_rows=len(data.val) if data.val is not None else 0, test_rows=len(data.test)),
        protocol=config.protocol, columns=list(data.columns),
        # every key that shapes the numbers, image_size as used (None: the model's own)
        settings={**{k: v for k, v in config.to_dict().items() if k not in NOT_SETTINGS},
                  "image_size": data.image_size},
    )
    inputs = EvalInputs(encoder=encoder, config=config, train=data.train, val=data.val, test_loader=loader(data.test),
                        loader=loader, columns=data.columns, num_classes=data.num_classes,
                        image_size=data.image_size, mean=data.mean, std=data.std, callbacks=callbacks)
    classifiers = protocol.run(inputs, report)
    report.deviations = protocol.deviations_from_papers(config, report)
    report.papers_protocol = protocol.papers_protocol_possible and not report.deviations
    for path in write_report(out_dir, report, classifiers, config.output):
        print(f"wrote {path}", file=sys.stderr)
    return report.to_dict()


#: EvalConfig keys that change no number of a report: where it is written and how the data is loaded.
NOT_SETTINGS = ("output", "output_dir", "num_workers")


def described_weights(info: dict[str, Any], seed: int) -> str:
    """``info["weights"]`` of :func:`load_encoder`, a random init with the torch seed it was drawn from."""
    weights = info["weights"]
    return f"{weights} (torch seed {seed})" if weights == "random init" else weights


#: Where evaluations of a timm model name or ``local-dir:`` go: ``eval_runs/<model id>/eval/<protocol>/``.
EVAL_RUNS = Path("eval_runs")


def eval_output_dir(output_dir: str | None, info: dict[str, Any]) -> Path:
    """``output_dir=``, else the training run's folder, else ``eval_runs/<model id as a folder name>``."""
    if output_dir:
        return Path(output_dir)
    if info.get("run_dir"):
        return Path(info["run_dir"])
    return EVAL_RUNS / model_folder_name(info["model"])


def model_folder_name(model: str) -> str:
    """A folder name for a model id: ``hf-hub:org/name`` -> ``hf-hub--org--name``; a ``local-dir:`` path keeps
    its resolved parts, so two folders with the same last name do not share one."""
    if model.startswith("local-dir:"):
        model = "local-dir:" + str(Path(model.removeprefix("local-dir:")).resolve())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "--", model).strip("-.")
    return name[-150:] or "model"
