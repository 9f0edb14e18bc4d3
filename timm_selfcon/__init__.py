"""timm-selfcon: SelfCon and MixCo as timm models (``import timm_selfcon`` registers them)."""
from . import models
from .models import MultiExitMixin

__version__ = "0.1.0"
__all__ = ["MultiExitMixin", "models"]
