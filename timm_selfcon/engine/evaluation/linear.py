"""``linear``: the papers' linear evaluation (SelfCon arXiv 2106.15499, MixCo arXiv 2010.06300).

Frozen encoder in eval mode, one linear classifier per output (each exit and the backbone) on pooled pre-head
features recomputed every epoch from train-time crop + flip, SGD (lr 3, momentum 0.9, wd 0, batch 512),
100 epochs, x0.1 at 60 and 80.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from ...data import ContrastiveImageDataset, build_transform
from .classifiers import fit_heads, report_classifiers
from .features import EvalInputs, forward_outputs


def run(inputs: EvalInputs, report: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Train the classifiers, fill ``report``; returns their state dict (``classifiers.safetensors``)."""
    config = inputs.config
    epochs = config.epochs or 100
    lr = config.lr or 3.0
    test = inputs.features(inputs.test_loader, "test features")
    val = None if inputs.val is None else inputs.features(inputs.val, "val features")
    hyperparameters = dict(
        epochs=epochs, lr=lr, batch_size=config.batch_size, momentum=0.9, weight_decay=0.0,
        schedule=f"x0.1 after epochs {[int(m * epochs) for m in config.milestones]}",
        augmentation="random resized crop + flip",
        features="pooled pre-head features of each exit and the backbone, frozen encoder in eval mode",
        standardised_features=False,
        deviation=None,
    )
    heads = fit_heads(inputs, report, test, val, augmented_batches=augmented_epochs(inputs), epochs=epochs, lr=lr,
                      milestones=tuple(config.milestones), hyperparameters=hyperparameters)
    return report_classifiers(inputs.encoder, heads, report)


def augmented_epochs(inputs: EvalInputs):
    """A callable that yields one epoch of ``(features per output, labels)`` batches of freshly augmented crops.

    Epoch ``e`` (0, 1, ... in call order) draws its crops from seed ``config.seed + 1`` and epoch ``e``, its order
    from ``config.seed + e``. The features come back on the CPU, where the (tiny) heads train.
    """
    config = inputs.config
    augmentation = build_transform("linear", inputs.image_size, inputs.mean, inputs.std)
    epoch_counter = iter(range(10**9))
    device = inputs.device

    def epoch_batches() -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        epoch = next(epoch_counter)
        ds = ContrastiveImageDataset(inputs.train, augmentation, *inputs.columns, seed=config.seed + 1)
        ds.set_epoch(epoch)
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(config.seed + epoch))
        dl = DataLoader(ds, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers,
                        collate_fn=inputs.test_loader.collate_fn)
        for batch in dl:
            with torch.no_grad():
                feats = [f.float().cpu() for f in forward_outputs(inputs.encoder, batch["image"][:, 0].to(device))]
            yield feats, batch["label"]

    return epoch_batches
