"""Projection heads for contrastive training (SelfCon, SupCon, SimCLR, MoCo v2, MixCo).

Both papers (SelfCon, arXiv 2106.15499; MixCo, arXiv 2010.06300) put a two-layer MLP
``Linear(d, d) -> ReLU -> Linear(d, 128)`` without BatchNorm on top of each encoder output and
L2-normalise its output. SelfCon gives every exit and the backbone their *own* head.

The heads are training-time parts: they wrap a registered model and are never part of it, so
exports and ``timm.create_model`` see only the encoder and its classifiers.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserInputError

__all__ = ["ProjectedModel", "ProjectionHead", "with_projection_heads"]


class ProjectionHead(nn.Module):
    """``Linear(in_dim, in_dim) -> ReLU -> Linear(in_dim, out_dim)``: ``[B, in_dim]`` -> ``[B, out_dim]``.

    ``hidden_batchnorm=True`` (ours, off in the papers' recipes) puts a ``BatchNorm1d`` after the first Linear,
    as SimCLR v2 and MoCo v3 do: it removes the component all projections share, whose growth is what pins
    SelfCon on its collapse plateau (``benchmarks/experiments/collapse.py``).
    """

    def __init__(self, in_dim: int, out_dim: int = 128, hidden_batchnorm: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, in_dim)
        self.norm = nn.BatchNorm1d(in_dim) if hidden_batchnorm else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm(self.fc1(x))))


class ProjectedModel(nn.Module):
    """A model plus one projection head per output (each exit, then the backbone).

    ``forward_projections(x)`` -> ``[B, n_outputs, out_dim]``, L2-normalised along the last axis, in the
    order of the model's ``forward_exits`` (exits in depth order, backbone last). A model without
    ``forward_exits`` (any timm model) has one output: its pooled pre-logits feature.
    """

    def __init__(self, model: nn.Module, out_dim: int = 128, hidden_batchnorm: bool = False) -> None:
        super().__init__()
        if not isinstance(out_dim, int) or out_dim <= 0:
            raise UserInputError(f"out_dim must be a positive int, got {out_dim!r}")
        self.model = model
        self.out_dim = out_dim
        num_outputs = getattr(model, "num_exits", 0) + 1
        width = model.head_hidden_size if hasattr(model, "head_hidden_size") else model.num_features
        self.heads = nn.ModuleList([ProjectionHead(width, out_dim, hidden_batchnorm) for _ in range(num_outputs)])

    @property
    def num_outputs(self) -> int:
        return len(self.heads)

    def forward_exits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder features ``[B, width]`` per output (exits in depth order, backbone last)."""
        if hasattr(self.model, "forward_exits"):
            return self.model.forward_exits(x)
        return [self.model.forward_head(self.model.forward_features(x), pre_logits=True)]

    def forward_projections(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> L2-normalised projections ``[B, n_outputs, out_dim]``."""
        feats = self.forward_exits(x)
        if len(feats) != len(self.heads):
            raise ValueError(f"the model gave {len(feats)} outputs but {len(self.heads)} projection heads exist")
        return torch.stack([F.normalize(head(f), dim=-1) for head, f in zip(self.heads, feats)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_projections(x)


def with_projection_heads(model: nn.Module, out_dim: int = 128, hidden_batchnorm: bool = False) -> ProjectedModel:
    """Wrap ``model`` for contrastive training with one MLP projection head per output
    (``hidden_batchnorm``: see :class:`ProjectionHead`).

    Example:
        >>> import timm, timm_selfcon
        >>> net = timm_selfcon.with_projection_heads(timm.create_model("selfcon_resnet18_cifar", num_classes=0))
        >>> net.forward_projections(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 2, 128])
    """
    return ProjectedModel(model, out_dim, hidden_batchnorm)
