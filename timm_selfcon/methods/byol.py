"""BYOL: a predictor on the online network regresses a momentum target's projection of the other view.

Grill, Strub, Altché, Tallec, Richemond, Buchatskaya, Doersch, Pires, Guo, Azar, Piot, Kavukcuoglu, Munos, Valko,
"Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", NeurIPS 2020, arXiv 2006.07733.

Online network = encoder + projector (``d -> hidden -> out_dim`` with BatchNorm and ReLU in the hidden layer) +
predictor (``out_dim -> hidden -> out_dim``, the same shape). Target network = a momentum copy of encoder +
projector, never trained by gradient; after optimizer step ``k`` of ``K`` its momentum is the paper's cosine
schedule ``τ_k = 1 - (1 - τ_base) (cos(π k / K) + 1) / 2`` (``τ_base`` 0.996), read from the run's progress that
the engine passes to :meth:`BYOL.after_optimizer_step`.

Loss, symmetric over the two views: ``2 - 2 cos(q_1, z'_2) + 2 - 2 cos(q_2, z'_1)``, averaged over the batch
(``q``: online predictions, ``z'``: target projections, no gradient).

Views: asymmetric, as the paper's Table 6 (``byol`` below): both views crop, flip, colour-jitter (p 0.8) and
convert to grayscale (p 0.2); view 1 is always blurred and never solarized, view 2 blurred with p 0.1 and
solarized with p 0.2. Deviation: the jitter uses one strength (0.4) for brightness, contrast and saturation
(the paper: saturation 0.2).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from ..augmentations import ViewSpec, register_augmentation
from ..typed import PositiveInt, UnitFloat
from .base import MethodOptions, TrainingMethod, freeze_unused_exits
from .momentum import frozen_copy, momentum_update_
from .registry import register_method

__all__ = ["BYOL", "BYOLOptions", "byol_momentum"]

register_augmentation("byol", (
    ViewSpec(jitter=(0.4, 0.1), grayscale_p=0.2, blur_p=1.0, solarize_p=0.0),
    ViewSpec(jitter=(0.4, 0.1), grayscale_p=0.2, blur_p=0.1, solarize_p=0.2),
))

def byol_momentum(step: int, total_steps: int, base: float) -> float:
    """The target's momentum after optimizer step ``step`` of ``total_steps``: cosine from ``base`` to 1."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)) + 1.0) / 2.0

def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))

class _Projected(nn.Module):
    """Encoder + projector: ``[B, C, H, W]`` -> ``[B, out_dim]`` (the pooled backbone feature, exits not run)."""

    def __init__(self, model: nn.Module, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.model = model
        self.head = _mlp(model.num_features, hidden_dim, out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.model.forward_head(self.model.forward_features(images), pre_logits=True))

class BYOLOptions(MethodOptions):
    """``byol`` options (defaults: the paper's)."""

    out_dim: PositiveInt = Field(256, description="projection and prediction width")
    hidden_dim: PositiveInt = Field(4096, description="hidden width of projector and predictor")
    base_momentum: UnitFloat = Field(0.996, description="base of the target's cosine momentum schedule")


@register_method
class BYOL(TrainingMethod):
    """``byol``: BYOL with the paper's asymmetric views and cosine target momentum.

    Logs: ``loss_byol``, ``target_momentum``.

    Args:
        model: a timm model (a plain backbone; a multi-exit model's exits are frozen).
        **options: :class:`BYOLOptions`.
    """

    name = "byol"
    paper = "BYOL: Grill et al., arXiv 2006.07733"
    description = "BYOL: a predictor regresses a momentum target network's projection of the other view."
    views_required = 2
    supervised = False
    augmentation = "byol"
    card_tags = ("self-supervised-learning",)
    Options = BYOLOptions

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        freeze_unused_exits(model, self.name)
        out_dim, hidden_dim = self.options.out_dim, self.options.hidden_dim
        self.online = _Projected(model, hidden_dim, out_dim)
        self.predictor = _mlp(out_dim, hidden_dim, out_dim)
        self.target = frozen_copy(self.online)
        self.base_momentum = self.options.base_momentum
        self.momentum = self.base_momentum
        self.needs_labels = False

    @property
    def encoder(self) -> nn.Module:
        return self.online.model

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """The target follows the online network with the momentum of the cosine schedule at ``step``."""
        self.momentum = byol_momentum(step, total_steps, self.base_momentum)
        momentum_update_(self.target, self.online, self.momentum)

    def forward(
        self, views: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``views [B, 2, C, H, W]`` -> the symmetric BYOL loss (mean over the batch of both directions)."""
        views, _ = self.check_inputs(views, labels)
        batch = views.shape[0]
        both = torch.cat([views[:, 0], views[:, 1]])  # one pass per network: BatchNorm sees both views
        predictions = self.predictor(self.online(both))
        with torch.no_grad():
            targets = self.target(both)
        q1, q2 = predictions[:batch], predictions[batch:]
        z1, z2 = targets[:batch], targets[batch:]
        loss = (2 - 2 * F.cosine_similarity(q1, z2, dim=-1)).mean() + (2 - 2 * F.cosine_similarity(q2, z1, dim=-1)).mean()
        return loss, {"loss_byol": loss.detach(), "target_momentum": torch.tensor(self.momentum)}
