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

from typing import Any

import torch
import torch.nn as nn
from pydantic import Field, StrictBool

from ..losses import MixCoLoss, SupConLoss
from ..typed import NonNegativeFloat, PositiveFloat, PositiveInt
from .base import BackboneProjection, MethodOptions, TrainingMethod, freeze_unused_exits
from .distributed import all_gather_with_grad
from .mixing import MixCoDeclaration, mix_pairs
from .registry import register_method

__all__ = ["SimCLR", "SimCLRMixCo", "SimCLRMixCoOptions", "SimCLROptions"]


class SimCLROptions(MethodOptions):
    """``simclr`` options (defaults: the official SimCLR+MixCo script)."""

    out_dim: PositiveInt = Field(128, description="projection width (MLP head d -> d -> out_dim)")
    temperature: PositiveFloat = Field(0.5, description="NT-Xent temperature")
    gather: StrictBool = Field(True, description="all-gather the projections (with gradient) across processes")


class SimCLRMixCoOptions(SimCLROptions):
    """``simclr_mixco`` options: SimCLR's plus the MixCo term's (official SimCLR+MixCo defaults)."""

    mix_temperature: PositiveFloat = Field(0.5, description="MixCo temperature")
    mix_weight: NonNegativeFloat = Field(1.0, description="weight of the mix term")


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
    Options = SimCLROptions
    card_tags = ("selfcon", "self-supervised-learning")

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        freeze_unused_exits(model, self.name)
        self.projector = BackboneProjection(model, self.options.out_dim)
        self.criterion = SupConLoss(self.options.temperature, base_temperature=self.options.temperature)
        self.gather = self.options.gather
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
    Options = SimCLRMixCoOptions

    def __init__(self, model: nn.Module, generator: torch.Generator | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        self.mix_criterion = MixCoLoss(self.options.mix_temperature)
        self.mix_weight = self.options.mix_weight
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
