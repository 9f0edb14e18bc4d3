"""Supervised contrastive losses: SupCon, SupCon-S, SimCLR (NT-Xent) and SelfCon.

- SupCon: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020, arXiv 2004.11362 (L^sup_out).
- SelfCon: Bae, Kim, Ko, Lee, Noh, Yun, "Self-Contrastive Learning: Single-viewed Supervised Contrastive
  Framework using Sub-network", AAAI 2023, arXiv 2106.15499. The views of SelfCon are the outputs of the
  sub-network exits and of the backbone, so SelfCon-S/-M are SupCon over ``[B, n_exits + 1, D]``.
- NT-Xent: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020.

Every loss here is a pure function of tensors (plus a thin ``nn.Module`` holding the temperatures). The
computation is vectorised: one matmul for the similarities, a ``logsumexp`` with the anchor itself masked
out for the denominators, and per-group feature sums for the positives, so no ``[BV, BV]`` positive mask is
ever built.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..precision import autocast_disabled

__all__ = ["SelfConLoss", "SupConLoss", "selfcon_loss", "supcon_loss"]


def _check_temperature(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype a loss computes in: the inputs' promoted dtype, at least float32 (half/bf16 are cast up)."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def _check_alpha(alpha: float) -> None:
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or not math.isfinite(alpha)
        or alpha < 0
    ):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")


def _check_features(features: Tensor) -> None:
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dim() != 3:
        raise ValueError(
            f"features must be 3-D [batch, views, dim], "
            f"got shape {tuple(features.shape)} ({features.dim()}-D)"
        )
    if not features.is_floating_point():
        raise TypeError(f"features must be a floating-point tensor, got dtype {features.dtype}")
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(
            f"features must have at least one sample and one view, got shape {tuple(features.shape)}"
        )


def _check_ids(name: str, ids: Tensor, expected: int, what: str) -> None:
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dim() != 1 or ids.shape[0] != expected:
        raise ValueError(f"{name} must have shape [{expected}] ({what}), got shape {tuple(ids.shape)}")


def _compact_groups(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Map arbitrary ids ``[R]`` to group indices ``[R]`` in ``[0, G)`` and group sizes ``[G]``."""
    _, groups, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    return groups, counts


class _ContrastLogSumExp(torch.autograd.Function):
    """``lse_a = log sum_{c != self(a)} exp(anchors_a . contrast_c)``; anchors [A, D], contrast [C, D].

    ``self_columns [A]`` is the column of each anchor's own entry, excluded from its sum (``None``: no
    exclusion). Anchors come already divided by the temperature.

    Autograd through ``logsumexp`` keeps the ``[A, C]`` logits and rebuilds the softmax in the backward with
    three more ``[A, C]`` passes. Here the forward keeps ``exp(logits - row_max)`` instead and the backward
    folds the per-row normalisation into the small ``[A, D]`` operands, so it is two matmuls and nothing
    else of size ``[A, C]``. The backward also runs with autocast off, so calling ``backward()`` inside an
    autocast region does not turn those matmuls into half precision.
    """

    @staticmethod
    def forward(ctx: Any, anchors: Tensor, contrast: Tensor, self_columns: Tensor | None) -> Tensor:
        logits = anchors @ contrast.T  # [A, C]
        if self_columns is not None:
            logits.scatter_(1, self_columns.unsqueeze(1), float("-inf"))
        row_max = logits.amax(dim=1, keepdim=True)  # finite: every row keeps >= 1 column
        unnormalised = logits.sub_(row_max).exp_()  # in place: no second [A, C] buffer
        row_sum = unnormalised.sum(dim=1)
        ctx.save_for_backward(anchors, contrast, unnormalised, row_sum)
        return row_max.squeeze(1) + row_sum.log()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        anchors, contrast, unnormalised, row_sum = ctx.saved_tensors
        grad_anchors = grad_contrast = None
        with autocast_disabled(grad_output.device):
            # d lse_a / d logit_ac = softmax_ac = unnormalised_ac / row_sum_a
            row_weight = (grad_output / row_sum).unsqueeze(1)  # [A, 1]
            if ctx.needs_input_grad[0]:
                grad_anchors = (unnormalised @ contrast) * row_weight
            if ctx.needs_input_grad[1]:
                grad_contrast = unnormalised.T @ (anchors * row_weight)
        return grad_anchors, grad_contrast, None


def contrast_logsumexp(anchors: Tensor, contrast: Tensor, self_columns: Tensor | None = None) -> Tensor:
    """``log sum_c exp(anchors_a . contrast_c)`` per anchor, ``[A]``, skipping column ``self_columns[a]``.

    Shared by the SupCon and MixCo losses; ``anchors [A, D]`` (already divided by the temperature),
    ``contrast [C, D]``, ``self_columns [A]`` (long) or ``None``.
    """
    return _ContrastLogSumExp.apply(anchors, contrast, self_columns)


def _contrastive_loss(
    features: Tensor,
    temperature: float,
    base_temperature: float,
    groups: Tensor | None = None,
    group_sizes: Tensor | None = None,
    num_anchor_views: int | None = None,
) -> Tensor:
    """SupCon L_out over ``features [R, V, D]``; rows with the same group are positives of each other.

    ``groups [R]`` holds group indices in ``[0, G)`` and ``group_sizes [G]`` the number of rows per group;
    ``None`` means every row is its own group (positives = the other views of the row). Anchors are the
    first ``num_anchor_views`` views of every row (all views if ``None``); the contrast set is always every
    view of every row. Anchors without positives are left out of the mean.
    """
    num_rows, num_views, dim = features.shape
    num_anchor_views = num_views if num_anchor_views is None else num_anchor_views
    contrast = features.reshape(num_rows * num_views, dim)
    if contrast.shape[0] == 1:
        # A single embedding has nothing to contrast with: a zero that stays connected to the graph.
        return features.sum() * 0.0
    if num_anchor_views == num_views:
        anchors = contrast
    else:
        anchors = features[:, :num_anchor_views].reshape(num_rows * num_anchor_views, dim)

    # Anchor (row r, view v) is contrast column r * num_views + v: excluded from its own denominator.
    rows = torch.arange(num_rows, device=features.device).unsqueeze(1) * num_views
    self_columns = (rows + torch.arange(num_anchor_views, device=features.device)).reshape(-1)
    log_denominator = contrast_logsumexp(anchors / temperature, contrast, self_columns)  # [A]

    # sum_{q in P(a)} z_a . z_q = z_a . (sum of z over a's group - z_a): O(A * D) instead of an [A, C] mask.
    per_row_sum = features.sum(dim=1)  # [R, D]
    if groups is None:
        anchor_group_sum = per_row_sum.repeat_interleave(num_anchor_views, dim=0)
        num_positives = None
    else:
        group_sum = per_row_sum.new_zeros(group_sizes.shape[0], dim).index_add(0, groups, per_row_sum)
        anchor_groups = groups.repeat_interleave(num_anchor_views)
        anchor_group_sum = group_sum[anchor_groups]
        num_positives = group_sizes[anchor_groups] * num_views - 1
    positive_logit_sum = (anchors * (anchor_group_sum - anchors)).sum(dim=1) / temperature  # [A]

    scale = temperature / base_temperature
    if num_positives is None:  # every anchor has the other num_views - 1 views of its row
        return scale * (log_denominator - positive_logit_sum / (num_views - 1)).mean()
    has_positive = num_positives > 0
    per_anchor = log_denominator - positive_logit_sum / num_positives.clamp_min(1).to(features.dtype)
    num_counted = has_positive.sum().clamp_min(1).to(features.dtype)
    return scale * (per_anchor * has_positive).sum() / num_counted


def supcon_loss(
    features: Tensor,
    labels: Tensor | None = None,
    sample_ids: Tensor | None = None,
    *,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
) -> Tensor:
    r"""SupCon L^sup_out (with labels) or SimCLR/NT-Xent (without), contrast mode ``all``.

    With the ``B * V`` embeddings as the set :math:`A` (every one of them an anchor),

    .. math::

        \mathcal{L} = \frac{\tau}{\tau_{base}} \frac{1}{|A'|} \sum_{a \in A'} \frac{-1}{|P(a)|}
            \sum_{p \in P(a)} \log \frac{\exp(z_a \cdot z_p / \tau)}{\sum_{k \in A \setminus \{a\}}
            \exp(z_a \cdot z_k / \tau)}

    where :math:`P(a)` are the other embeddings with the anchor's label (with ``labels``) or of the same
    image (without: the other views, plus every view of rows sharing a ``sample_id``), and
    :math:`A' = \{a : |P(a)| > 0\}`. Anchors without positives (SupCon-S with a class alone in the batch)
    are dropped from the mean rather than counted as zeros; if no anchor has a positive, the result is a
    zero still connected to ``features``. Without labels and with ``base_temperature == temperature``
    this is exactly NT-Xent.

    For SelfCon the view axis holds the exits: ``features = [g_1, ..., g_K, f]`` stacked on dim 1. For
    SelfCon-M, two crops are concatenated on the batch axis with ``labels = cat([y, y])``.

    ``sample_ids`` (no labels only): rows with the same id are crops of the same image and are positives
    of each other, e.g. ``cat([arange(B), arange(B)])`` for SelfCon-MU with two crops on the batch axis.
    The official SelfCon-MU code uses ``eye(2B)`` and so treats the other crop of the same image as a
    *negative*; we treat it as a positive because it is, by construction, the same instance (consistent
    with SimCLR and with the official SelfCon-M* loss, which tiles ``eye(B)``).

    Args:
        features: ``[B, V, D]`` L2-normalised embeddings (views or exits on dim 1).
        labels: ``[B]`` class labels, or ``None`` for the self-supervised form.
        sample_ids: ``[B]`` image ids, only without ``labels``; default ``arange(B)``.
        temperature: :math:`\tau > 0`.
        base_temperature: :math:`\tau_{base} > 0`; the loss is scaled by ``temperature / base_temperature``.

    Returns:
        Scalar loss, float32 for half/bf16 inputs (computed in float32 with autocast disabled).
    """
    _check_temperature("temperature", temperature)
    _check_temperature("base_temperature", base_temperature)
    _check_features(features)
    batch_size, num_views, _ = features.shape
    if labels is not None and sample_ids is not None:
        raise ValueError(
            "pass either labels or sample_ids, not both: with labels, positives are defined by the labels "
            "(crops of the same image share their label)"
        )
    if labels is not None:
        _check_ids("labels", labels, batch_size, "one label per sample, features.shape[0]")
        groups, group_sizes = _compact_groups(labels.to(features.device))
    elif sample_ids is not None:
        _check_ids("sample_ids", sample_ids, batch_size, "one id per sample, features.shape[0]")
        groups, group_sizes = _compact_groups(sample_ids.to(features.device))
    elif num_views == 1:
        raise ValueError(
            f"features has a single view (shape {tuple(features.shape)}) and no labels or sample_ids: "
            "no anchor has a positive; pass labels (SupCon-S) or at least 2 views"
        )
    else:
        groups, group_sizes = None, None
    with autocast_disabled(features.device):
        features = features.to(_compute_dtype(features))
        return _contrastive_loss(features, temperature, base_temperature, groups, group_sizes)


def selfcon_loss(
    features: Tensor,
    labels: Tensor | None = None,
    *,
    alpha: float = 0.0,
    multiview: bool = False,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
) -> Tensor:
    r"""SelfCon-S/-M (``alpha == 0``) and the FG-excluded SelfCon-S*/-M* (``alpha > 0``).

    ``features`` stacks the exit projections and the backbone projection, **backbone last**:
    ``[g_1, ..., g_K, f]`` on dim 1. Single view: ``[B, K+1, D]``. Multiview (SelfCon-M): the two crops
    concatenated on the batch axis, ``[2B, K+1, D]`` (rows ``i`` and ``i + B`` are the same image), and
    ``labels`` are the ``[B]`` labels of the images (not repeated). Without labels the crops of one image
    are positives of each other (see :func:`supcon_loss` on how this differs from the official SelfCon-MU).

    ``alpha == 0``: SupCon over all ``(K+1)`` outputs of every row (:func:`supcon_loss`).

    ``alpha > 0`` (SelfCon paper, FG-excluded variants; with :math:`s = \tau / \tau_{base}`):

    - S*: :math:`\mathcal{L} = \mathcal{L}_{SupCon\text{-}S}(f, y) + \alpha \mathcal{L}_{FG}`; without labels
      (SU*) the SupCon-S term is dropped.
    - M*: :math:`\mathcal{L} = \mathcal{L}_{SupCon}([f^{(1)}, f^{(2)}], y) + \alpha \mathcal{L}_{FG}`, the
      first term over the backbone outputs of the two crops as two views (NT-Xent without labels).
    - :math:`\mathcal{L}_{FG} = s \cdot \operatorname{mean}_{a \in G} \frac{-1}{|P(a)|} \sum_{p \in P(a)}
      \log \frac{\exp(z_a \cdot z_p/\tau)}{\sum_{k \in G \cup F \setminus \{a\}} \exp(z_a \cdot z_k/\tau)}`:
      anchors are the exit outputs :math:`G` only, the contrast set is exits and backbone :math:`G \cup F`,
      and :math:`P(a)` are the same-label (or same-image) outputs in that set. So backbone anchors only see
      backbone outputs (the first term) while exit anchors contrast with both.

    Args:
        features: ``[B, K+1, D]`` (or ``[2B, K+1, D]`` with ``multiview``), L2-normalised, backbone last.
        labels: ``[B]`` image labels or ``None``.
        alpha: weight of the FG-excluded term, ``>= 0``; 0 selects plain SelfCon.
        multiview: the two crops are concatenated on the batch axis.
        temperature: :math:`\tau > 0`.
        base_temperature: :math:`\tau_{base} > 0`.

    Returns:
        Scalar loss.
    """
    _check_temperature("temperature", temperature)
    _check_temperature("base_temperature", base_temperature)
    _check_features(features)
    _check_alpha(alpha)
    num_rows, num_outputs, _ = features.shape
    if multiview and num_rows % 2 != 0:
        raise ValueError(
            f"multiview features must hold two crops per image on the batch axis (an even number of rows), "
            f"got {num_rows} rows"
        )
    num_images = num_rows // 2 if multiview else num_rows
    if labels is not None:
        what = (
            "one label per image, features.shape[0] // 2 with multiview"
            if multiview
            else "one label per image"
        )
        _check_ids("labels", labels, num_images, what)
        labels = labels.to(features.device)
    if alpha > 0 and num_outputs < 2:
        raise ValueError(
            f"alpha > 0 needs at least one exit besides the backbone (features.shape[1] >= 2), "
            f"got shape {tuple(features.shape)}"
        )
    if not multiview and labels is None and num_outputs == 1:
        raise ValueError(
            f"features has a single output per image (shape {tuple(features.shape)}) and no labels: "
            "no anchor has a positive; add exits, labels or multiview"
        )

    with autocast_disabled(features.device):
        features = features.to(_compute_dtype(features))
        if labels is not None:
            image_groups, image_group_sizes = _compact_groups(labels)
            if multiview:
                row_groups, row_group_sizes = image_groups.repeat(2), image_group_sizes * 2
            else:
                row_groups, row_group_sizes = image_groups, image_group_sizes
        elif multiview:
            row_groups = torch.arange(num_images, device=features.device).repeat(2)
            row_group_sizes = torch.full((num_images,), 2, device=features.device, dtype=torch.long)
        else:
            row_groups, row_group_sizes = None, None

        def contrastive(feats: Tensor, groups: Tensor | None, sizes: Tensor | None, **kw: int) -> Tensor:
            return _contrastive_loss(feats, temperature, base_temperature, groups, sizes, **kw)

        if alpha == 0:
            return contrastive(features, row_groups, row_group_sizes)
        fg_excluded = contrastive(features, row_groups, row_group_sizes, num_anchor_views=num_outputs - 1)
        if multiview:
            backbone = torch.stack([features[:num_images, -1], features[num_images:, -1]], dim=1)  # [B, 2, D]
            if labels is None:
                return contrastive(backbone, None, None) + alpha * fg_excluded
            return contrastive(backbone, image_groups, image_group_sizes) + alpha * fg_excluded
        if labels is None:
            return alpha * fg_excluded
        return contrastive(features[:, -1:], image_groups, image_group_sizes) + alpha * fg_excluded


class SupConLoss(nn.Module):
    """SupCon / SupCon-S / NT-Xent loss module; see :func:`supcon_loss` for the formula and shapes.

    Call as ``loss(features [B, V, D], labels [B] | None = None, sample_ids [B] | None = None)``.
    """

    def __init__(self, temperature: float = 0.07, base_temperature: float = 0.07) -> None:
        super().__init__()
        _check_temperature("temperature", temperature)
        _check_temperature("base_temperature", base_temperature)
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature)

    def forward(
        self, features: Tensor, labels: Tensor | None = None, sample_ids: Tensor | None = None
    ) -> Tensor:
        return supcon_loss(
            features,
            labels,
            sample_ids,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, base_temperature={self.base_temperature}"


class SelfConLoss(nn.Module):
    """SelfCon-S/-M and the FG-excluded S*/M* variants; see :func:`selfcon_loss` for the formula and shapes.

    Call as ``loss(features [B or 2B, K+1, D] (backbone last), labels [B] | None = None)``.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        base_temperature: float = 0.07,
        alpha: float = 0.0,
        multiview: bool = False,
    ) -> None:
        super().__init__()
        _check_temperature("temperature", temperature)
        _check_temperature("base_temperature", base_temperature)
        _check_alpha(alpha)
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature)
        self.alpha = float(alpha)
        self.multiview = bool(multiview)

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        return selfcon_loss(
            features,
            labels,
            alpha=self.alpha,
            multiview=self.multiview,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
            f"alpha={self.alpha}, multiview={self.multiview}"
        )
