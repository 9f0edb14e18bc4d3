"""Precision helpers shared by the losses and the methods (which may not import each other's side).

Imports nothing of timm_selfcon, so every layer may use it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["autocast_disabled"]


@contextlib.contextmanager
def autocast_disabled(device: torch.device) -> Iterator[None]:
    """Run the enclosed ops without autocast on ``device``, in the inputs' own precision.

    Losses and logits computed under fp16/bf16 autocast lose accuracy (the contrastive losses cast their inputs up
    to float32 themselves); devices without autocast support run the ops unchanged.
    """
    if torch.amp.is_autocast_available(device.type):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:
        yield
