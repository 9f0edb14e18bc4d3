"""Learning-rate schedules of the papers' official code, as pure functions of the step.

SelfCon / SupCon (arXiv 2106.15499): cosine over epochs, set once per epoch (epochs counted from 1),
``eta_min = lr * min_lr_ratio`` (0.1**3 officially), with a per-iteration linear warm-up from
``warmup_from`` to the cosine value at the end of the warm-up. MixCo's MoCo v2 runs use the same
per-epoch cosine without warm-up (``warmup_epochs: 0``); its SimCLR runs keep ``lr`` for 10 epochs, then
follow ``CosineAnnealingLR(T_max=epochs)`` stepped per epoch, which never reaches 0
(``schedule: simclr_official``); ``schedule: constant`` keeps ``lr``.

``schedule: cosine_per_step`` (ours, for short CPU-scale schedules) decays per optimizer step from ``lr`` after
the warm-up to ``eta_min`` at the last step: the official per-epoch form spends its whole last epoch at
``eta_min``, a third of a 3-epoch run.
"""
from __future__ import annotations

import math
import typing

from ..config import Schedule
from ..errors import UserInputError

SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)
SIMCLR_CONSTANT_EPOCHS = 10


def cosine_epoch_lr(epoch: int, epochs: int, lr: float, min_lr_ratio: float) -> float:
    """Cosine value for 0-based ``epoch`` (the official code evaluates it at ``epoch + 1``)."""
    eta_min = lr * min_lr_ratio
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * (epoch + 1) / epochs)) / 2


def lr_at(step: int, steps_per_epoch: int, *, epochs: int, lr: float, schedule: str = "cosine",
          min_lr_ratio: float = 0.001, warmup_epochs: int = 0, warmup_from: float = 0.01) -> float:
    """Learning rate of optimizer step ``step`` (0-based)."""
    if schedule not in SCHEDULES:
        raise UserInputError(f"unknown schedule {schedule!r}; expected one of {list(SCHEDULES)}")
    epoch = step // steps_per_epoch
    if warmup_epochs > 0 and epoch < warmup_epochs:
        warmup_to = cosine_epoch_lr(warmup_epochs - 1, epochs, lr, min_lr_ratio) if schedule == "cosine" else lr
        progress = step / (warmup_epochs * steps_per_epoch)
        return warmup_from + progress * (warmup_to - warmup_from)
    if schedule == "constant":
        return lr
    if schedule == "cosine_per_step":
        warmup_steps, total_steps = warmup_epochs * steps_per_epoch, epochs * steps_per_epoch
        progress = (step - warmup_steps) / max(total_steps - 1 - warmup_steps, 1)
        eta_min = lr * min_lr_ratio
        return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * min(progress, 1.0))) / 2
    if schedule == "simclr_official":
        if epoch < SIMCLR_CONSTANT_EPOCHS:
            return lr
        return lr * (1 + math.cos(math.pi * (epoch - SIMCLR_CONSTANT_EPOCHS + 1) / epochs)) / 2
    return cosine_epoch_lr(epoch, epochs, lr, min_lr_ratio)
