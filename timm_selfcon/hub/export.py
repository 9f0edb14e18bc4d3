"""Export a trained SelfCon / MixCo encoder as a timm Hub folder: ``config.json``, ``model.safetensors``, ``README.md``.

Papers: SelfCon (Bae et al., AAAI 2023, arXiv 2106.15499) and MixCo (Kim et al., arXiv 2010.06300).

``export(CHECKPOINT, OUT_DIR)`` takes a training checkpoint (or a training ``output_dir``, meaning its ``last``)
and writes what timm's ``hf-hub:`` / ``local-dir:`` loader reads:

- ``config.json`` through timm's ``save_for_hf``: the architecture, ``num_classes``, ``model_args`` with every
  kwarg that rebuilds the model (``exit_stages``, ``sub_network``, the generic path's ``backbone``, ...), and a
  ``pretrained_cfg`` with the preprocessing, the label names and ``classifier`` naming every head;
- ``model.safetensors`` (never a pickle);
- ``README.md``, the model card (:mod:`timm_selfcon.hub.card`), and ``export_info.json``, the inputs the card is
  rendered from (recipe, evaluation reports, variant), so ``push`` can render it again for the real repo id: one
  :class:`~timm_selfcon.hub.records.ExportInfo` whatever the source.

The linear classifiers come from ``<run>/eval/<protocol>/classifiers.safetensors`` written by
``timm_selfcon.engine.evaluate`` (``protocol`` names which; by default the first of ``linear``, ``early_exit``,
``linear_fast`` that exists). A checkpoint without an evaluation gives an encoder-only export (``num_classes=0``)
and says so. Variants: ``classifiers=False`` (encoder only), ``exits=False`` (the exits and their classifiers
removed: a plain backbone). A fine-tuning output (``timm-selfcon finetune``) exports too, with its own classifier.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
import torch.nn as nn
from safetensors.torch import load_file
from timm.models import save_for_hf

from ..engine.evaluation.names import CLASSIFIER_PROTOCOL_NAMES
from ..errors import UserInputError
from ..fileio import atomic_dir
from ..models.factory import create_model
from .card import check_repo_id, dataset_short_name, render_card
from .records import (
    EXPORT_FORMAT,
    EXPORT_INFO,
    EvaluationReport,
    ExitsInfo,
    ExportInfo,
    ExportSource,
    Preprocessing,
)

__all__ = [
    "CLASSIFIER_PROTOCOLS",
    "EXPORT_INFO",
    "ExportInfo",
    "ExportResult",
    "classifier_names",
    "export",
    "suggested_name",
]

#: Evaluation protocols that train linear classifiers, in the order ``export`` picks one by default (declared in
#: ``engine/evaluation/names.py``, in step with the protocols' registry: ``classifier_protocols()``).
CLASSIFIER_PROTOCOLS = CLASSIFIER_PROTOCOL_NAMES
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".tar")


@dataclass
class ExportResult:
    """What ``export`` wrote."""

    out_dir: Path
    architecture: str
    num_classes: int
    classifiers_protocol: str | None
    encoder_only: bool
    with_exits: bool
    suggested_name: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def classifier_names(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the model's classifiers: every head of a multi-exit model, else timm's ``classifier``."""
    if hasattr(model, "classifier_names"):
        return tuple(model.classifier_names())
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "fc"
    return (names,) if isinstance(names, str) else tuple(names)


def suggested_name(architecture: str, method: str | None, data: str | None) -> str:
    """The naming scheme of published weights: ``<architecture>.<method>_<dataset>``.

    For example ``selfcon_resnet18_cifar.selfcon_cifar100``; the repository is ``ORG/<that name>``, and the pretrained
    tag ``<architecture>.<method>_<dataset>`` gets ``hf_hub_id="ORG/<that name>"`` once the weights are published.
    """
    tag = "_".join(part for part in (method, dataset_short_name(data) if data else None) if part)
    return f"{architecture}.{tag}" if tag else architecture


def export(
        source: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        *,
        protocol: str | None = None,
        classifiers: bool = True,
        exits: bool = True,
        eval_dir: str | os.PathLike[str] | None = None,
        repo_id: str | None = None,
        license: str = "apache-2.0",
        base_model: str | None = None,
        overwrite: bool = False,
) -> ExportResult:
    """Export ``source`` to ``out_dir`` for timm's Hub loader; see the module docstring.

    Args:
        source: a training checkpoint ``ckpt-<step>``, a training ``output_dir`` (its ``last``), or a
            ``timm-selfcon finetune`` output directory.
        out_dir: the folder to write: new or empty; an earlier export is replaced only with ``overwrite``, a folder
            holding anything else is refused.
        protocol: evaluation protocol whose classifiers to include (``linear``, ``early_exit``, ``linear_fast``);
            None picks the first that exists, and no evaluation at all gives an encoder-only export.
        classifiers: False gives an encoder-only export (``num_classes=0``).
        exits: False removes the exits and their classifiers (a plain backbone).
        eval_dir: where the ``<protocol>/`` evaluation folders are (default ``<run_dir>/eval``).
        repo_id: ``ORG/NAME`` for the card's usage snippet (``push`` renders the card again with its own).
        license: the card's license.
        base_model: Hub id of the model this one was fine-tuned from (card metadata ``base_model``).
        overwrite: replace an earlier export in ``out_dir`` (``--overwrite``).
    """
    if protocol is not None and protocol not in CLASSIFIER_PROTOCOLS:
        hint = _trains_no_classifiers(protocol)
        raise UserInputError(f"unknown protocol {protocol!r} for export{hint}; expected one of {list(CLASSIFIER_PROTOCOLS)} "
                         "or None (the first evaluation found)")
    if repo_id is not None:
        check_repo_id(repo_id)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    source_path = Path(source)
    if (source_path / "config.json").is_file() and (source_path / "report.json").is_file():
        if protocol is not None or not exits:
            raise UserInputError(f"{str(source_path)!r} is a fine-tuned model with its own classifier and no exits; "
                             "protocol= and exits=False do not apply to it")
        model, info, warn = _from_finetune_dir(source_path, classifiers=classifiers, base_model=base_model)
    else:
        model, info, warn = _from_training_checkpoint(source, protocol=protocol, classifiers=classifiers,
                                                      exits=exits, eval_dir=eval_dir)
        info = dataclasses.replace(info, base_model=base_model)
    info = dataclasses.replace(info, license=license, timm_selfcon_version=_version(), format=EXPORT_FORMAT,
                               num_params=sum(p.numel() for p in model.parameters()),
                               num_features=int(model.num_features))
    for note in warn:
        warnings.warn(note, UserWarning, stacklevel=2)

    with atomic_dir(out_dir, replace=True) as tmp:
        _write_timm_files(model, tmp, info)
        _check_round_trip(model, tmp)
        info.write(tmp)
        # the card is rendered from the file just written, exactly as push renders it
        render_card(ExportInfo.read(tmp), repo_id).save(str(tmp / "README.md"))
    return ExportResult(
        out_dir=out_dir, architecture=info.architecture, num_classes=info.num_classes,
        classifiers_protocol=None if info.encoder_only else info.classifiers_protocol,
        encoder_only=info.encoder_only, with_exits=info.with_exits, suggested_name=info.suggested_name or "",
        files=sorted(p.name for p in out_dir.iterdir()), notes=list(info.notes),
    )


# ------------------------------------------------------------------------------------------ sources
def _from_training_checkpoint(source: str | os.PathLike[str], *, protocol: str | None, classifiers: bool, exits: bool,
                              eval_dir: str | os.PathLike[str] | None) -> tuple[nn.Module, ExportInfo, list[str]]:
    """The encoder of a training checkpoint with the chosen evaluation's classifiers, its record and warnings."""
    from ..config import load_saved_config
    from ..engine.checkpoint import load_encoder, load_strict, read_trainer_state, resolve_checkpoint
    from ..engine.evaluation.registry import all_protocols

    checkpoint = resolve_checkpoint(source)
    encoder, loaded = load_encoder(checkpoint)
    config = load_saved_config(loaded["recipe"])
    eval_root = Path(eval_dir) if eval_dir is not None else checkpoint.parent / "eval"
    reports = {p: EvaluationReport.from_dict(p, json.loads((eval_root / p / "report.json").read_text()))
               for p in all_protocols() if (eval_root / p / "report.json").is_file()}
    warn: list[str] = []  # said as warnings and kept as notes (card, result)
    notes: list[str] = []  # kept as notes only
    multi_exit = hasattr(encoder, "exit_stages")
    trained_exits = list(encoder.exit_stages) if multi_exit else []

    chosen = _choose_protocol(protocol, eval_root, reports, checkpoint) if classifiers else None
    # notes go to the card, which is published: they name the evaluation, not the folders of this machine
    where = "the run's eval/" if eval_dir is None else f"--eval-dir {Path(eval_dir).name}/"
    if protocol is None and chosen is not None:
        notes.append(f"no --protocol given: took the {chosen!r} classifiers of {where}{chosen} (the first "
                     f"evaluation found in the order {' > '.join(CLASSIFIER_PROTOCOLS)})")
    if chosen in reports and reports[chosen].deviations:
        notes.append(f"the {chosen!r} classifiers were trained with settings that are not the papers' settings: "
                     f"{'; '.join(reports[chosen].deviations)}")
    own_classifier = classifiers and chosen is None and int(getattr(encoder, "num_classes", 0) or 0) > 0
    head_state: dict[str, torch.Tensor] = {}
    num_classes, label_names = 0, None
    if chosen is not None:
        head_state = load_file(str(eval_root / chosen / "classifiers.safetensors"))
        backbone_head = classifier_names(encoder)[0]
        if f"{backbone_head}.weight" not in head_state:
            raise UserInputError(f"{eval_root / chosen / 'classifiers.safetensors'} has no {backbone_head}.weight "
                             f"(keys: {sorted(head_state)[:6]}); it does not belong to this model")
        num_classes = int(head_state[f"{backbone_head}.weight"].shape[0])
        names = reports[chosen].dataset.class_names if chosen in reports else None
        label_names = list(names) if names and len(names) == num_classes else None
    elif own_classifier:
        chosen = "trained"
        num_classes = int(encoder.num_classes)
        warn.append("no evaluation found: exporting the classifier trained end to end with the encoder (method "
                     f"{config.method!r}); no accuracy is reported")
    elif classifiers:
        warn.append(f"no evaluation with classifiers found under {where} (looked for "
                     f"{'/'.join(CLASSIFIER_PROTOCOLS)}): this is an encoder-only export (num_classes=0); run "
                     "`timm-selfcon eval` first to include linear classifiers and results")

    model_args = dict(config.model_kwargs)
    if multi_exit:
        model_args["exit_stages"] = trained_exits if exits else []
        model_args["sub_network"] = encoder.sub_network
    if hasattr(encoder, "backbone_name"):
        model_args["backbone"] = encoder.backbone_name
        if getattr(encoder, "backbone_kwargs", None):
            model_args["backbone_kwargs"] = dict(encoder.backbone_kwargs)
    model_args["num_classes"] = num_classes
    model = create_model(config.model, **model_args)

    drop = tuple(f"{name}." for name in (*classifier_names(encoder), *(() if exits else ("exits", "exit_heads"))))
    encoder_state, model_keys = encoder.state_dict(), set(model.state_dict())
    state = {k: v for k, v in encoder_state.items() if not k.startswith(drop)}
    heads = encoder_state if chosen == "trained" else head_state
    state.update({k: v for k, v in heads.items() if k in model_keys})
    load_strict(model, state, what=f"the export of {checkpoint}" + (f" with {chosen} classifiers" if chosen else ""))
    model.eval()

    if not exits and trained_exits:
        notes.append(f"the exits (stages {trained_exits}) were removed: this export is the backbone alone")
    info = ExportInfo(
        architecture=config.model,
        model_args=model_args,
        num_classes=num_classes,
        label_names=label_names,
        classifier_names=list(classifier_names(model)),
        exits=ExitsInfo(stages=trained_exits, sub_network=encoder.sub_network) if trained_exits else None,
        with_exits=bool(exits and trained_exits),
        encoder_only=num_classes == 0,
        classifiers_protocol=chosen if num_classes else None,
        card_protocol=chosen if chosen in reports else _first_report(reports),
        source=ExportSource(kind="training", checkpoint=checkpoint.name,
                            step=read_trainer_state(checkpoint).get("step"), run=checkpoint.parent.name,
                            method=config.method),
        recipe=config.to_dict(),
        evaluations=reports,
        preprocessing=_preprocessing(encoder, reports.get(chosen) if chosen else None),
        suggested_name=suggested_name(config.model, config.method, config.data),
        notes=[*warn, *notes],
    )
    return model, info, warn


def _choose_protocol(protocol: str | None, eval_root: Path, reports: dict[str, EvaluationReport],
                     checkpoint: Path) -> str | None:
    available = [p for p in CLASSIFIER_PROTOCOLS if (eval_root / p / "classifiers.safetensors").is_file()]
    if protocol is not None:
        if protocol not in available:
            raise UserInputError(f"no {protocol!r} evaluation with classifiers under {str(eval_root)!r} (found: "
                             f"{available or 'none'}); run `timm-selfcon eval {checkpoint.parent} protocol={protocol}`")
        chosen = protocol
    elif available:
        chosen = available[0]
    else:
        return None
    evaluated = reports[chosen].checkpoint if chosen in reports else None
    # the same checkpoint: the one recorded (links resolved, as ``checkpoint`` is), or one of its name (a run folder
    # moved or copied since it was evaluated)
    if not evaluated or (Path(evaluated).resolve() != checkpoint.resolve() and Path(evaluated).name != checkpoint.name):
        raise UserInputError(f"the {chosen!r} classifiers under {str(eval_root)!r} were trained on the features of "
                         f"{evaluated!r}, not of the checkpoint being exported ({checkpoint.name}); evaluate this "
                         "checkpoint again or export the evaluated one")
    return chosen


def _trains_no_classifiers(protocol: str) -> str:
    """`` (kNN trains no classifiers)`` for a registered protocol that trains none, else nothing."""
    from ..engine.evaluation.registry import protocols

    registered = protocols().get(protocol)
    return f" ({registered.title} trains no classifiers)" if registered and not registered.trains_classifiers else ""


def _first_report(reports: dict[str, EvaluationReport]) -> str | None:
    """The report the card leads with: the first protocol with classifiers, else any other registered protocol's."""
    from ..engine.evaluation.registry import all_protocols

    for protocol in (*CLASSIFIER_PROTOCOLS, *all_protocols()):
        if protocol in reports:
            return protocol
    return None


def _from_finetune_dir(path: Path, *, classifiers: bool,
                       base_model: str | None) -> tuple[nn.Module, ExportInfo, list[str]]:
    """A ``timm-selfcon finetune`` output: a timm folder with ``report.json``; its classifier is the fine-tuned one."""
    config = json.loads((path / "config.json").read_text())
    report = json.loads((path / "report.json").read_text())
    model = timm.create_model(f"local-dir:{path}", pretrained=True)
    num_classes = int(model.num_classes) if classifiers else 0
    if not classifiers:
        model.reset_classifier(0)
    model.eval()
    model_args = dict(config.get("model_args") or {}, num_classes=num_classes)
    source = str(report.get("source") or "")
    if base_model is None and source[:7].lower() in ("hf-hub:", "hf_hub:"):  # timm's two spellings
        base_model = source[7:].split("@")[0]
    names = (config.get("label_names") or (config.get("pretrained_cfg") or {}).get("label_names"))
    exits = model_args.get("exit_stages")
    info = ExportInfo(
        architecture=config["architecture"], model_args=model_args, num_classes=num_classes,
        label_names=list(names) if names and num_classes and len(names) == num_classes else None,
        classifier_names=list(classifier_names(model)), exits=None, with_exits=bool(exits),
        encoder_only=num_classes == 0, classifiers_protocol="finetune" if num_classes else None,
        card_protocol="finetune",
        source=ExportSource(kind="finetune", checkpoint=path.name, step=None, base=source),
        recipe=dict(report.get("hyperparameters") or {}, method="finetune", model=config["architecture"],
                    provenance=f"fine-tuned from {source} with timm-selfcon finetune"),
        evaluations={"finetune": EvaluationReport.from_finetune_report(report)},
        preprocessing=_preprocessing(model, None),
        suggested_name=suggested_name(config["architecture"], "finetune", report.get("data")),
        base_model=base_model, notes=[] if classifiers else ["encoder-only export of a fine-tuned model"],
    )
    return model, info, []


# ------------------------------------------------------------------------------------------ writing
def _preprocessing(model: nn.Module, report: EvaluationReport | None) -> Preprocessing:
    """The preprocessing the reported numbers were measured with.

    ``timm_selfcon.engine.evaluate`` resizes to the model's ``input_size`` and normalises with the model's
    ``pretrained_cfg`` mean / std (a report that records ``preprocessing`` overrides them); crop_pct 1.0, bilinear.
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    recorded = report.preprocessing if report is not None else {}
    input_size = list(cfg.get("input_size", (3, 224, 224)))
    if recorded.get("image_size"):
        input_size = [input_size[0], int(recorded["image_size"]), int(recorded["image_size"])]
    return Preprocessing(
        input_size=input_size,
        mean=list(recorded.get("mean") or cfg.get("mean")),
        std=list(recorded.get("std") or cfg.get("std")),
        crop_pct=float(recorded.get("crop_pct", 1.0)),
        crop_mode="center",
        interpolation=recorded.get("interpolation", "bilinear"),
    )


def _write_timm_files(model: nn.Module, folder: Path, info: ExportInfo) -> None:
    pre = info.preprocessing
    heads = info.classifier_names
    model.pretrained_cfg = {
        **model.pretrained_cfg,
        "num_classes": info.num_classes,
        "label_names": info.label_names,
        "classifier": tuple(heads) if len(heads) > 1 else heads[0],
        "tag": (info.suggested_name or "").partition(".")[2] or None,
        "license": info.license,
        "description": f"timm-selfcon export ({'encoder only' if info.encoder_only else 'with classifiers'})",
    }
    model_config = {"label_names": info.label_names} if info.label_names else None
    save_for_hf(model, str(folder), model_config=model_config, model_args=info.model_args,
                safe_serialization=True,
                data_config=dict(input_size=tuple(pre.input_size), mean=tuple(pre.mean), std=tuple(pre.std),
                                 crop_pct=pre.crop_pct, crop_mode=pre.crop_mode, interpolation=pre.interpolation))
    pickles = [p.name for p in folder.iterdir() if p.name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise RuntimeError(f"save_for_hf wrote pickle files {pickles}; exports must hold safetensors only")
    if not (folder / "model.safetensors").is_file():
        raise RuntimeError("save_for_hf wrote no model.safetensors")


def _check_round_trip(model: nn.Module, folder: Path) -> None:
    """Load the folder the way users will (``local-dir:``) and compare every tensor."""
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    own, back = model.state_dict(), loaded.state_dict()
    if own.keys() != back.keys():
        raise RuntimeError(f"the export does not load back with timm.create_model: keys differ "
                           f"({sorted(set(own) ^ set(back))[:6]})")
    different = [k for k in own if not torch.equal(own[k].cpu(), back[k].cpu())]
    if different:
        raise RuntimeError(f"the export loads back with different tensors: {different[:6]}")


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse, before any work, an ``out_dir`` that holds files: an earlier export unless ``overwrite``, anything else
    always (the rule of ``train``'s ``output_dir``)."""
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    if not out_dir.is_dir() or not (out_dir / EXPORT_INFO).exists():
        raise UserInputError(f"out_dir {str(out_dir)!r} exists and is not an earlier timm-selfcon export; "
                             "choose an empty or new folder")
    if not overwrite:
        raise UserInputError(f"out_dir {str(out_dir)!r} already holds an export ({EXPORT_INFO}, ...); exporting again "
                             "would replace it. Use a new out_dir, or --overwrite (overwrite=True) to replace it")


def _version() -> str:
    from .. import __version__

    return __version__
