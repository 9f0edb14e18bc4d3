"""A fast linear probe (``linear_fast``) on frozen, cached features.

The papers' protocol (SelfCon arXiv 2106.15499 section 3.2 of our notes; MixCo arXiv 2010.06300)
trains a linear classifier for 100 epochs with crop + flip augmentation on a frozen encoder in eval
mode. ``linear_fast`` deviates on purpose: it extracts the encoder's pooled backbone features once,
without augmentation, and trains the linear classifier on that cache. Numbers from it are labelled
``linear_fast`` and are not comparable with the papers' tables. The classifier is trained by the evaluation's own
``linear_fast`` trainer (:mod:`timm_selfcon.engine.evaluation.classifiers`), so the quickstart's probe and
``timm-selfcon eval protocol=linear_fast`` train alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..errors import UserInputError
from .evaluation.classifiers import fold_standardisation, train_heads
from .evaluation.features import extract_exit_features
from .evaluation.metrics import percent


def extract_features(encoder: nn.Module, loader: DataLoader, *, desc: str = "features",
                     show_progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled backbone features ``[N, D]`` (float32, CPU) and labels ``[N]`` of every batch of ``loader``.

    The backbone's entry of the evaluation's :func:`~timm_selfcon.engine.evaluation.features.extract_exit_features`
    (no exit is computed): the encoder runs in eval mode (BatchNorm running statistics), as in the papers' linear
    evaluation. Batches are the data package's dicts with ``image`` ``[B, 1, C, H, W]`` and ``label`` ``[B]``.
    """
    feats, labels = extract_exit_features(encoder, loader, desc, backbone_only=True, show_progress=show_progress)
    return feats[0], labels


@dataclass
class ProbeResult:
    """Top-1 accuracy (percent) of the last epoch on the evaluation features, and the classifier."""

    top1: float
    classifier: nn.Linear


def train_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                       *, epochs: int = 100, lr: float = 0.1, batch_size: int = 256, seed: int = 0) -> ProbeResult:
    """``Linear(D, C)`` trained on cached features ``train_x [N, D]`` by the evaluation's ``linear_fast`` trainer
    (:func:`~timm_selfcon.engine.evaluation.classifiers.train_heads`: standardised features, SGD momentum 0.9, no
    weight decay, cosine lr per step); returns the last epoch's top-1 on ``test_x [M, D]`` and the classifier.

    The standardisation (the training set's mean and std) is folded into the classifier returned, which applies to
    raw features.
    """
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"expected features [N, D] with the same D, got {tuple(train_x.shape)} and {tuple(test_x.shape)}")
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    run = train_heads([train_x], train_y, num_classes, epochs=epochs, lr=lr, batch_size=batch_size, milestones=None,
                      seed=seed, evaluate=lambda heads, norms: {}, standardise=True)  # only the last epoch is read
    norms = [(train_x.mean(0), train_x.std(0).clamp_min(1e-6))]  # what train_heads standardised with
    (classifier,) = run.heads
    with torch.no_grad():
        hits = int((classifier((test_x - norms[0][0]) / norms[0][1]).argmax(-1) == test_y).sum())
    return ProbeResult(top1=percent(hits, len(test_y)), classifier=fold_standardisation(run.heads, norms)[0])


def probe_trained_vs_random(encoder: nn.Module, model_name: str, model_kwargs: dict, data: str, *, train_split: str,
                            eval_split: str, image_size: int, mean, std, epochs: int = 100, batch_size: int = 256,
                            seed: int = 0, num_workers: int = 0, image_column: str | None = None,
                            label_column: str | None = None,
                            class_list: list[str] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """``linear_fast`` top-1 of ``encoder`` beside a randomly initialised encoder of the same architecture.

    Trains on ``train_split`` and reports on the held-out ``eval_split`` (no augmentation: ``eval`` pipeline), read
    as the run's training read its data: its ``image_column`` / ``label_column`` (None: detected) and, with a
    ``class_list``, only those classes, relabelled in that order. Returns the top-1 of ``trained`` and
    ``random_init``, and what the probe read (columns, classes, rows per split).
    """
    import timm

    from ..data import (
        ContrastiveImageDataset,
        build_eval_loader,
        build_transform,
        class_names,
        load_image_dataset,
        resolve_columns,
        select_classes,
    )

    transform = build_transform("eval", image_size, mean, std)
    loaders, rows = {}, {}
    for split in (train_split, eval_split):
        hf = load_image_dataset(data, split, image_column=image_column, label_column=label_column)
        image_col, label_col = resolve_columns(hf, image_column, label_column, data=data)
        if label_col is None:
            raise UserInputError(f"the probe needs labels; {data!r} [{split}] has no label column "
                                 f"(columns: {hf.column_names}); set label_column or probe.enabled=false")
        if class_list:
            hf = select_classes(hf, label_col, class_list)
        dataset = ContrastiveImageDataset(hf, transform, image_col, label_col, seed=seed)
        loaders[split], rows[split] = build_eval_loader(dataset, batch_size, num_workers), len(hf)
    names = class_names(hf, label_col)
    read = dict(image_column=image_col, label_column=label_col, class_list=class_list,
                num_classes=len(names) if names else None, train_rows=rows[train_split], test_rows=rows[eval_split])
    torch.manual_seed(seed)
    random_encoder = timm.create_model(model_name, num_classes=0, **model_kwargs)
    results = {}
    for name, net in (("trained", encoder), ("random_init", random_encoder)):
        train_x, train_y = extract_features(net, loaders[train_split], desc=f"{name} features ({train_split})")
        test_x, test_y = extract_features(net, loaders[eval_split], desc=f"{name} features ({eval_split})")
        results[name] = train_linear_probe(train_x, train_y, test_x, test_y, epochs=epochs, seed=seed).top1
    return results, read
