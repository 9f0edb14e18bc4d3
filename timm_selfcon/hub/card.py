"""Model cards for exported SelfCon / MixCo models: YAML metadata, usage, recipe, results, citations.

Papers: SelfCon (Bae et al., AAAI 2023, arXiv 2106.15499) and MixCo (Kim et al., arXiv 2010.06300).

The card is rendered from ``hub_cards/model_card.md`` (a Jinja template, rendered with ``jinja2``) and the
export's ``export_info.json`` alone (an :class:`~timm_selfcon.hub.records.ExportInfo`), so ``push`` can render it
again with the real repository id right before an upload. The YAML front matter is built with huggingface_hub's
``ModelCardData``; its ``model-index`` comes from the evaluation report (``eval/<protocol>/report.json``) through
``EvalResult``, one metric per head.

Every decision that depends on the training method is taken by the functions of the "method-specific decisions"
section, the only readers of the method tables.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..config import convert_legacy_method_keys
from ..data.loading import dataset_short_name  # re-exported: the card's and the checkpoints' tags
from ..errors import UserInputError
from ..methods import METHODS, MethodOptions, TrainingMethod
from .records import Accuracy, EvaluationReport, ExportInfo

__all__ = [
    "CARD_TEMPLATE",
    "PROTOCOL_DESCRIPTIONS",
    "card_eval_results",
    "check_repo_id",
    "dataset_hub_id",
    "dataset_short_name",
    "public_text",
    "render_card",
]

# hub_cards/model_card.md in the repository; templates/model_card.md is a link to it that wheels ship as a copy
CARD_TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
REPO_ID_PLACEHOLDER = "ORG/NAME"

FINETUNE = "finetune"  # the recipe "method" of a `timm-selfcon finetune` output: not a training method
FINETUNE_DESCRIPTION = ("Fine-tuning of the whole encoder (exits removed) with a new classifier and cross-entropy "
                        "(`timm-selfcon finetune`).")


# ------------------------------------------------------------------------------------------ method-specific decisions
# Every method-specific line of the card comes from the method's own declaration (timm_selfcon.methods).
def _method(method: str | None) -> type[TrainingMethod] | None:
    return METHODS.get(method) if method else None


def _method_text(recipe: Mapping[str, Any]) -> str:
    """The card's paragraph on the training method: its declared card text, and where its heads went."""
    method = recipe.get("method")
    cls = _method(method)
    if method == FINETUNE:
        return FINETUNE_DESCRIPTION
    if cls is None:
        return f"Method `{method}`."
    options = _method_options(recipe)
    text = cls.card_text(options) if options is not None else cls.description
    if _trains_projection_heads(method):
        text += (" The projection heads used for training are not part of this model (they stay in the training "
                 "checkpoint).")
    return text


def _method_family(method: str | None, has_exits: bool) -> str:
    """The family named in the card's first sentence: the method's declared one, else SelfCon (a model with exits)
    or timm-selfcon."""
    cls = _method(method)
    if cls is not None and cls.card_family:
        return cls.card_family
    return "SelfCon" if has_exits else "timm-selfcon"


def _method_tags(method: str | None) -> list[str]:
    """The card's metadata tags that name the method's kind."""
    cls = _method(method)
    if cls is not None:
        return list(cls.card_tags)
    return ["selfcon", "fine-tuned"] if method == FINETUNE else ["selfcon"]


def _is_finetune(method: str | None) -> bool:
    """Whether the model is a fine-tuning output (``timm-selfcon finetune``) rather than a pretraining run."""
    return method == FINETUNE


def _trains_projection_heads(method: str | None) -> bool:
    """Whether training used projection heads, which stay in the training checkpoint (not in the export)."""
    cls = _method(method)
    return cls is not None and "out_dim" in cls.Options.model_fields


def _method_options(recipe: Mapping[str, Any]) -> MethodOptions | None:
    """The options the run's method used, read with the method's own ``Options`` model from the recipe's
    ``method_kwargs`` (a recipe saved before 0.4, with the options at the top level, is converted first; entries
    the method does not take are left out); None for a recipe without a registered method, or with a value this
    version's method does not accept."""
    cls = _method(recipe.get("method"))
    if cls is None:
        return None
    fields = cls.Options.model_fields
    values = convert_legacy_method_keys(recipe, fields)
    try:
        return cls.Options(**{k: v for k, v in dict(values.get("method_kwargs") or {}).items() if k in fields})
    except (UserInputError, TypeError):
        return None


def _method_option_rows(recipe: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(option, value used, the method's default, what it is)`` for every option the method declares."""
    options = _method_options(recipe)
    if options is None:
        return []
    return [(name, _value_text(getattr(options, name)), _value_text(field.default), field.description or "")
            for name, field in type(options).model_fields.items()]


def _value_text(value: Any) -> str:
    if isinstance(value, (bool, type(None))):
        return json.dumps(value)  # true / false / null, as in the recipe
    return f"`{json.dumps(value)}`" if isinstance(value, (dict, list)) else str(value)


# ------------------------------------------------------------------------------------------ protocols, datasets
#: the card's paragraphs on the numbers that come from no evaluation protocol; each protocol has its own paragraph
#: in its registration (``Protocol.card_description``, engine/evaluation/)
PROTOCOL_DESCRIPTIONS: dict[str, str] = {
    "finetune": "Fine-tuning of the whole encoder (exits removed) with a new classifier.",
    "trained": "The classifier trained end to end with the encoder (cross-entropy training).",
}
SELECTION_NOTE = {
    "last": "last probe epoch",
    "best_val": "epoch chosen on a validation split held out from the training data",
    "best_test": "epoch chosen on the test split (the papers' protocol; optimistic)",
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_BUILTIN_SOURCES = {"builtin:cifar10_subset": "uoft-cs/cifar10"}
_NO_ACCURACY = Accuracy()


def check_repo_id(repo_id: str) -> None:
    """Raise :class:`UserInputError` unless ``repo_id`` is a valid Hub model id of the form ``ORG/NAME``.

    The characters and length are huggingface_hub's rules (``validate_repo_id``); the ``ORG/`` part is required
    here, since the card's usage snippet and the upload need the full id.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UserInputError(f"repo_id must look like 'ORG/NAME', got {repo_id!r}: {err}") from err
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise UserInputError(f"repo_id must look like 'ORG/NAME' (an organisation or user name, '/', a model name), "
                             f"got {repo_id!r}")


def dataset_hub_id(data: str | None) -> str | None:
    """The Hub dataset id behind a recipe's ``data`` (``uoft-cs/cifar10``), or None for local folders.

    The shipped ``builtin:cifar10_subset`` is a subset of ``uoft-cs/cifar10`` (the card says so).
    """
    if not data:
        return None
    data = str(data)
    if data in _BUILTIN_SOURCES:
        return _BUILTIN_SOURCES[data]
    if data.startswith(("hf://datasets/", "hf-hub:")):
        data = data.split(":", 1)[1].removeprefix("//datasets/")
    if _HUB_ID.match(data) and not Path(data).exists():
        return data
    return None


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def _as_export_info(info: ExportInfo | Mapping[str, Any]) -> ExportInfo:
    return info if isinstance(info, ExportInfo) else ExportInfo.from_dict(info)


def head_label(name: str, info: ExportInfo) -> str:
    """``exit_0`` -> ``exit 0 (after stage 2, fc)``; ``backbone``, ``ensemble`` explained."""
    if name == "backbone":
        return "backbone (last stage)"
    if name == "ensemble":
        return "ensemble (mean of all heads' logits)"
    match = re.fullmatch(r"exit_(\d+)", name)
    stages = info.exits.stages if info.exits else []
    if match and int(match.group(1)) < len(stages):
        return f"exit {match.group(1)} (after stage {stages[int(match.group(1))]}, `{info.exits.sub_network}`)"
    return name


def exported_heads(info: ExportInfo, report: EvaluationReport) -> list[str]:
    """The report's heads that describe this export: exits and the ensemble only when exits are exported."""
    names = list(report.results)
    if info.with_exits:
        return names
    return [n for n in names if n == "backbone"]


def _accuracies(accuracy: Accuracy | None) -> list[tuple[str, float]]:
    """``(metric, value)`` of the top-1 / top-5 an entry reports."""
    accuracy = accuracy or _NO_ACCURACY
    return [(metric, value) for metric in ("top1", "top5") if (value := getattr(accuracy, metric)) is not None]


def card_eval_results(info: ExportInfo | Mapping[str, Any], protocol: str | None = None) -> list[EvalResult]:
    """``EvalResult`` entries (one per head and metric) of the evaluation behind the export.

    Linear protocols: top-1 and top-5 (%) of every exported head at the report's ``last`` epoch; kNN: top-1 per
    ``k``; fine-tuning: top-1 and top-5 of the last epoch. Values are the report's numbers, unrounded.
    """
    info = _as_export_info(info)
    protocol = protocol or info.card_protocol
    if not protocol or protocol not in info.evaluations:
        return []
    report = info.evaluations[protocol]
    data = report.dataset.data
    common = dict(task_type="image-classification", task_name="Image Classification",
                  dataset_type=dataset_hub_id(data) or dataset_short_name(data), dataset_name=_dataset_title(data),
                  dataset_split=report.dataset.eval_split)
    results: list[EvalResult] = []
    if protocol == "finetune":
        for metric, value in _accuracies(report.final):
            results.append(EvalResult(metric_type="accuracy", metric_value=value,
                                      metric_name=f"{_metric_title(metric)} (fine-tuned)", **common))
        return results
    for head in exported_heads(info, report):
        entry = report.results[head]
        if _top1_per_k(protocol):
            for key, value in entry.knn.items():
                results.append(EvalResult(metric_type="accuracy", metric_value=value,
                                          metric_name=f"kNN top-1 ({key.replace('k', 'k=')}), {head}", **common))
            continue
        for metric, value in _accuracies(entry.last):
            results.append(EvalResult(metric_type="accuracy", metric_value=value,
                                      metric_name=f"{_metric_title(metric)}, {head} ({protocol})", **common))
    return results


def _metric_title(metric: str) -> str:
    return {"top1": "Top-1 accuracy", "top5": "Top-5 accuracy"}.get(metric, metric)


def _dataset_title(data: str | None) -> str:
    if data == "builtin:cifar10_subset":
        return "CIFAR-10 (5,000-image subset shipped with timm-selfcon)"
    hub = dataset_hub_id(data)
    return hub or dataset_short_name(data)


def _evaluation_sections(info: ExportInfo) -> list[dict[str, Any]]:
    sections = []
    for protocol, report in info.evaluations.items():
        dataset = report.dataset
        section: dict[str, Any] = dict(
            title=f"Protocol `{protocol}`", description=_protocol_description(protocol, report),
            exported=protocol == info.classifiers_protocol and not info.encoder_only,
            dataset=dataset.data, train_split=dataset.train_split, eval_split=dataset.eval_split,
            num_classes=dataset.num_classes, hyperparameters=_settings(report),
            deviations="; ".join(report.deviations), columns=[], rows=[], early_exit=[])
        results = report.results
        if protocol == "finetune":
            last = report.final or _NO_ACCURACY
            section["columns"] = ["model", "top-1 (%)", "top-5 (%)", "epoch"]
            section["rows"] = [["fine-tuned encoder", _pct(last.top1), _pct(last.top5),
                                "-" if last.epoch is None else str(last.epoch)]]
        elif _top1_per_k(protocol):
            ks = sorted({k for entry in results.values() for k in entry.knn}, key=lambda k: int(k.lstrip("k")))
            section["columns"] = ["head", *[f"top-1 (%), {k.replace('k', 'k=')}" for k in ks]]
            section["rows"] = [[head_label(h, info), *[_pct(results[h].knn.get(k)) for k in ks]] for h in results]
        elif results:
            section["columns"] = ["head", "top-1 (%)", "top-5 (%)", "top-1, best on val (%)",
                                  "top-1, best on test (%)"]
            for head, entry in results.items():
                last = entry.last or _NO_ACCURACY
                by_val, by_test = entry.best_val or _NO_ACCURACY, entry.best_test or _NO_ACCURACY
                section["rows"].append([head_label(head, info), _pct(last.top1), _pct(last.top5),
                                        _pct(by_val.top1), _pct(by_test.top1)])
            section["description"] += (" Columns: the last probe epoch (reported in the metadata), the epoch chosen on "
                                       "a held-out validation split, and the epoch chosen on the test split (the "
                                       "papers' protocol; optimistic).")
        for row in report.early_exit:
            section["early_exit"].append(dict(
                threshold=f"{row.threshold:g}", top1=_pct(row.top1),
                mean_mflops=f"{row.mean_flops / 1e6:.1f}", full_mflops=f"{row.full_flops / 1e6:.1f}",
                exit_fraction=" / ".join(f"{f:.2f}" for f in row.exit_fraction)))
        sections.append(section)
    return sections


def _protocol_description(protocol: str, report: EvaluationReport) -> str:
    """The protocol's paragraph, from its registration: the papers' protocol is called so only when its report says
    it ran with the papers' settings."""
    from ..engine.evaluation.registry import protocols

    registered = protocols().get(protocol)
    if registered is not None:
        return registered.card_description(report.papers_protocol)
    return PROTOCOL_DESCRIPTIONS.get(protocol, "")


def _top1_per_k(protocol: str) -> bool:
    """Whether the protocol's results are top-1 per neighbour count (kNN's), as its registration declares."""
    from ..engine.evaluation.registry import protocols

    registered = protocols().get(protocol)
    return registered is not None and registered.result_shape == "top-1 per k"


#: evaluation keys the card lists beside the protocol's hyperparameters (the dataset line names data and splits)
CARD_SETTINGS = ("max_train_samples", "val_fraction", "image_size", "seed", "pretrained")


def _settings(report: EvaluationReport) -> str:
    """The protocol's hyperparameters, then (in reports that record them) the evaluation's other settings and the
    rows the classifiers were trained, validated and tested on."""
    parts = [f"{key} {value}" for key, value in (report.hyperparameters or {}).items() if value is not None]
    settings = report.settings
    if settings:
        parts += [f"{key} {settings[key]}" for key in CARD_SETTINGS
                  if settings.get(key) is not None and key not in report.hyperparameters]
        rows = _mapping_of(report.raw.get("dataset"))
        if rows.get("train_rows") is not None:
            parts.append(f"classifiers trained on {rows['train_rows']} rows"
                         + (f", validated on {rows['val_rows']}" if rows.get("val_rows") else "")
                         + f", tested on {rows.get('test_rows')}")
    return "; ".join(parts)


def _mapping_of(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# ------------------------------------------------------------------------------------------ no local paths
#: an absolute local path: "/" after a quote, space, "(", "=", ":" or a line start, not "//" (URLs), with 1+ parts
_LOCAL_PATH = re.compile(r"(?<![^\s'\"`(\[=:])/(?!/)[^\s'\"`|)\]]+")


def public_text(text: str) -> str:
    """``text`` with every absolute local path replaced by ``…/<its last part>``: a card is published, and the folders
    of the machine that exported it (user names, mount points) are no one's business. URLs are left alone."""

    def shorten(match: re.Match[str]) -> str:
        path = match.group(0)
        trailing = path[len(path.rstrip(".,;:")):]  # a sentence's punctuation after the path stays
        name = path[:len(path) - len(trailing)].rstrip("/").rsplit("/", 1)[-1]
        return f"…/{name}{trailing}" if name else path

    return _LOCAL_PATH.sub(shorten, text)


#: The recipe keys the card's table lists (the method's options follow in their own table, from its declaration).
RECIPE_KEYS = ("model", "model_kwargs", "method", "data", "class_list", "augmentation", "image_size", "epochs",
               "max_steps", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "warmup_epochs",
               "precision", "seed")


def _recipe_rows(recipe: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(key, _value_text(recipe[key])) for key in RECIPE_KEYS if key in recipe and recipe[key] not in (None, {}, [])]


def _summary(info: ExportInfo) -> str:
    method = info.method
    exits = info.exits
    parts = [f"A {_method_family(method, has_exits=exits is not None)} `{info.architecture}` model"]
    if _is_finetune(method):
        parts.append(f"fine-tuned on `{info.recipe.get('data')}`")
    elif method:
        parts.append(f"trained with `{method}` on `{info.recipe.get('data')}`")
    text = " ".join(parts) + ", packaged for `timm.create_model`."
    if exits and info.with_exits:
        text += (f" It has {len(exits.stages)} sub-network exit(s) (`{exits.sub_network}`) after stage(s) "
                 f"{', '.join(str(s) for s in exits.stages)} in timm's `feature_info` numbering, each with its own "
                 "classifier when classifiers are included, so it supports ensembling and early exit.")
    elif exits:
        text += " The exits used in training were removed from this export (backbone only)."
    if info.encoder_only:
        text += " This is an **encoder-only** export (`num_classes=0`): `model(x)` returns pooled features."
    elif info.classifiers_protocol in ("finetune", "trained"):
        text += f" Its classifier ({info.num_classes} classes) was trained together with the encoder."
    else:
        text += (f" The linear classifier(s) ({info.num_classes} classes) come from the evaluation protocol "
                 f"`{info.classifiers_protocol}`.")
    return text


def _details(info: ExportInfo) -> list[tuple[str, str]]:
    pre = info.preprocessing
    exits = info.exits
    rows = [
        ("architecture", f"`{info.architecture}`"),
        ("parameters", f"{info.num_params / 1e6:.2f} M"),
        ("classes", str(info.num_classes) + (" (encoder only)" if info.encoder_only else "")),
        ("exits", "none" if not exits else (
            f"stages {exits.stages}, sub-network `{exits.sub_network}`" if info.with_exits
            else f"removed (trained with stages {exits.stages}, `{exits.sub_network}`)")),
        ("classifiers", "none" if info.encoder_only else
         f"{', '.join(f'`{n}`' for n in info.classifier_names)} from `{info.classifiers_protocol}`"),
        ("input", f"{pre.input_size}, crop_pct {pre.crop_pct}, {pre.interpolation}"),
        ("mean / std", f"{pre.mean} / {pre.std}"),
    ]
    if info.label_names:
        names = info.label_names
        shown = ", ".join(str(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
        rows.append(("labels", shown))
    source = info.source
    if source and source.checkpoint:
        rows.append(("source checkpoint", f"`{source.checkpoint}`" + (
            f" (step {source.step})" if source.step is not None else "")))
    if info.base_model:
        rows.append(("base model", f"[{info.base_model}](https://huggingface.co/{info.base_model})"))
    method = _method(info.method)
    if method is not None:
        rows.append(("training method", method.paper))
    rows.append(("papers", "SelfCon arXiv:2106.15499; MixCo arXiv:2010.06300"))
    return rows


def _card_data(info: ExportInfo, model_name: str) -> ModelCardData:
    tags = ["image-classification", "timm", "timm-selfcon", "contrastive-learning", *_method_tags(info.method)]
    if info.with_exits and info.exits:
        tags += ["multi-exit", "early-exit"]
    datasets = []
    for data in (info.recipe.get("data"), *[report.dataset.data for report in info.evaluations.values()]):
        hub = dataset_hub_id(data)
        if hub and hub not in datasets:
            datasets.append(hub)
    eval_results = card_eval_results(info) or None
    return ModelCardData(
        library_name="timm",
        pipeline_tag="image-feature-extraction" if info.encoder_only else "image-classification",
        license=info.license or "apache-2.0",
        tags=list(dict.fromkeys(tags)),
        datasets=datasets or None,
        base_model=info.base_model or None,
        metrics=["accuracy"] if eval_results else None,
        model_name=model_name,
        eval_results=eval_results,
    )


def render_card(info: ExportInfo | Mapping[str, Any], repo_id: str | None = None,
                template_path: str | Path | None = None) -> ModelCard:
    """The model card of an export (its :class:`ExportInfo`, or ``export_info.json``'s contents) for ``repo_id``.

    ``repo_id`` is ``ORG/NAME``; without it the usage snippet uses the export's suggested name under ``ORG/``.
    """
    info = _as_export_info(info)
    template_path = Path(template_path or CARD_TEMPLATE)
    if not template_path.is_file():
        raise ValueError(f"model card template {str(template_path)!r} not found (expected hub_cards/model_card.md "
                         "in the timm-selfcon repository)")
    repo_id = repo_id or f"ORG/{info.suggested_name or info.architecture}"
    model_name = repo_id.split("/")[-1]
    card_data = _card_data(info, model_name)
    recipe = info.recipe
    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                                     undefined=jinja2.StrictUndefined, autoescape=False)
    template = environment.from_string(template_path.read_text(encoding="utf-8"))
    content = template.render(
        card_data=card_data.to_yaml(),
        title=f"{model_name}",
        summary=_summary(info),
        notes=list(info.notes),
        repo_id=repo_id,
        architecture=info.architecture,
        has_classifiers=not info.encoder_only,
        with_exits=bool(info.with_exits and info.exits),
        num_classes=info.num_classes,
        num_features="D" if info.num_features is None else info.num_features,
        details=_details(info),
        model_args_json=json.dumps(info.model_args),
        method_description=_method_text(recipe) if recipe else "No training recipe recorded.",
        provenance=recipe.get("provenance") or (info.source.provenance if info.source else None) or "not recorded",
        recipe_rows=_recipe_rows(recipe),
        method_name=recipe.get("method") or "",
        options_model=type(_method_options(recipe)).__name__ if _method_options(recipe) is not None else "",
        method_option_rows=_method_option_rows(recipe),
        recipe_yaml=yaml.safe_dump(dict(recipe), sort_keys=False).strip() if recipe else "",
        evaluations=_evaluation_sections(info),
        version="?" if info.timm_selfcon_version is None else info.timm_selfcon_version,
    )
    return ModelCard(public_text(content))
