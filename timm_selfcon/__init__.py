"""timm-selfcon: SelfCon and MixCo as timm models.

``import timm_selfcon`` registers every model with timm, so ``timm.create_model("selfcon_resnet18_cifar")``
and ``timm.create_model("hf-hub:ORG/NAME", pretrained=True)`` work like any timm model.
"""
from . import models
from .methods import with_projection_heads
from .models import MultiExitMixin, ensemble_from_logits

__version__ = "0.3.0"
__all__ = ["MultiExitMixin", "ensemble_from_logits", "models", "with_projection_heads"]
