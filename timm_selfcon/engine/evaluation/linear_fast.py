"""``linear_fast``: linear classifiers on features cached once, without augmentation (a documented deviation).

Features of the training split are extracted once with the evaluation transform; the classifiers are trained on
that cache (standardised features, SGD lr 0.1 by default, cosine per step). Much faster than ``linear``; its
numbers are labelled ``linear_fast`` and are not the papers' protocol.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .classifiers import fit_heads, report_classifiers
from .features import EvalInputs
from .registry import register_protocol
from .report import EvalReport

#: the protocol's name (the end-of-training probe of ``engine/train.py`` reports under it)
NAME = "linear_fast"


@register_protocol(
    NAME, trains_classifiers=True, result_shape="epochs per head", all_rank=0, export_rank=2,
    card_text=("Linear evaluation, fast variant (a documented deviation from the papers' protocol): features extracted "
               "once without augmentation, linear classifiers trained on the cached features."),
)
def run(inputs: EvalInputs, report: EvalReport) -> dict[str, torch.Tensor]:
    """Train the classifiers, fill ``report``; returns their state dict (``classifiers.safetensors``)."""
    return report_classifiers(inputs.encoder, fit(inputs, report), report)


def fit(inputs: EvalInputs, report: EvalReport) -> nn.ModuleList:
    """The trained classifiers for raw features (exits in depth order, backbone last); fills ``report``."""
    config = inputs.config
    epochs = config.epochs or 100
    lr = config.lr or 0.1
    test = inputs.features(inputs.test_loader, "test features")
    val = None if inputs.val is None else inputs.features(inputs.val, "val features")
    train = inputs.features(inputs.train, "train features")
    hyperparameters = dict(
        epochs=epochs, lr=lr, batch_size=config.batch_size, momentum=0.9, weight_decay=0.0,
        schedule="cosine per step",
        augmentation="none (features cached once)",
        features="pooled pre-head features of each exit and the backbone, frozen encoder in eval mode",
        standardised_features=True,
        deviation=f"{NAME}: cached features without augmentation; not the papers' protocol",
    )
    return fit_heads(inputs, report, test, val, train=train, epochs=epochs, lr=lr, hyperparameters=hyperparameters)
