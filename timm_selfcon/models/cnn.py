"""timm's model API shared by the CNN families with stages ``layer1`` .. ``layerN`` (SelfCon ResNet and WRN).

Paper: "Self-Contrastive Learning: Single-viewed Supervised Contrastive Framework using Sub-network", Bae et al.,
AAAI 2023 (arXiv 2106.15499). The exits themselves are :mod:`timm_selfcon.models.exits`; this is the backbone side:
the pooled-linear head, ``group_matcher`` and the pruning of stages. No ``from __future__ import annotations``
here, as in ``exits.py``: torch.fx copies ``forward_head``'s annotations into traced code.
"""
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import create_classifier, get_device_dtype
from timm.models._features import feature_take_indices

__all__ = ["PooledLinearHeadMixin"]


class PooledLinearHeadMixin:
    """timm's pooled-linear CNN head (``global_pool`` + ``fc``) for the ResNet and WRN families, and their stage API.

    Needs ``global_pool``, ``fc``, ``num_features``, ``drop_rate``, stages ``layer1`` .. ``layer<num_stages>`` and the
    :class:`MultiExitMixin` attributes; put it before ``MultiExitMixin`` in the bases. ``stem_pattern``: the regex of
    the stem's parameters for ``group_matcher``. Methods here avoid ``super()`` because TorchScript compiles them.
    """

    stem_pattern = r"^conv1"

    def _init_head(self, global_pool: str, device=None, dtype=None) -> None:
        """``global_pool`` and ``fc`` (``num_features`` -> ``num_classes``; Identity for 0), ``head_hidden_size``."""
        self.global_pool, self.fc = create_classifier(
            self.num_features, self.num_classes, pool_type=global_pool, device=device, dtype=dtype)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=self.stem_pattern,
            blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)",
            exits=r"^exits\.(\d+)",
        )

    @torch.jit.ignore
    def _prune_stages(self, indices: int | list[int], prune_head: bool) -> tuple[list[int], int]:
        """timm's ``prune_intermediate_layers`` for the stages: those after the deepest kept tap become empty, the
        exits go with the head or with any pruned stage. Returns ``(take_indices, max_index)``."""
        take_indices, max_index = feature_take_indices(self.num_stages + 1, indices)
        for index in range(max_index + 1, self.num_stages + 1):
            setattr(self, f"layer{index}", nn.Sequential())
        prune_end = max_index < self.num_stages
        if prune_end or prune_head:
            self._drop_exits()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices, max_index

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> str | nn.Module:
        """The backbone's classifier (exit classifiers are ``exit_heads``)."""
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifiers with ``num_classes`` outputs on the backbone and on every exit."""
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self._init_head(global_pool, **dd)
        self.global_pool.train(self.training)
        self.fc.train(self.training)
        self._reset_exit_heads()

    def _ensemble_active(self) -> bool:
        return len(self.exit_stages) > 0 and self.num_classes > 0 and self.global_pool.pool_type != ""

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooled ``[B, num_features]`` (``pre_logits``) or backbone logits ``[B, num_classes]``."""
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)
