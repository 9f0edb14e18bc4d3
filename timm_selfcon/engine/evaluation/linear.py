"""``linear``: the papers' linear evaluation (SelfCon arXiv 2106.15499, MixCo arXiv 2010.06300).

Frozen encoder in eval mode, one linear classifier per output (each exit and the backbone) on pooled pre-head
features recomputed every epoch from train-time crop + flip, SGD (lr 3, momentum 0.9, wd 0, batch 512),
100 epochs, x0.1 at 60 and 80.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from ...data import ContrastiveImageDataset, build_transform
from .classifiers import fit_heads, report_classifiers
from .features import EvalInputs, forward_outputs
from .registry import data_deviations, register_protocol
from .report import EvalReport

if TYPE_CHECKING:
    from ..evaluate import EvalConfig

#: The papers' linear evaluation settings (SelfCon arXiv 2106.15499, MixCo arXiv 2010.06300), on the whole training
#: split: a report says "the papers' protocol" only when it ran with exactly these (:func:`papers_deviations`).
PAPERS_EPOCHS = 100
PAPERS_LR = 3.0
PAPERS_BATCH_SIZE = 512
PAPERS_MILESTONES = (0.6, 0.8)


#: the augmentation pipeline of the probe's training crops (random resized crop + flip), in
#: :data:`timm_selfcon.augmentations.AUGMENTATIONS` under the protocol's name
AUGMENTATION = "linear"
#: what the card says the papers' procedure is
PROCEDURE = ("frozen encoder in eval mode, one linear classifier per output (each exit and the backbone) on pooled "
             "features, random-resized-crop + flip, SGD with step decay")


def papers_deviations(config: EvalConfig, hyperparameters: dict[str, Any]) -> list[str]:
    """How a ``linear`` evaluation's settings differ from the papers' (empty: it ran the papers' protocol)."""
    found = []
    for key, papers in (("epochs", PAPERS_EPOCHS), ("lr", PAPERS_LR), ("batch_size", PAPERS_BATCH_SIZE)):
        if hyperparameters[key] != papers:
            found.append(f"{key} {hyperparameters[key]:g} (the papers': {papers:g})")
    if tuple(config.milestones) != PAPERS_MILESTONES:
        found.append(f"lr x0.1 after {[f'{m:.0%}' for m in config.milestones]} of the epochs (the papers': after 60% "
                     "and 80%)")
    return found + data_deviations(config)


def report_deviations(config: EvalConfig, report: EvalReport) -> list[str]:
    """:func:`papers_deviations` of a report (the registry's ``deviations`` of this protocol)."""
    return papers_deviations(config, report.hyperparameters)


@register_protocol(
    "linear", trains_classifiers=True, result_shape="epochs per head", all_rank=3, export_rank=0,
    papers_protocol_possible=True, deviations=report_deviations,
    card_text=f"Linear evaluation, the papers' protocol: {PROCEDURE}.",
    card_text_not_papers=(f"Linear evaluation with the papers' procedure ({PROCEDURE}), but not all of their settings "
                          "(the deviations are listed below), so not the papers' protocol."),
    card_text_unrecorded=(f"Linear evaluation with the papers' procedure ({PROCEDURE}); the report does not record "
                          "every setting (it was written before timm-selfcon recorded them), so it is not labelled the "
                          "papers' protocol."),
)
def run(inputs: EvalInputs, report: EvalReport) -> dict[str, torch.Tensor]:
    """Train the classifiers, fill ``report``; returns their state dict (``classifiers.safetensors``)."""
    config = inputs.config
    epochs = config.epochs or PAPERS_EPOCHS
    lr = config.lr or PAPERS_LR
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
    augmentation = build_transform(AUGMENTATION, inputs.image_size, inputs.mean, inputs.std)
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
