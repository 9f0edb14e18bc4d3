"""Evaluation: linear probes per exit and of the ensemble, kNN, early exit; a JSON report, classifiers and a plot.

Protocols (``protocol=``):

- ``linear``: the papers' protocol (SelfCon arXiv 2106.15499, MixCo arXiv 2010.06300): frozen encoder in
  eval mode, one linear classifier per output (each exit and the backbone) on pooled pre-head features,
  train-time crop + flip, SGD (lr 3, momentum 0.9, wd 0, batch 512), 100 epochs, x0.1 at 60 and 80.
- ``linear_fast``: a documented deviation: features are extracted once without augmentation and the
  classifiers are trained on the cache (standardised features, SGD lr 0.1, cosine). Much faster; its numbers
  are labelled ``linear_fast`` and are not the papers' protocol.
- ``knn``: cosine kNN on L2-normalised backbone features, k = 20 and 200, votes weighted by exp(sim / 0.07).
- ``early_exit``: the linear classifiers plugged into the model, ``forward_early_exit`` over a threshold sweep,
  accuracy and mean FLOPs per image.

Reported top-1/top-5 for ``backbone``, each ``exit_k`` and ``ensemble`` (mean of the heads' logits):
``last`` (last epoch; the default), ``best_val`` (epoch chosen on a validation split held out from the
training data) and ``best_test`` (epoch chosen on the test split itself, labelled as the papers' protocol:
optimistic). Evaluation never modifies a training checkpoint: it writes ``<output_dir>/eval/<protocol>/``.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import (
    NORMALIZATION,
    ContrastiveImageDataset,
    build_eval_loader,
    build_transform,
    class_names,
    load_image_dataset,
    report_substitutions,
    resolve_columns,
    split_train_val,
)
from ..errors import UserInputError
from ..models.factory import create_model
from .checkpoint import match_umask

PROTOCOLS = ("linear", "linear_fast", "knn", "early_exit", "all")
EARLY_EXIT_THRESHOLDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)


#: The dataset a timm model name is evaluated on when no ``data=`` is given (a training run uses its own).
DEFAULT_EVAL_DATA = "uoft-cs/cifar10"


@dataclass
class EvalConfig:
    """Evaluation keys (``timm-selfcon eval MODEL key=value ...``).

    ``data``, ``train_split``, ``split``, ``image_column`` and ``label_column`` left at None mean: a training run's
    or checkpoint's own (its ``config.yaml``: ``data``, ``train_split``, ``eval_split``, columns, ``class_list``),
    or for a timm model name ``uoft-cs/cifar10`` with ``train`` / ``test``. ``data=`` overrides the run's dataset;
    then the splits default to ``train`` / ``test`` and the columns are detected, unless given.
    """

    data: str | None = None
    train_split: str | None = None
    split: str | None = None
    val_fraction: float = 0.1
    image_column: str | None = None
    label_column: str | None = None
    protocol: str = "linear_fast"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 512
    milestones: tuple[float, float] = (0.6, 0.8)
    knn_k: tuple[int, ...] = (20, 200)
    knn_temperature: float = 0.07
    image_size: int | None = None
    num_workers: int = 2
    seed: int = 0
    output: str | None = None
    output_dir: str | None = None
    max_train_samples: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> EvalConfig:
        if self.protocol not in PROTOCOLS:
            raise UserInputError(f"unknown protocol {self.protocol!r}; expected one of {list(PROTOCOLS)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserInputError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        return self


# ------------------------------------------------------------------------------------------ loading
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
        from .train import select_classes

        _, label = resolve_columns(hf, image_column or choice.image_column, label_column or choice.label_column,
                                   data=choice.data)
        hf = select_classes(hf, label, choice.class_list)
    return hf


def load_encoder(source: str | os.PathLike[str], **model_kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The encoder to evaluate and where it came from.

    ``source`` is a training checkpoint directory, a training ``output_dir`` (its ``last``), or a timm model
    name (``selfcon_resnet18_cifar``, ``hf-hub:org/name``, ``local-dir:/path``). A checkpoint that does not fit
    its model is refused with the missing and unexpected keys (never a silently random encoder).
    """
    from ..config import load_saved_config
    from ..methods import build_method
    from .checkpoint import resolve_checkpoint
    from .train import method_kwargs, training_normalization

    path = Path(source)
    check_model_source(str(source))
    if path.exists():
        if model_kwargs:
            raise UserInputError(f"model_kwargs {model_kwargs} apply to a timm model name; the checkpoint {str(path)!r} "
                             "builds its model from its own config.yaml")
        checkpoint = resolve_checkpoint(path).resolve()  # ``last`` -> the ckpt-<step> it names, for the report
        run_dir = checkpoint.parent
        import yaml

        config = load_saved_config(yaml.safe_load((run_dir / "config.yaml").read_text()))
        state = _read_weights(checkpoint)
        model = create_model(config.model, num_classes=0, **config.model_kwargs)
        if config.method == "ce":
            model.reset_classifier(_checkpoint_num_classes(model, state, checkpoint))
        with warnings.catch_warnings():
            # the method is built only to name the checkpoint's keys; its training-time advice does not apply
            warnings.filterwarnings("ignore", message="method 'ce' trains only the backbone")
            method = build_method(config.method, model, **method_kwargs(config))
        load_strict(method, state, what=f"checkpoint {checkpoint}")
        encoder = method.encoder
        # evaluate and export with the normalisation and size the encoder was trained with (e.g. CIFAR-100 stats)
        mean, std = training_normalization(config.data)
        size = config.image_size
        encoder.pretrained_cfg = {**encoder.pretrained_cfg, "mean": tuple(mean), "std": tuple(std),
                                  "input_size": (3, size, size)}
        info = dict(model=config.model, model_kwargs=config.model_kwargs, checkpoint=str(checkpoint),
                    run_dir=str(run_dir), method=config.method, data=config.data, recipe=config.to_dict())
        return encoder, info
    model = create_model(str(source), pretrained=str(source).startswith(("hf-hub:", "local-dir:")),
                              **model_kwargs)
    return model, dict(model=str(source), model_kwargs=model_kwargs, checkpoint=None, run_dir=None)


def check_model_source(source: str) -> None:
    """Refuse, with the way on, a path that does not exist and a timm model folder given as a checkpoint."""
    if source.startswith("local-dir:"):
        folder = Path(source.removeprefix("local-dir:"))
        if not (folder / "config.json").is_file():
            what = "does not exist" if not folder.exists() else "holds no config.json (not a timm model folder)"
            raise UserInputError(f"{source!r}: the folder {str(folder)!r} {what}")
        return
    if source.startswith(("hf-hub:", "hf_hub:")):
        return
    path = Path(source)
    if not path.exists():
        if "/" in source or os.sep in source:
            raise UserInputError(f"{source!r} does not exist: expected a training run folder, a ckpt-<step> "
                                 "checkpoint, a timm model name, hf-hub:ORG/NAME or local-dir:FOLDER")
        return  # a timm model name; create_model suggests the nearest if it is unknown
    if path.is_dir() and (path / "config.json").is_file() and not (path / "last").exists() and not (
            path / "trainer_state.json").is_file():
        raise UserInputError(f"{source!r} is a timm model folder (an export or fine-tuning output: config.json, no "
                             f"training checkpoint); give it as local-dir:{source}")


def _checkpoint_num_classes(model: nn.Module, state: dict[str, torch.Tensor], checkpoint: Path) -> int:
    """Classes of a ``ce`` checkpoint: rows of the backbone classifier's weight (``<method attr>.<classifier>.weight``).

    Matched on the exact classifier name, not a suffix: an ``fc`` exit's ``exits.0.fc.weight`` also ends in ``fc.weight``.
    """
    names = model.classifier_names() if hasattr(model, "classifier_names") else model.pretrained_cfg.get("classifier", "fc")
    backbone = names[0] if isinstance(names, (tuple, list)) else names
    rows = {int(v.shape[0]) for k, v in state.items() if k.partition(".")[2] == f"{backbone}.weight"}
    if len(rows) != 1:
        raise UserInputError(f"checkpoint {str(checkpoint)!r} of a 'ce' run has no single backbone classifier "
                         f"'{backbone}.weight' (found {sorted(rows)} sizes); cannot tell its number of classes")
    return rows.pop()


def _read_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from .checkpoint import accelerate_state_dir

    state_dir = accelerate_state_dir(checkpoint)
    files = sorted(state_dir.glob("model*.safetensors"))
    if not files:
        raise UserInputError(f"no model.safetensors in checkpoint {str(state_dir)!r}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    return state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists the missing and unexpected keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        raise UserInputError(
            f"{what} does not fit the model: {len(missing)} missing keys {missing[:8]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:8]}, {len(mismatched)} with other shapes {mismatched[:8]}")
    module.load_state_dict(state, strict=True)


# ------------------------------------------------------------------------------------------ features
@torch.no_grad()
def extract_exit_features(encoder: nn.Module, loader: DataLoader, desc: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Frozen features per output (exits in depth order, backbone last): ``[N, D]`` each, and labels ``[N]``."""
    encoder.eval()
    device = next(encoder.parameters()).device
    outputs: list[list[torch.Tensor]] = []
    labels = []
    seen: set[int] = set()
    for batch in tqdm(loader, desc=desc, leave=False):
        report_substitutions(loader.dataset, batch, seen)
        feats = forward_outputs(encoder, batch["image"][:, 0].to(device))
        if not outputs:
            outputs = [[] for _ in feats]
        for store, f in zip(outputs, feats):
            store.append(f.float().cpu())
        labels.append(batch["label"])
    return [torch.cat(o) for o in outputs], torch.cat(labels)


def forward_outputs(encoder: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    if hasattr(encoder, "forward_exits"):
        return encoder.forward_exits(images)
    return [encoder.forward_head(encoder.forward_features(images), pre_logits=True)]


def output_names(num_outputs: int) -> list[str]:
    return [f"exit_{k}" for k in range(num_outputs - 1)] + ["backbone"]


# ------------------------------------------------------------------------------------------ metrics
def percent(count: int, total: int) -> float:
    """``100 * count / total`` computed exactly and rounded to 4 decimals: what was measured, without float32
    artefacts (``42.6``, not ``42.59999990463257``); one image of 10,000 is 0.01."""
    return round(100.0 * count / total, 4)


def topk(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    out = {}
    for k in ks:
        k_eff = min(k, logits.shape[-1])
        hits = int((logits.topk(k_eff, -1).indices == labels[:, None]).any(-1).sum())
        out[f"top{k}"] = percent(hits, len(labels))
    return out


def head_metrics(logits: list[torch.Tensor], labels: torch.Tensor) -> dict[str, dict[str, float]]:
    """Top-1/5 of every head and of the ensemble (mean of the heads' logits)."""
    names = output_names(len(logits))
    metrics = {name: topk(lg, labels) for name, lg in zip(names, logits)}
    if len(logits) > 1:
        metrics["ensemble"] = topk(torch.stack(logits).mean(0), labels)
    return metrics


# ------------------------------------------------------------------------------------------ probes
@dataclass
class ProbeRun:
    heads: nn.ModuleList
    history: list[dict[str, Any]]
    report: dict[str, Any]


def _selection(history: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """last / best-on-validation / best-on-test (papers' protocol) per head."""
    report: dict[str, Any] = {}
    for name in names:
        last = history[-1]["test"][name]
        by_val = max(history, key=lambda h: h["val"][name]["top1"]) if history[0]["val"] else None
        by_test = max(history, key=lambda h: h["test"][name]["top1"])
        report[name] = dict(
            last=last,
            best_val=None if by_val is None else dict(by_val["test"][name], epoch=by_val["epoch"],
                                                        val_top1=by_val["val"][name]["top1"]),
            best_test=dict(by_test["test"][name], epoch=by_test["epoch"],
                           note="epoch chosen on the test split (the papers' protocol; optimistic)"),
        )
    return report


def train_heads(train_feats: list[torch.Tensor] | None, train_y: torch.Tensor | None, num_classes: int, *,
                epochs: int, lr: float, batch_size: int, milestones: tuple[float, float] | None, seed: int,
                evaluate: Any, standardise: bool, augmented_batches: Any = None,
                widths: list[int] | None = None) -> ProbeRun:
    """Train one linear classifier per output, evaluating every epoch with ``evaluate(heads, norms)``.

    With ``augmented_batches`` (a callable yielding ``(features list, labels)`` per batch for one epoch) the
    features are recomputed each epoch (the faithful protocol); otherwise the cached ``train_feats`` are used.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    widths = widths or [f.shape[1] for f in train_feats]
    norms = [(f.mean(0), f.std(0).clamp_min(1e-6)) for f in train_feats] if standardise else None
    heads = nn.ModuleList([nn.Linear(w, num_classes) for w in widths])
    for head in heads:
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
    optimizer = torch.optim.SGD(heads.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    if milestones is None:
        steps = epochs * math.ceil(len(train_y) / batch_size)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        per_step = True
    else:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, [int(m * epochs) for m in milestones], gamma=0.1)
        per_step = False
    history = []
    for epoch in tqdm(range(1, epochs + 1), desc="probe epochs", leave=False):
        if augmented_batches is not None:
            batches = augmented_batches()
        else:
            order = torch.randperm(len(train_y), generator=generator)
            batches = (([f[order[s:s + batch_size]] for f in train_feats], train_y[order[s:s + batch_size]])
                       for s in range(0, len(train_y), batch_size))
        for feats, y in batches:
            if norms is not None:
                feats = [(f - m) / s for f, (m, s) in zip(feats, norms)]
            loss = sum(F.cross_entropy(head(f), y) for head, f in zip(heads, feats))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if per_step:
                scheduler.step()
        if not per_step:
            scheduler.step()
        history.append(dict(epoch=epoch, **evaluate(heads, norms)))
    return ProbeRun(heads=heads, history=history, report={})


def fold_standardisation(heads: nn.ModuleList, norms: list[tuple[torch.Tensor, torch.Tensor]] | None) -> nn.ModuleList:
    """Classifiers that apply to raw features: ``W (x - m) / s + b`` folded into one Linear."""
    if norms is None:
        return heads
    folded = nn.ModuleList()
    with torch.no_grad():
        for head, (mean, std) in zip(heads, norms):
            lin = nn.Linear(head.in_features, head.out_features)
            lin.weight.copy_(head.weight / std)
            lin.bias.copy_(head.bias - (head.weight * (mean / std)).sum(1))
            folded.append(lin)
    return folded


def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 ks: tuple[int, ...] = (20, 200), temperature: float = 0.07, chunk: int = 1024) -> dict[str, float]:
    """Weighted cosine kNN top-1 (percent) for each k: votes ``exp(sim / temperature)`` per neighbour's class."""
    train_n = F.normalize(train_x, dim=1)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    correct = dict.fromkeys(ks, 0)
    for start in range(0, len(test_x), chunk):
        sims = F.normalize(test_x[start:start + chunk], dim=1) @ train_n.T
        for k in ks:
            top_sim, top_idx = sims.topk(min(k, len(train_x)), dim=1)
            votes = torch.zeros(len(top_sim), num_classes)
            votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
            correct[k] += (votes.argmax(1) == test_y[start:start + chunk]).sum().item()
    return {f"k{k}": percent(correct[k], len(test_x)) for k in ks}


# ------------------------------------------------------------------------------------------ early exit
@torch.no_grad()
def segment_flops(model: nn.Module, input_size: tuple[int, int, int]) -> dict[str, float]:
    """FLOPs of one image through each part of a multi-exit model (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    x = torch.zeros(1, *input_size, device=next(model.parameters()).device)

    def count(fn, *args):
        with FlopCounterMode(display=False) as counter:
            out = fn(*args)
        return out, float(counter.get_total_flops())

    parts: dict[str, float] = {}
    h, parts["stage_0"] = count(model._forward_stem, x)
    exit_pos = 0
    if 0 in model.exit_stages:
        _, parts["exit_0"] = count(lambda t: model.exit_heads[0](model.exits[0](t)), h)
        exit_pos = 1
    for index in range(1, model.num_stages + 1):
        h, parts[f"stage_{index}"] = count(model._forward_stage, index, h)
        if index in model.exit_stages:
            pos = exit_pos
            _, parts[f"exit_{pos}"] = count(lambda t, p=pos: model.exit_heads[p](model.exits[p](t)), h)
            exit_pos += 1
    _, parts["head"] = count(lambda t: model.forward_head(model._forward_norm(t)), h)
    return parts


def exit_costs(model: nn.Module, parts: dict[str, float]) -> list[float]:
    """FLOPs per image for stopping at exit k (k < num_exits) and for the full model (last entry)."""
    costs, running, exit_pos = [], 0.0, 0
    for index in range(model.num_stages + 1):
        running += parts[f"stage_{index}"]
        if index in model.exit_stages:
            running += parts[f"exit_{exit_pos}"]
            costs.append(running)
            exit_pos += 1
    costs.append(running + parts["head"])
    return costs


@torch.no_grad()
def early_exit_sweep(model: nn.Module, loader: DataLoader, thresholds: tuple[float, ...] = EARLY_EXIT_THRESHOLDS,
                     input_size: tuple[int, int, int] | None = None) -> list[dict[str, float]]:
    """Accuracy and mean FLOPs per image of ``forward_early_exit`` at each threshold."""
    model.eval()
    device = next(model.parameters()).device
    costs = None
    rows = []
    for threshold in thresholds:
        correct, total, flops, exits = 0, 0, 0.0, torch.zeros(model.num_exits + 1)
        for batch in loader:
            images = batch["image"][:, 0].to(device)
            if costs is None:
                costs = torch.tensor(exit_costs(model, segment_flops(model, input_size or tuple(images.shape[1:]))))
            logits, index = model.forward_early_exit(images, threshold)
            correct += (logits.argmax(-1).cpu() == batch["label"]).sum().item()
            total += len(images)
            flops += costs[index.cpu()].sum().item()
            exits += torch.bincount(index.cpu(), minlength=model.num_exits + 1)
        rows.append(dict(threshold=threshold, top1=percent(correct, total), mean_flops=round(flops / total, 1),
                         full_flops=float(costs[-1]), exit_fraction=[round(int(n) / total, 6) for n in exits]))
    return rows


# ------------------------------------------------------------------------------------------ orchestration
def evaluate(source: str | os.PathLike[str], config: EvalConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Evaluate ``source`` (checkpoint, training output_dir or timm model name) and write the report.

    Returns the report dict; writes ``report.json``, ``classifiers.safetensors`` (linear protocols) and
    ``plot.png`` under ``<output_dir>/eval/<protocol>/`` (``output_dir`` = the training run's, or ``output_dir=``).
    """
    config = (config or EvalConfig(**overrides)).validate()
    if config.protocol == "all":
        reports = {p: evaluate(source, EvalConfig(**{**config.__dict__, "protocol": p, "output": None}))
                   for p in ("linear_fast", "knn", "early_exit", "linear")}
        if config.output:
            _write_json(Path(config.output), reports)
        return reports
    torch.manual_seed(config.seed)  # a timm model name without weights is initialised from this seed
    encoder, info = load_encoder(source, **config.model_kwargs)
    if config.protocol == "early_exit" and not getattr(encoder, "num_exits", 0):
        raise UserInputError(f"protocol 'early_exit' needs a multi-exit model; {info['model']} has no exits")
    encoder.to(torch.device("cuda" if torch.cuda.is_available() else "cpu")).eval()
    cfg = encoder.pretrained_cfg
    image_size = config.image_size or cfg["input_size"][-1]
    mean, std = cfg.get("mean", NORMALIZATION["imagenet"][0]), cfg.get("std", NORMALIZATION["imagenet"][1])
    choice = choose_data(info, config.data, config.train_split, config.split, config.image_column,
                         config.label_column)
    data = choice.data
    print(f"evaluating {info['model']} on {choice.describe()}", file=sys.stderr)
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
    plain = build_transform("eval", image_size, mean, std)

    def loader(hf, transform=plain, shuffle_epoch: int | None = None):
        ds = ContrastiveImageDataset(hf, transform, image_col, label_col, seed=config.seed)
        if shuffle_epoch is not None:
            ds.set_epoch(shuffle_epoch)
        return build_eval_loader(ds, config.batch_size, config.num_workers)

    out_dir = eval_output_dir(config.output_dir, info) / "eval" / config.protocol
    report: dict[str, Any] = dict(
        model=info["model"], model_kwargs=info.get("model_kwargs"), checkpoint=info["checkpoint"],
        method=info.get("method"), dataset=dict(data=data, train_split=choice.train_split,
                                                  eval_split=choice.split, val_fraction=config.val_fraction,
                                                  num_classes=num_classes, class_names=names,
                                                  class_list=choice.class_list, data_from=choice.source),
        protocol=config.protocol, columns=[image_col, label_col],
    )
    test_loader = loader(test_hf)
    classifiers = None
    if config.protocol == "knn":
        train_feats, train_y = extract_exit_features(encoder, loader(train_hf), "train features")
        test_feats, test_y = extract_exit_features(encoder, test_loader, "test features")
        report["hyperparameters"] = dict(k=list(config.knn_k), temperature=config.knn_temperature,
                                         feature="backbone pooled, L2-normalised, cosine")
        report["results"] = dict(backbone=knn_accuracy(train_feats[-1], train_y, test_feats[-1], test_y,
                                                        config.knn_k, config.knn_temperature))
    else:
        classifiers, report = _linear(encoder, config, report, loader, train_hf, val_hf, test_loader, num_classes,
                                      image_size, mean, std)
        if config.protocol == "early_exit":
            model = attach_classifiers(encoder, classifiers, num_classes)
            report["early_exit"] = early_exit_sweep(model, test_loader)
        state = classifier_state_dict(encoder, classifiers)
        report["classifiers"] = sorted({k.rsplit(".", 1)[0] for k in state})
        classifiers = state
    for path in write_report(out_dir, report, classifiers, config.output):
        print(f"wrote {path}", file=sys.stderr)
    return report


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


def _linear(encoder, config, report, loader, train_hf, val_hf, test_loader, num_classes, image_size, mean, std):
    faithful = config.protocol == "linear"
    epochs = config.epochs or 100
    lr = config.lr or (3.0 if faithful else 0.1)
    test_feats, test_y = extract_exit_features(encoder, test_loader, "test features")
    val_feats = val_y = None
    if val_hf is not None:
        val_feats, val_y = extract_exit_features(encoder, loader(val_hf), "val features")
    train_feats = train_y = None
    if not faithful:  # the faithful probe recomputes augmented train features every epoch instead
        train_feats, train_y = extract_exit_features(encoder, loader(train_hf), "train features")
    device = next(encoder.parameters()).device

    def evaluate_heads(heads, norms):
        def run(feats, y):
            if feats is None:
                return {}
            if norms is not None:
                feats = [(f - m) / s for f, (m, s) in zip(feats, norms)]
            with torch.no_grad():
                return head_metrics([h(f) for h, f in zip(heads, feats)], y)
        return dict(val=run(val_feats, val_y), test=run(test_feats, test_y))

    augmented = None
    if faithful:
        aug = build_transform("linear", image_size, mean, std)
        epoch_counter = iter(range(10**9))

        def augmented():
            epoch = next(epoch_counter)
            ds = ContrastiveImageDataset(train_hf, aug, report["columns"][0], report["columns"][1], seed=config.seed + 1)
            ds.set_epoch(epoch)
            sampler = torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(config.seed + epoch))
            dl = DataLoader(ds, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers,
                            collate_fn=test_loader.collate_fn)
            for batch in dl:
                with torch.no_grad():
                    # the heads train on the CPU, like the cached protocol's (they are tiny)
                    feats = [f.float().cpu() for f in forward_outputs(encoder, batch["image"][:, 0].to(device))]
                yield feats, batch["label"]

    run = train_heads(None if faithful else train_feats, train_y, num_classes, epochs=epochs, lr=lr,
                      batch_size=config.batch_size, milestones=tuple(config.milestones) if faithful else None,
                      seed=config.seed, evaluate=evaluate_heads, standardise=not faithful,
                      augmented_batches=augmented, widths=[f.shape[1] for f in test_feats])
    norms = None if faithful else [(f.mean(0), f.std(0).clamp_min(1e-6)) for f in train_feats]
    heads = fold_standardisation(run.heads, norms)
    names = list(run.history[-1]["test"])
    report["hyperparameters"] = dict(
        epochs=epochs, lr=lr, batch_size=config.batch_size, momentum=0.9, weight_decay=0.0,
        schedule=(f"x0.1 after epochs {[int(m * epochs) for m in config.milestones]}" if faithful
                  else "cosine per step"),
        augmentation="random resized crop + flip" if faithful else "none (features cached once)",
        features="pooled pre-head features of each exit and the backbone, frozen encoder in eval mode",
        standardised_features=not faithful,
        deviation=None if faithful else "linear_fast: cached features without augmentation; not the papers' protocol",
    )
    report["results"] = _selection(run.history, names)
    report["history"] = [dict(epoch=h["epoch"], test_top1={k: v["top1"] for k, v in h["test"].items()},
                              val_top1={k: v["top1"] for k, v in h["val"].items()}) for h in run.history]
    return heads, report


def attach_classifiers(encoder: nn.Module, heads: nn.ModuleList, num_classes: int) -> nn.Module:
    """A copy of ``encoder`` whose backbone and exit classifiers are the trained probe heads."""
    import copy

    model = copy.deepcopy(encoder)
    model.reset_classifier(num_classes)
    state = classifier_state_dict(model, heads)
    model.load_state_dict(state, strict=False)
    return model.eval()


def classifier_state_dict(model: nn.Module, heads: nn.ModuleList) -> dict[str, torch.Tensor]:
    """Probe heads under the model's own classifier names (exits in depth order, backbone last)."""
    names = list(model.classifier_names()) if hasattr(model, "classifier_names") else [
        model.pretrained_cfg.get("classifier", "fc")]
    backbone, exits = names[0], names[1:]
    state = {}
    for name, head in zip([*exits, backbone], heads):
        state[f"{name}.weight"] = head.weight.detach().clone().contiguous()
        state[f"{name}.bias"] = head.bias.detach().clone().contiguous()
    return state


def write_report(out_dir: Path, report: dict[str, Any], classifiers: dict[str, torch.Tensor] | None,
                 output: str | None) -> list[Path]:
    """``report.json``, ``classifiers.safetensors`` and ``plot.png``, each written to a temp name and renamed.

    ``classifiers`` uses the model's own parameter names (``fc.weight``, ``exit_heads.0.weight``, ...), so an
    export loads them straight into the model.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if classifiers is not None:
        tmp = out_dir / "classifiers.safetensors.tmp"
        save_file(classifiers, str(tmp), metadata={"protocol": report["protocol"]})
        match_umask(tmp)
        os.replace(tmp, out_dir / "classifiers.safetensors")
        written.append(out_dir / "classifiers.safetensors")
    for path in [out_dir / "report.json", *([Path(output)] if output else [])]:
        _write_json(path, report)
        written.append(path)
    if plot_report(report, out_dir / "plot.png"):
        written.append(out_dir / "plot.png")
    return written


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, path)


def plot_report(report: dict[str, Any], path: Path) -> bool:
    """Accuracy per exit and ensemble, the probe's training curve and the early-exit curve (if present).

    Returns False, after a one-line notice, where matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed, so no {path.name} was drawn (pip install matplotlib, "
              "or timm-selfcon[plot])", file=sys.stderr)
        return False
    panels = [p for p in ("results", "history", "early_exit") if report.get(p)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "results":
            res = report["results"]
            names = list(res)
            values = [res[n]["last"]["top1"] if "last" in res[n] else next(iter(res[n].values())) for n in names]
            ax.bar(names, values)
            ax.set_ylabel("top-1 (%)")
            ax.set_title(f"{report['protocol']} ({report['dataset']['eval_split']})")
        elif panel == "history":
            for name in report["history"][0]["test_top1"]:
                ax.plot([h["epoch"] for h in report["history"]], [h["test_top1"][name] for h in report["history"]],
                        label=name)
            ax.set_xlabel("probe epoch")
            ax.set_ylabel("test top-1 (%)")
            ax.legend()
        else:
            rows = report["early_exit"]
            ax.plot([r["mean_flops"] / 1e6 for r in rows], [r["top1"] for r in rows], marker="o")
            for r in rows:
                ax.annotate(f"{r['threshold']:g}", (r["mean_flops"] / 1e6, r["top1"]), fontsize=7)
            ax.set_xlabel("mean MFLOPs per image")
            ax.set_ylabel("top-1 (%)")
            ax.set_title("early exit (threshold sweep)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return True
