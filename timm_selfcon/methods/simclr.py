"""SimCLR (NT-Xent) and SimCLR + MixCo.

- SimCLR: Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
  Representations", ICML 2020, arXiv 2002.05709.
- MixCo: Kim, Lee, Bae, Yun, "MixCo: Mix-up Contrastive Learning for Visual Representation", NeurIPS 2020
  Workshop on Self-Supervised Learning, arXiv 2010.06300 (SimCLR variant: both views mixed, symmetric).

NT-Xent is the unlabeled SupCon loss with ``base_temperature = temperature`` over ``[B, 2, D]``. Unlike the
official SimCLR+MixCo code (per-GPU NT-Xent with SyncBN), the NT-Xent projections are all-gathered with their
gradient so the loss sees the global batch (``gather=False`` restores the per-process loss); BatchNorm stays
per process. The mix term is always local, as in the official code.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from ..losses import MixCoLoss, SupConLoss
from .base import BackboneProjection, TrainingMethod, check_nonnegative, check_positive, freeze_unused_exits
from .distributed import all_gather_with_grad
from .mixing import MIXCO_RECIPE_KEYS, MixCoDeclaration, mix_pairs
from .registry import register_method

__all__ = ["SimCLR", "SimCLRMixCo"]


@register_method
class SimCLR(TrainingMethod):
    """``simclr``: two crops, each through the encoder in its own pass; NT-Xent over their projections.

    Logs: ``loss_simclr``.

    Args:
        model: a timm model (a plain backbone; a multi-exit model's exits are frozen, see ``freeze_unused_exits``).
        out_dim: projection width (MLP head ``d -> d -> out_dim``).
        temperature: NT-Xent temperature (official SimCLR+MixCo script: 0.5).
        gather: all-gather the projections (with gradient) across processes.
    """

    name = "simclr"
    paper = "SimCLR: Chen, Kornblith, Norouzi, Hinton, arXiv 2002.05709"
    description = "SimCLR: self-supervised contrastive learning on two views."
    views_required = 2
    augmentation = "simclr"
    recipe_keys: ClassVar[dict[str, str]] = {"temperature": "temperature", "projection_dim": "out_dim", "gather": "gather"}
    card_tags = ("selfcon", "self-supervised-learning")

    def __init__(self, model: nn.Module, out_dim: int = 128, temperature: float = 0.5, gather: bool = True) -> None:
        super().__init__(model)
        freeze_unused_exits(model, self.name)
        self.projector = BackboneProjection(model, out_dim)
        temperature = check_positive("temperature", temperature)
        self.criterion = SupConLoss(temperature, base_temperature=temperature)
        self.gather = bool(gather)
        self.needs_labels = False

    @property
    def encoder(self) -> nn.Module:
        return self.projector.model

    def _nt_xent(self, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
        features = torch.stack([z_i, z_j], dim=1)  # [B, 2, D]
        if self.gather:
            features = all_gather_with_grad(features)
        return self.criterion(features)

    def forward(
        self, views: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views, _ = self.check_inputs(views, labels)
        loss = self._nt_xent(self.projector(views[:, 0]), self.projector(views[:, 1]))
        return loss, {"loss_simclr": loss.detach()}


@register_method
class SimCLRMixCo(MixCoDeclaration, SimCLR):
    """``simclr_mixco``: SimCLR plus the symmetric MixCo term.

    Each view is mixed half-with-half with its own ``λ ~ U(0, 1)`` per pair and the mixed batch goes through
    the encoder in a separate pass (4 passes per step: view 1, view 2, mixed 1, mixed 2). Mixed view 1 is
    scored against view 2's projections of all ``B`` local images and vice versa; the targets are **not**
    detached. ``loss = NT-Xent + mix_weight * (MixCo_1 + MixCo_2) / 2``. The per-process batch must be even.

    Logs: ``loss_simclr``, ``loss_mix``.

    Args:
        mix_temperature: MixCo temperature (official SimCLR default 0.5).
        mix_weight: weight of the mix term, ``>= 0`` (official: 1).
        generator: optional RNG for the mixing coefficients (default: the global RNG).
        Others as :class:`SimCLR`.
    """

    name = "simclr_mixco"
    paper = "MixCo: Kim, Lee, Bae, Yun, arXiv 2010.06300 (on SimCLR, arXiv 2002.05709)"
    description = "MixCo on SimCLR: SimCLR plus mix-up semi-positives with soft targets (Kim et al., 2020)."
    base_method = "SimCLR"
    recipe_keys: ClassVar[dict[str, str]] = {**SimCLR.recipe_keys, **MIXCO_RECIPE_KEYS}

    def __init__(self, model: nn.Module, out_dim: int = 128, temperature: float = 0.5, gather: bool = True,
                 mix_temperature: float = 0.5, mix_weight: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(model, out_dim=out_dim, temperature=temperature, gather=gather)
        self.mix_criterion = MixCoLoss(check_positive("mix_temperature", mix_temperature))
        self.mix_weight = check_nonnegative("mix_weight", mix_weight)
        self.generator = generator

    def forward(
        self, views: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views, _ = self.check_inputs(views, labels)
        view_i, view_j = views[:, 0], views[:, 1]
        mixed_i, lam_i = mix_pairs(view_i, self.generator)  # raises on an odd local batch, before any forward
        mixed_j, lam_j = mix_pairs(view_j, self.generator)
        z_i, z_j = self.projector(view_i), self.projector(view_j)
        base = self._nt_xent(z_i, z_j)
        mix = 0.5 * (self.mix_criterion(self.projector(mixed_i), z_j, lam_i)
                     + self.mix_criterion(self.projector(mixed_j), z_i, lam_j))
        loss = base + self.mix_weight * mix
        return loss, {"loss_simclr": base.detach(), "loss_mix": mix.detach()}
