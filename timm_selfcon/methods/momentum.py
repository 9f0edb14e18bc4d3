"""A momentum (EMA) copy of a module: MoCo's key encoder, and the target network of BYOL-style methods.

``frozen_copy(online)`` makes the copy, which gets no gradient; after every optimizer step
``momentum_update_(copy, online, m)`` moves it as ``θ_copy <- m θ_copy + (1 - m) θ_online``. BatchNorm running
statistics of the copy follow its own forward passes (as in MoCo), so only parameters are updated. Plain
functions rather than a wrapper module, so the copy keeps its place (and its state-dict keys) in the method.
"""
from __future__ import annotations

import copy
from typing import TypeVar

import torch
import torch.nn as nn

from ..errors import UserInputError

__all__ = ["check_momentum", "frozen_copy", "momentum_update_"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def check_momentum(momentum: float) -> float:
    """``momentum`` as a float in [0, 1], else a UserInputError naming it."""
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
        raise UserInputError(f"momentum must be a number in [0, 1], got {momentum!r}")
    return float(momentum)


def frozen_copy(online: ModuleT) -> ModuleT:
    """A deep copy of ``online`` with every parameter frozen (``requires_grad=False``)."""
    return copy.deepcopy(online).requires_grad_(False)


@torch.no_grad()
def momentum_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place: ``θ_target <- momentum * θ_target + (1 - momentum) * θ_online`` for every parameter pair."""
    for target_param, online_param in zip(target.parameters(), online.parameters(), strict=True):
        target_param.lerp_(online_param.detach(), 1.0 - momentum)
