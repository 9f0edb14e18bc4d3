"""Contrastive objectives as pure functions of tensors plus thin ``nn.Module`` wrappers."""

from .mixco import MixCoLoss, mixco_loss
from .supcon import SelfConLoss, SupConLoss, selfcon_loss, supcon_loss

__all__ = ["MixCoLoss", "SelfConLoss", "SupConLoss", "mixco_loss", "selfcon_loss", "supcon_loss"]
