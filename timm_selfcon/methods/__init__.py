"""Training-time wrappers around registered models: projection heads, momentum encoder, queue, mixing."""
from .projection import ProjectedModel, ProjectionHead, with_projection_heads

__all__ = ["ProjectedModel", "ProjectionHead", "with_projection_heads"]
