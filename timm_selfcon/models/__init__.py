"""Registered timm models: multi-exit SelfCon families and MixCo encoders (importing registers them)."""
from .exits import SUB_NETWORKS, MultiExitMixin, ensemble_from_logits
from .mixco_resnet import mixco_resnet18, mixco_resnet18_cifar
from .selfcon_generic import SelfConTimmNet
from .selfcon_resnet import SelfConResNet
from .selfcon_vit import SelfConVisionTransformer
from .selfcon_wrn import SelfConWideResNet

__all__ = [
    "SUB_NETWORKS",
    "MultiExitMixin",
    "SelfConResNet",
    "SelfConTimmNet",
    "SelfConVisionTransformer",
    "SelfConWideResNet",
    "ensemble_from_logits",
    "mixco_resnet18",
    "mixco_resnet18_cifar",
]
