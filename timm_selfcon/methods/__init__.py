"""Training methods around registered models: projection heads, momentum encoder, queue, mixing, gathering.

Each method is a class in one module of this package, registered with
:func:`~timm_selfcon.methods.registry.register_method` under its recipe name (``ce``, ``supcon``, ``supcon_s``,
``selfcon``, ``selfcon_m``, ``simclr``, ``moco``, ``simclr_mixco``, ``moco_mixco``); build one with
:func:`build_method`. Every module here is imported below, so a new method is one new file (plus a recipe). The
interface the engine uses and the table of what each method gathers across processes are in
:mod:`timm_selfcon.methods.base`.
"""
import importlib
import pkgutil

from .base import BackboneProjection, MethodOptions, TrainingMethod
from .distributed import all_gather_no_grad, all_gather_with_grad, get_rank, get_world_size, is_distributed
from .mixing import mix_pairs
from .projection import ProjectedModel, ProjectionHead, with_projection_heads
from .registry import (
    METHODS,
    build_method,
    method_class,
    method_defaults,
    method_options,
    options_from_recipe,
    register_method,
)

# the registration order is the order methods are listed in
# isort: off
from .supervised import CrossEntropy, SelfCon, SelfConM, SupCon, SupConS
from .simclr import SimCLR, SimCLRMixCo
from .moco import MoCo, MoCoMixCo
# isort: on

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # a new method module registers itself here

__all__ = [
    "METHODS",
    "BackboneProjection",
    "CrossEntropy",
    "MethodOptions",
    "MoCo",
    "MoCoMixCo",
    "ProjectedModel",
    "ProjectionHead",
    "SelfCon",
    "SelfConM",
    "SimCLR",
    "SimCLRMixCo",
    "SupCon",
    "SupConS",
    "TrainingMethod",
    "all_gather_no_grad",
    "all_gather_with_grad",
    "build_method",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "method_class",
    "method_defaults",
    "method_options",
    "mix_pairs",
    "options_from_recipe",
    "register_method",
    "with_projection_heads",
]
