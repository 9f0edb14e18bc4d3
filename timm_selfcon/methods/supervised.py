"""Supervised methods: the CE baseline, SupCon, SupCon-S, SelfCon-S and SelfCon-M.

- SelfCon: Bae, Kim, Ko, Lee, Noh, Yun, "Self-Contrastive Learning: Single-viewed Supervised Contrastive
  Framework using Sub-network", AAAI 2023, arXiv 2106.15499. The contrastive "views" are the outputs of the
  exits and of the backbone, each through its own projection head: ``[g_1, ..., g_K, f]`` on dim 1.
- SupCon: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020, arXiv 2004.11362.

Defaults follow the SelfCon CIFAR scripts: ``temperature=0.1``, ``base_temperature=0.07`` (the loss is scaled by
``temperature / base_temperature``), 128-d projections. Projections (and labels) are all-gathered across
processes with their gradient, so the loss sees the global batch as in the official ``DataParallel`` runs
(``gather=False`` keeps them local).
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, StrictBool

from ..errors import UserInputError
from ..losses import SelfConLoss, SupConLoss
from ..precision import autocast_disabled
from ..typed import NonNegativeFloat, PositiveFloat, PositiveInt
from .base import BackboneProjection, MethodOptions, TrainingMethod, freeze_unused_exits
from .distributed import all_gather_no_grad, all_gather_with_grad
from .projection import ProjectedModel, with_projection_heads
from .registry import register_method

__all__ = ["CrossEntropy", "SelfCon", "SelfConM", "SelfConOptions", "SupCon", "SupConOptions", "SupConS"]


class SupConOptions(MethodOptions):
    """``supcon`` and ``supcon_s`` options (defaults: the SelfCon CIFAR scripts)."""

    out_dim: PositiveInt = Field(128, description="projection width (MLP head d -> d -> out_dim)")
    temperature: PositiveFloat = Field(0.1, description="temperature of the SupCon loss")
    base_temperature: PositiveFloat = Field(0.07, description="the loss is scaled by temperature / base_temperature")
    gather: StrictBool = Field(True, description="all-gather projections (with gradient) and labels across processes")
    head_batchnorm: StrictBool = Field(False, description="BatchNorm1d in the projection head's hidden layer (ours; "
                                                          "the papers' heads have none)")


class SelfConOptions(SupConOptions):
    """``selfcon`` and ``selfcon_m`` options: SupCon's, plus the FG-excluded weight and the use of labels."""

    alpha: NonNegativeFloat = Field(0.0, description="weight of the FG-excluded term (0: SelfCon; > 0: SelfCon-S*/M*)")
    supervised: StrictBool = Field(True, description="use labels (false: SelfCon-SU)")


@register_method
class CrossEntropy(TrainingMethod):
    """``ce``: cross-entropy on the model's **backbone** logits ``forward_head(forward_features(x))``.

    The SelfCon paper's CE baseline is a plain network (``main_ce.py --method ce``: backbone + one linear
    classifier), so exits of a multi-exit model, if any, are not trained (a warning says so; use a model with
    ``exit_stages=()``). The model needs ``num_classes > 0``. No gathering: the loss is a per-process mean, and
    DDP's gradient average equals the global-batch gradient. Single crop, labels required.

    Logs: ``loss_ce``, ``acc1`` (top-1 training accuracy of the batch).
    """

    name = "ce"
    paper = "SelfCon: Bae, Kim, Ko, Lee, Noh, Yun, AAAI 2023, arXiv 2106.15499 (its CE baseline)"
    description = "Supervised cross-entropy training (the baseline of the SelfCon paper)."
    views_required = 1
    trains_classifier = True
    augmentation = "ce"
    allows_gradient_accumulation = True
    card_tags = ("selfcon",)

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        num_classes = getattr(model, "num_classes", 0)
        if not num_classes:
            raise UserInputError(f"method 'ce' needs a model with a classifier, got num_classes={num_classes!r}; "
                             "create it with num_classes=<number of classes>")
        freeze_unused_exits(model, self.name)
        self.model = model
        self.needs_labels = True

    @property
    def encoder(self) -> nn.Module:
        return self.model

    def forward(
        self, views: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views, labels = self.check_inputs(views, labels)
        logits = self.model.forward_head(self.model.forward_features(views[:, 0]))
        with autocast_disabled(logits.device):
            loss = F.cross_entropy(logits.float(), labels)
        acc1 = (logits.detach().argmax(dim=1) == labels).float().mean()
        return loss, {"loss_ce": loss.detach(), "acc1": acc1}


class _SupConBase(TrainingMethod):
    """Shared set-up of SupCon and SupCon-S: one projection head on the pooled backbone feature."""

    augmentation = "supcon"
    Options = SupConOptions
    card_tags = ("selfcon", "supervised-contrastive-learning")

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        freeze_unused_exits(model, self.name)
        self.projector = BackboneProjection(model, self.options.out_dim, self.options.head_batchnorm)
        self.criterion = SupConLoss(self.options.temperature, self.options.base_temperature)
        self.gather = self.options.gather
        self.needs_labels = True

    @property
    def encoder(self) -> nn.Module:
        return self.projector.model

    def _loss(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.gather:
            features, labels = all_gather_with_grad(features), all_gather_no_grad(labels)
        loss = self.criterion(features, labels)
        return loss, {"loss_supcon": loss.detach()}


@register_method
class SupCon(_SupConBase):
    """``supcon``: two crops, backbone projections ``[B, 2, D]``, SupCon L_out with labels.

    Both crops go through the encoder in one pass (``cat(crop1, crop2)``, as SupContrast/SelfCon do). Logs:
    ``loss_supcon``.

    Args:
        model: a timm model (a plain backbone; a multi-exit model's exits are frozen, see ``freeze_unused_exits``).
        out_dim: projection width. temperature, base_temperature: of the SupCon loss.
        gather: all-gather projections (with gradient) and labels across processes.
        head_batchnorm: BatchNorm1d in the projection head's hidden layer (ours; the papers have none).
    """

    name = "supcon"
    paper = "SupCon: Khosla et al., NeurIPS 2020, arXiv 2004.11362"
    description = "SupCon: supervised contrastive learning on two augmented views (Khosla et al., 2020)."
    views_required = 2

    def forward(
        self, views: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views, labels = self.check_inputs(views, labels)
        batch = views.shape[0]
        projections = self.projector(torch.cat([views[:, 0], views[:, 1]]))  # [2B, D]
        features = torch.stack([projections[:batch], projections[batch:]], dim=1)  # [B, 2, D]
        return self._loss(features, labels)


@register_method
class SupConS(_SupConBase):
    """``supcon_s``: one crop, backbone projections ``[B, 1, D]``, SupCon with labels.

    Anchors whose class is alone in the (global) batch have no positive and are dropped from the mean (the
    SelfCon repo's ``supcon_s=True``). Logs: ``loss_supcon``. Arguments as :class:`SupCon`.
    """

    name = "supcon_s"
    paper = "SupCon-S: Bae et al., AAAI 2023, arXiv 2106.15499 (SupCon: Khosla et al., arXiv 2004.11362)"
    description = "SupCon-S: supervised contrastive learning on a single view."
    views_required = 1

    def forward(
        self, views: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views, labels = self.check_inputs(views, labels)
        features = self.projector(views[:, 0]).unsqueeze(1)  # [B, 1, D]
        return self._loss(features, labels)


class _SelfConBase(TrainingMethod):
    """Shared set-up of SelfCon-S and SelfCon-M: one projection head per exit and for the backbone."""

    multiview: bool = False
    augmentation = "supcon"
    Options = SelfConOptions
    card_tags = ("selfcon", "supervised-contrastive-learning")
    #: what this method computes on a model without exits (the backbone's projections alone)
    without_exits: ClassVar[str] = "supcon_s"

    @classmethod
    def check_model(cls, model: nn.Module) -> None:
        """SelfCon contrasts the sub-networks' outputs with the backbone's: a model without an exit is refused."""
        if getattr(model, "num_exits", 0):
            return
        stages = getattr(model, "exit_stages", None)
        has = f"exit_stages={list(stages)}" if stages is not None else "not a multi-exit model"
        raise UserInputError(
            f"method {cls.name!r} needs a model with at least one exit, and {type(model).__name__} has none ({has}): "
            f"without an exit it is {cls.without_exits}; use method={cls.without_exits}, or give the model an exit, "
            "e.g. model_kwargs.exit_stages=[2]")

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        opts = self.options
        self.projector: ProjectedModel = with_projection_heads(model, opts.out_dim, opts.head_batchnorm)
        self.criterion = SelfConLoss(opts.temperature, opts.base_temperature, alpha=opts.alpha,
                                     multiview=self.multiview)
        self.gather = opts.gather
        self.needs_labels = opts.supervised

    @property
    def encoder(self) -> nn.Module:
        return self.projector.model

    def _loss(self, features: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self.criterion(features, labels)
        return loss, {"loss_selfcon": loss.detach()}


@register_method
class SelfCon(_SelfConBase):
    """``selfcon`` (SelfCon-S): one crop; projections of every exit and the backbone ``[B, K+1, D]``.

    ``loss = SelfConLoss(forward_projections(x), labels)``: SupCon over all ``(K+1) * B`` outputs, where the same
    image's other exits are positives too. With ``alpha > 0`` the FG-excluded SelfCon-S* variant. With
    ``supervised=False`` (SelfCon-SU) labels are ignored and each image's outputs are its only positives.
    Nothing is detached: exit gradients reach the shared early layers. Logs: ``loss_selfcon``.

    Args:
        model: a multi-exit timm model (``forward_exits``); without exits this is SupCon-S, which training refuses
            (:meth:`check_model`: use ``supcon_s``).
        out_dim: projection width (one MLP head per exit and for the backbone).
        temperature, base_temperature: of the loss; alpha: weight of the FG-excluded term (0 = SelfCon).
        supervised: use labels. gather: all-gather projections (with gradient) and labels across processes.
        head_batchnorm: BatchNorm1d in every projection head's hidden layer (ours, a collapse stabilizer; the
            paper's heads have none).
    """

    name = "selfcon"
    paper = "SelfCon: Bae, Kim, Ko, Lee, Noh, Yun, AAAI 2023, arXiv 2106.15499"
    description = ("SelfCon-S: supervised contrastive learning on a single view, the sub-network exits providing the "
                   "extra views (Bae et al., AAAI 2023).")
    views_required = 1

    def forward(
        self, views: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views, labels = self.check_inputs(views, labels)
        features = self.projector.forward_projections(views[:, 0])  # [B, K+1, D]
        if self.gather:
            features = all_gather_with_grad(features)
            labels = None if labels is None else all_gather_no_grad(labels)
        return self._loss(features, labels)


@register_method
class SelfConM(_SelfConBase):
    """``selfcon_m`` (SelfCon-M): two crops concatenated on the batch axis, ``[2B, K+1, D]``, labels shared.

    Both crops go through the encoder in one pass. Rows ``i`` and ``i + B`` are the two crops of image ``i``
    (after gathering: first every process's first crops, then every process's second crops). Without labels
    (``supervised=False``) the two crops of an image are positives of each other (see
    :func:`timm_selfcon.losses.selfcon_loss`). ``alpha > 0``: SelfCon-M*. Logs: ``loss_selfcon``. Arguments
    as :class:`SelfCon`.
    """

    name = "selfcon_m"
    paper = "SelfCon: Bae, Kim, Ko, Lee, Noh, Yun, AAAI 2023, arXiv 2106.15499"
    description = "SelfCon-M: SelfCon on two augmented views, exits and backbone of both views contrasted."
    views_required = 2
    multiview = True
    without_exits = "supcon"

    def forward(
        self, views: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views, labels = self.check_inputs(views, labels)
        batch = views.shape[0]
        features = self.projector.forward_projections(torch.cat([views[:, 0], views[:, 1]]))  # [2B, K+1, D]
        first, second = features[:batch], features[batch:]
        if self.gather:
            first, second = all_gather_with_grad(first), all_gather_with_grad(second)
            labels = None if labels is None else all_gather_no_grad(labels)
        return self._loss(torch.cat([first, second]), labels)
