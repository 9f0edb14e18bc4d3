"""Registered timm models: multi-exit SelfCon families and MixCo encoders (importing registers them)."""
from .exits import MultiExitMixin, ensemble_from_logits
from .selfcon_resnet import SelfConResNet

__all__ = ["MultiExitMixin", "SelfConResNet", "ensemble_from_logits"]
