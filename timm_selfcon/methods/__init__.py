"""Training methods around registered models: projection heads, momentum encoder, queue, mixing, gathering.

One method per recipe name (``ce``, ``supcon``, ``supcon_s``, ``selfcon``, ``selfcon_m``, ``simclr``, ``moco``,
``simclr_mixco``, ``moco_mixco``); build one with :func:`build_method`. The interface the engine uses and the
table of what each method gathers across processes are in :mod:`timm_selfcon.methods.base`.
"""
from .base import BackboneProjection, TrainingMethod
from .distributed import all_gather_no_grad, all_gather_with_grad, get_rank, get_world_size, is_distributed
from .mixing import mix_pairs
from .moco import MoCo, MoCoMixCo
from .projection import ProjectedModel, ProjectionHead, with_projection_heads
from .registry import METHODS, build_method, method_defaults
from .simclr import SimCLR, SimCLRMixCo
from .supervised import CrossEntropy, SelfCon, SelfConM, SupCon, SupConS

__all__ = [
    "METHODS",
    "BackboneProjection",
    "CrossEntropy",
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
    "method_defaults",
    "mix_pairs",
    "with_projection_heads",
]
