"""Linear classifiers on frozen features: one per output, trained together, evaluated every epoch.

Shared by the ``linear``, ``linear_fast`` and ``early_exit`` protocols. The trained classifiers are named as the
model names its own (``fc``, ``exit_heads.0``, ...) so an export loads them straight into the model.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .features import EvalInputs
from .metrics import head_metrics
from .report import EvalReport

Features = list[torch.Tensor]
Norms = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ProbeRun:
    heads: nn.ModuleList
    history: list[dict[str, Any]]
    report: dict[str, Any]


def train_heads(train_feats: Features | None, train_y: torch.Tensor | None, num_classes: int, *,
                epochs: int, lr: float, batch_size: int, milestones: tuple[float, float] | None, seed: int,
                evaluate: Any, standardise: bool, augmented_batches: Any = None,
                widths: list[int] | None = None, callbacks: Sequence[Any] = ()) -> ProbeRun:
    """Train one linear classifier per output, evaluating every epoch with ``evaluate(heads, norms)``.

    ``callbacks``: objects with optional ``on_epoch_begin(epoch)`` and ``on_epoch_end(epoch, record)`` methods
    (1-based probe epoch; ``record`` is the epoch's history entry), e.g. for a benchmark timing the probe.

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
        for callback in callbacks:
            if hasattr(callback, "on_epoch_begin"):
                callback.on_epoch_begin(epoch)
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
        for callback in callbacks:
            if hasattr(callback, "on_epoch_end"):
                callback.on_epoch_end(epoch, history[-1])
    return ProbeRun(heads=heads, history=history, report={})


def select_epochs(history: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
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


def fold_standardisation(heads: nn.ModuleList, norms: Norms | None) -> nn.ModuleList:
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


def fit_heads(inputs: EvalInputs, report: EvalReport, test: tuple[Features, torch.Tensor],
              val: tuple[Features, torch.Tensor] | None, *, epochs: int, lr: float,
              hyperparameters: dict[str, Any], train: tuple[Features, torch.Tensor] | None = None,
              augmented_batches: Callable[[], Iterator[tuple[Features, torch.Tensor]]] | None = None,
              milestones: tuple[float, float] | None = None) -> nn.ModuleList:
    """Train the heads on cached ``train`` features (standardised, cosine per step) or on ``augmented_batches``
    (raw, x0.1 at ``milestones``), evaluating on ``val`` and ``test`` every epoch; fill the report's
    ``hyperparameters``, ``results`` (:func:`select_epochs`) and ``history``. Returns heads for raw features."""
    test_feats, test_y = test
    val_feats, val_y = val if val is not None else (None, None)
    train_feats, train_y = train if train is not None else (None, None)

    def evaluate_heads(heads, norms):
        def run(feats, y):
            if feats is None:
                return {}
            if norms is not None:
                feats = [(f - m) / s for f, (m, s) in zip(feats, norms)]
            with torch.no_grad():
                return head_metrics([h(f) for h, f in zip(heads, feats)], y)
        return dict(val=run(val_feats, val_y), test=run(test_feats, test_y))

    config = inputs.config
    standardise = train is not None
    run = train_heads(train_feats, train_y, inputs.num_classes, epochs=epochs, lr=lr, batch_size=config.batch_size,
                      milestones=milestones, seed=config.seed, evaluate=evaluate_heads, standardise=standardise,
                      augmented_batches=augmented_batches, widths=[f.shape[1] for f in test_feats],
                      callbacks=inputs.callbacks)
    norms = [(f.mean(0), f.std(0).clamp_min(1e-6)) for f in train_feats] if standardise else None
    heads = fold_standardisation(run.heads, norms)
    report.hyperparameters = hyperparameters
    report.results = select_epochs(run.history, list(run.history[-1]["test"]))
    report.history = [dict(epoch=h["epoch"], test_top1={k: v["top1"] for k, v in h["test"].items()},
                              val_top1={k: v["top1"] for k, v in h["val"].items()}) for h in run.history]
    return heads


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


def attach_classifiers(encoder: nn.Module, heads: nn.ModuleList, num_classes: int) -> nn.Module:
    """A copy of ``encoder`` whose backbone and exit classifiers are the trained probe heads."""
    model = copy.deepcopy(encoder)
    model.reset_classifier(num_classes)
    state = classifier_state_dict(model, heads)
    model.load_state_dict(state, strict=False)
    return model.eval()


def report_classifiers(encoder: nn.Module, heads: nn.ModuleList, report: EvalReport) -> dict[str, torch.Tensor]:
    """The heads' state dict (:func:`classifier_state_dict`), its classifier names listed in ``report``."""
    state = classifier_state_dict(encoder, heads)
    report.classifiers = sorted({k.rsplit(".", 1)[0] for k in state})
    return state
