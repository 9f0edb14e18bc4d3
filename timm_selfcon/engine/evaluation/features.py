"""Frozen features of every output of an encoder (exits in depth order, backbone last), and the inputs a protocol reads.

The encoder runs in eval mode (BatchNorm running statistics) without gradients, as in the papers' linear
evaluation (SelfCon arXiv 2106.15499, MixCo arXiv 2010.06300). Batches are the data package's dicts with
``image`` ``[B, 1, C, H, W]`` and ``label`` ``[B]``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ...data import report_substitutions

if TYPE_CHECKING:
    from ..evaluate import EvalConfig


def forward_outputs(encoder: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Pooled pre-head features ``[B, D]`` of every exit (depth order) and of the backbone (last)."""
    if hasattr(encoder, "forward_exits"):
        return encoder.forward_exits(images)
    return [backbone_features(encoder, images)]


def backbone_features(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The backbone's pooled pre-head feature ``[B, D]`` (no exit is computed)."""
    return encoder.forward_head(encoder.forward_features(images), pre_logits=True)


def output_names(num_outputs: int) -> list[str]:
    """Report names of the outputs of :func:`forward_outputs`: ``exit_0``, ``exit_1``, ..., ``backbone``."""
    return [f"exit_{k}" for k in range(num_outputs - 1)] + ["backbone"]


@torch.no_grad()
def extract_exit_features(encoder: nn.Module, loader: DataLoader, desc: str = "features", *,
                          backbone_only: bool = False,
                          show_progress: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Frozen features per output, ``[N, D]`` float32 on the CPU each, and labels ``[N]``.

    Every output of :func:`forward_outputs`, or with ``backbone_only`` the backbone's alone (one entry). The
    encoder runs in eval mode and is put back in its previous mode afterwards. Images a DataLoader worker could
    not decode are reported once each (:func:`~timm_selfcon.data.report_substitutions`).
    """
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    outputs: list[list[torch.Tensor]] = []
    labels = []
    seen: set[int] = set()
    for batch in tqdm(loader, desc=desc, disable=not show_progress, leave=False):
        if "substituted" in batch:
            report_substitutions(loader.dataset, batch, seen)
        images = batch["image"][:, 0].to(device)
        feats = [backbone_features(encoder, images)] if backbone_only else forward_outputs(encoder, images)
        if not outputs:
            outputs = [[] for _ in feats]
        for store, f in zip(outputs, feats):
            store.append(f.float().cpu())
        labels.append(batch["label"].cpu())
    encoder.train(was_training)
    return [torch.cat(o) for o in outputs], torch.cat(labels)


@dataclass
class EvalInputs:
    """What every protocol reads: the frozen encoder (eval mode, on its device) and the data.

    ``train`` and ``val`` are Hugging Face datasets (the training split less the validation hold-out, and that
    hold-out or None); ``loader`` turns one into a DataLoader with the evaluation transform (resize, no
    augmentation).
    """

    encoder: nn.Module
    config: EvalConfig
    train: Any
    val: Any | None
    test_loader: DataLoader
    loader: Callable[[Any], DataLoader]
    columns: tuple[str, str]
    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    callbacks: Sequence[Any] = ()  # passed to the probe's training loop (classifiers.train_heads)

    def features(self, split: Any, desc: str) -> tuple[list[torch.Tensor], torch.Tensor]:
        """:func:`extract_exit_features` of a dataset (through :attr:`loader`) or of a DataLoader."""
        loader = split if isinstance(split, DataLoader) else self.loader(split)
        return extract_exit_features(self.encoder, loader, desc)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device
