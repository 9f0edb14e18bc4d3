"""The interface between a training method and the engine, plus shared pieces of the methods.

A *method* (SelfCon, arXiv 2106.15499; MixCo, arXiv 2010.06300; and their baselines) is an ``nn.Module``
that owns the registered timm model and every training-time part around it (projection heads, momentum
encoder, queue). The engine knows nothing of any one method; it only uses this interface:

.. code-block:: python

    method = build_method("selfcon", timm.create_model("selfcon_resnet18_cifar", num_classes=0))
    optimizer = SGD(method.trainable_parameters(), ...)  # or method.parameters(): frozen ones get no grad
    for step, (views, labels) in enumerate(loader, 1):  # views [B, V, C, H, W], V == method.views_required
        loss, logs = method(views, labels)    # labels [B] long, or None when not method.needs_labels
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        method.after_optimizer_step(step, total_steps)  # MoCo: momentum update of the key encoder; others: no-op
    method.encoder                            # the registered timm model (eval, export)

- ``views_required`` (1 or 2) is what the data pipeline must produce; a wrong ``V`` is a ``ValueError``.
- ``logs`` maps names to detached scalar tensors (call ``.item()`` when writing them; no host sync here).
- Under DDP (Accelerate), call ``accelerator.unwrap_model(method).after_optimizer_step(step, total_steps)``, and
  only after a real optimizer step (not after every micro-batch of gradient accumulation). ``step`` counts the
  optimizer steps done (1-based), ``total_steps`` those of the whole run: a method's schedules (a momentum that
  grows over training, as BYOL's) read the run's progress from them.
- ``batch_size`` is global in recipes; a method sees the local batch ``B`` of its process.

What each method gathers across processes (BatchNorm statistics always stay per process):

| method       | passes per process (images)     | all-gathered WITH gradient           | gathered without gradient   |
|--------------|---------------------------------|--------------------------------------|-----------------------------|
| ce           | 1 (B)                           | nothing (local loss)                 | nothing                     |
| supcon       | 1 (2B: both crops concatenated) | projections [B, 2, D]                | labels                      |
| supcon_s     | 1 (B)                           | projections [B, 1, D]                | labels                      |
| selfcon      | 1 (B)                           | projections [B, K+1, D]              | labels                      |
| selfcon_m    | 1 (2B: both crops concatenated) | projections [B, K+1, D] of each crop | labels                      |
| simclr       | 2 (B each: view 1, view 2)      | projections [B, 2, D]                | nothing                     |
| simclr_mixco | 4 (B, B, B/2 mixed, B/2 mixed)  | clean projections (NT-Xent term);    | nothing                     |
|              |                                 | the mix term stays local             |                             |
| moco         | query 1 (B), key 1 (B)          | nothing (local loss)                 | key images + keys for       |
|              |                                 |                                      | shuffle-BN; keys for queue  |
| moco_mixco   | query 1 (1.5B: clean + mixed),  | nothing (MoCo and mix terms local)   | as moco                     |
|              | key 1 (B)                       |                                      |                             |

With ``gather=False`` nothing is gathered for the loss (each process computes its local loss, as the official
SimCLR+MixCo code did; MoCo then enqueues local keys only). Gathering with gradient makes every process compute
the same global loss; the gather's backward sums over processes so DDP's averaging gives the one-process
gradient (see :mod:`timm_selfcon.methods.distributed`). A local term (MixCo's) is averaged over processes by DDP.
"""
from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import ConfigDict

from ..errors import UserInputError
from ..typed import StrictModel
from .projection import ProjectionHead

__all__ = ["BackboneProjection", "MethodOptions", "TrainingMethod", "check_positive_int"]


class MethodOptions(StrictModel):
    """A method's options (its ``method_kwargs``): one typed field each, with its range and its ONE default.

    A method declares a subclass in its own file and sets it as its ``Options``; the constructor takes the options as
    keyword arguments and checks them with it (``self.options``), recipes set them under ``method_kwargs:`` (checked
    with it when the config is resolved, before any data loads), and the model card lists them from it. No options:
    this class itself.
    """

    model_config = ConfigDict(frozen=True)


def check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserInputError(f"{name} must be a positive int, got {value!r}")
    return value


def freeze_unused_exits(model: nn.Module, method: str) -> None:
    """Methods that train only the backbone leave a multi-exit model's exits without gradient: say so, and freeze
    them (``requires_grad=False``), so that the optimizer never holds them and DDP, which otherwise waits for their
    gradients and fails ("Expected to have finished reduction ..."), runs without ``find_unused_parameters``."""
    num_exits = getattr(model, "num_exits", 0)
    if num_exits:
        for part in (getattr(model, "exits", None), getattr(model, "exit_heads", None)):
            if part is not None:
                part.requires_grad_(False)
        warnings.warn(
            f"method {method!r} trains only the backbone; the model's {num_exits} exit(s) are frozen and keep their "
            "initial weights (create the model with exit_stages=() or use model.plain_encoder() to drop them)",
            UserWarning,
            stacklevel=3,
        )


class BackboneProjection(nn.Module):
    """A model's pooled backbone feature through one MLP head, L2-normalised: ``[B, C, H, W]`` -> ``[B, out_dim]``.

    The head is the papers' ``Linear(d, d) -> ReLU -> Linear(d, out_dim)`` without BatchNorm. Exits of a
    multi-exit model are not run (``forward_head(forward_features(x), pre_logits=True)``).
    """

    def __init__(self, model: nn.Module, out_dim: int = 128, hidden_batchnorm: bool = False) -> None:
        super().__init__()
        check_positive_int("out_dim", out_dim)
        self.model = model
        self.out_dim = out_dim
        width = model.head_hidden_size if hasattr(model, "head_hidden_size") else model.num_features
        self.head = ProjectionHead(width, out_dim, hidden_batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return F.normalize(self.head(features), dim=-1)


class TrainingMethod(nn.Module):
    """Base class of every method; see the module docstring for the interface the engine relies on.

    Subclasses declare the class attributes below, are decorated with
    :func:`~timm_selfcon.methods.registry.register_method`, set ``self.needs_labels`` in ``__init__``, implement
    ``encoder`` and ``forward(views, labels) -> (loss, logs)``, and may override ``after_optimizer_step``.
    """

    #: the recipe's ``method`` value
    name: ClassVar[str] = ""
    #: the paper(s), as cited in docstrings and model cards
    paper: ClassVar[str] = ""
    #: one sentence for the model card
    description: ClassVar[str] = ""
    #: crops per image the data pipeline must produce (``views [B, V, C, H, W]``)
    views_required: ClassVar[int] = 1
    #: the model needs a classifier over the dataset's classes (``num_classes`` > 0)
    trains_classifier: ClassVar[bool] = False
    #: the training augmentation pipeline of recipes that leave ``augmentation: auto``
    augmentation: ClassVar[str] = ""
    #: gradient accumulation keeps the loss unchanged (false for contrastive losses: it changes the negatives)
    allows_gradient_accumulation: ClassVar[bool] = False
    #: the per-process batch must be a multiple of this (MixCo mixes first half with second half)
    per_process_batch_multiple: ClassVar[int] = 1
    #: the method's options (``method_kwargs``), with their types, ranges and defaults
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    #: model-card family name (None: SelfCon for a multi-exit model, else timm-selfcon) and extra tags
    card_family: ClassVar[str | None] = None
    card_tags: ClassVar[tuple[str, ...]] = ()
    needs_labels: bool

    @classmethod
    def check_model(cls, model: nn.Module) -> None:
        """Refuse (:class:`UserInputError`) a model this method cannot train as its paper means; default: any.

        The engine calls it before training (and at resolve time on a ``meta`` model); the constructor does not, so
        a checkpoint of a run trained before a check was added still loads for evaluation and export.
        """

    @classmethod
    def card_text(cls, options: MethodOptions) -> str:
        """The method's paragraph in a model card, given the options the run used."""
        return cls.description

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module (a timm model), got {type(model).__name__}")
        self.options = self.Options(**options)  # checked here, so a method built in Python gets the recipes' checks
        self.needs_labels = False

    @property
    def encoder(self) -> nn.Module:
        """The registered timm model being trained (what evaluation and export use)."""
        raise NotImplementedError

    def forward(  # type: ignore[override]
        self, views: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``views [B, V, C, H, W]``, ``labels [B]`` -> ``(scalar loss, {name: detached scalar})``."""
        raise NotImplementedError

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called by the engine after optimizer step ``step`` (1-based) of ``total_steps`` (MoCo's momentum update;
        a schedule over training reads its progress, ``step / total_steps``). Default: nothing."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer should update (excludes frozen ones such as MoCo's key encoder)."""
        return [p for p in self.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters outside :attr:`encoder` (projection heads, predictors): the training-time
        parts that the ``head_lr_warmup_steps`` recipe key warms up separately."""
        in_encoder = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.trainable_parameters() if id(p) not in in_encoder]

    def check_inputs(
        self, views: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validate ``views`` ``[B, views_required, C, H, W]`` and (when needed) ``labels`` ``[B]``.

        Returns ``(views, labels)``, ``labels`` set to ``None`` when the method does not use them.
        """
        expected = self.views_required
        if not isinstance(views, torch.Tensor):
            raise TypeError(f"views must be a torch.Tensor [B, {expected}, C, H, W], got {type(views).__name__}")
        if views.dim() != 5 or views.shape[1] != expected or views.shape[0] == 0:
            what = "one crop" if expected == 1 else f"{expected} crops"
            raise UserInputError(
                f"method {self.name!r} needs {what} per image: views of shape [B, {expected}, C, H, W], "
                f"got shape {tuple(views.shape)}"
            )
        if not views.is_floating_point():
            raise TypeError(f"views must be a floating-point tensor, got dtype {views.dtype}")
        if not self.needs_labels:
            return views, None
        if labels is None:
            raise UserInputError(f"method {self.name!r} needs labels (class indices [B]), got None")
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor [B], got {type(labels).__name__}")
        if labels.shape != (views.shape[0],):
            raise ValueError(f"labels must have shape [B] = [{views.shape[0]}] (one per image), "
                             f"got {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be an integer (long) tensor, got dtype {labels.dtype}")
        return views, labels.to(device=views.device, dtype=torch.long)
