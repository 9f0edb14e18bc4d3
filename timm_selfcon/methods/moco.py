"""MoCo v2 and MoCo v2 + MixCo: momentum key encoder, queue of keys, shuffle-BN / split-BN.

- MoCo v2: Chen, Fan, Girshick, He, "Improved Baselines with Momentum Contrastive Learning", arXiv 2003.04297
  (MoCo: He et al., CVPR 2020, arXiv 1911.05722).
- MixCo: Kim, Lee, Bae, Yun, "MixCo: Mix-up Contrastive Learning for Visual Representation", NeurIPS 2020
  Workshop on Self-Supervised Learning, arXiv 2010.06300.

Query encoder = model + MLP head (128-d, L2-normalised). Key encoder = a momentum copy of both, never trained
by gradient; ``after_optimizer_step`` updates its parameters as ``θ_k <- m θ_k + (1 - m) θ_q`` (BatchNorm
running statistics of the key encoder follow its own forward passes, as in MoCo). The queue ``[K, D]`` of
normalised keys and its pointer are buffers (checkpointed with the method).

Per step: ``logits = [q·k+, q·queue] / T`` and cross-entropy with target 0; the queue in the loss is the one
from *before* this step's keys are enqueued; the keys of every process are then enqueued in rank order.

BatchNorm of the key encoder (the batch statistics would otherwise let a query find its key through the shared
batch composition):

- ``shuffle`` (several processes): key images are all-gathered, shuffled with a permutation drawn on rank 0 and
  broadcast, each process encodes its shard of the shuffled batch, keys are all-gathered and unshuffled.
- ``split`` (one process, where shuffling alone would change nothing for BN): the key batch is cut into
  ``num_splits`` contiguous chunks that go through the key encoder separately, so each key only sees its
  chunk's batch statistics (equivalent to a split BatchNorm, and works for any normalisation layer). The data
  loader's shuffling makes the chunks random.
- ``none``: one pass over the local key batch.
- ``auto`` (default): ``shuffle`` with several processes, ``split`` with one.

Note for DDP users: DDP's default ``broadcast_buffers=True`` copies every buffer (the queue too) from rank 0
at each forward. The queue is identical on every process anyway (all processes enqueue the same gathered
keys), so this is only traffic; ``broadcast_buffers=False`` avoids it.
"""
from __future__ import annotations

import typing
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, StrictBool

from ..errors import UserInputError
from ..losses import MixCoLoss
from ..precision import autocast_disabled
from ..typed import NonNegativeFloat, PositiveFloat, PositiveInt, UnitFloat
from .base import BackboneProjection, MethodOptions, TrainingMethod, freeze_unused_exits
from .distributed import all_gather_no_grad, broadcast, gather_sizes, get_rank, get_world_size, is_distributed
from .mixing import MixCoDeclaration, mix_pairs
from .momentum import frozen_copy, momentum_update_
from .registry import register_method

__all__ = ["KEY_BN_MODES", "MoCo", "MoCoMixCo", "MoCoMixCoOptions", "MoCoOptions"]

KeyBN = Literal["auto", "shuffle", "split", "none"]
KEY_BN_MODES: tuple[str, ...] = typing.get_args(KeyBN)


class MoCoOptions(MethodOptions):
    """``moco`` options (defaults: MoCo v2's, and the MixCo scripts' temperature 0.2)."""

    out_dim: PositiveInt = Field(128, description="projection width (MLP head d -> d -> out_dim, --mlp --moco-dim)")
    queue_size: PositiveInt = Field(65536, description="K, queued keys; a multiple of the global batch")
    momentum: UnitFloat = Field(0.999, description="m of the key encoder's momentum update")
    temperature: PositiveFloat = Field(0.2, description="T of the MoCo logits")
    key_bn: KeyBN = Field("auto", description="BatchNorm of the key encoder: shuffle (several processes), split "
                                               "(one), none, or auto")
    num_splits: PositiveInt = Field(2, description="chunks of the key batch for key_bn=split; divides the local batch")
    gather: StrictBool = Field(True, description="gather every process's keys into the queue")


class MoCoMixCoOptions(MoCoOptions):
    """``moco_mixco`` options: MoCo's plus the MixCo term's (official MixCo MoCo script defaults)."""

    mix_temperature: PositiveFloat = Field(0.05, description="MixCo temperature (--mixco-t)")
    mix_weight: NonNegativeFloat = Field(1.0, description="weight of the mix term (--mix-param)")


@register_method
class MoCo(TrainingMethod):
    """``moco``: MoCo v2 with a momentum key encoder and a queue.

    ``views[:, 0]`` are the queries' crops, ``views[:, 1]`` the keys'. Logs: ``loss_moco``, ``acc1`` (instance
    accuracy: the positive key scores highest among the ``1 + K`` candidates).

    Args:
        model: a timm model (a plain backbone; a multi-exit model's exits are frozen, see ``freeze_unused_exits``).
        out_dim: projection width (MLP head ``d -> d -> out_dim``, as ``--mlp --moco-dim 128``).
        queue_size: K, number of queued keys; must be a multiple of the global batch (local batch x processes).
        momentum: m of the key encoder's update, in [0, 1].
        temperature: T of the MoCo logits (MixCo scripts: 0.2).
        key_bn: ``auto``, ``shuffle``, ``split`` or ``none`` (see the module docstring).
        num_splits: chunks of the key batch for ``split``; must divide the local batch.
        gather: gather every process's keys into the queue; ``False`` keeps a per-process queue of local keys.
        generator: optional RNG for the shuffle-BN permutation (drawn on rank 0) and the MixCo λ.
    """

    name = "moco"
    paper = "MoCo v2: Chen, Fan, Girshick, He, arXiv 2003.04297"
    description = "MoCo v2: self-supervised contrastive learning with a momentum key encoder and a queue."
    views_required = 2
    augmentation = "moco_v2"
    Options = MoCoOptions
    card_tags = ("selfcon", "self-supervised-learning")

    def __init__(self, model: nn.Module, generator: torch.Generator | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        freeze_unused_exits(model, self.name)
        opts = self.options
        self.projector = BackboneProjection(model, opts.out_dim)
        self.key_projector = frozen_copy(self.projector)
        self.momentum = opts.momentum
        self.temperature = opts.temperature
        self.key_bn = opts.key_bn
        self.num_splits = opts.num_splits
        self.gather = opts.gather
        self.generator = generator
        self.queue_size = opts.queue_size
        self.register_buffer("queue", F.normalize(torch.randn(opts.queue_size, opts.out_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.needs_labels = False

    @property
    def encoder(self) -> nn.Module:
        return self.projector.model

    # ---- momentum encoder --------------------------------------------------------------------------
    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Momentum update of the key encoder's parameters: ``θ_k <- m θ_k + (1 - m) θ_q`` (m constant, as MoCo v2;
        ``step`` and ``total_steps`` are not needed)."""
        momentum_update_(self.key_projector, self.projector, self.momentum)

    # ---- keys --------------------------------------------------------------------------------------
    def resolved_key_bn(self) -> str:
        """The key-BN mode this step uses (``auto`` resolved against the number of processes)."""
        if self.key_bn != "auto":
            return self.key_bn
        return "shuffle" if get_world_size() > 1 else "split"

    def _draw_permutation(self, total: int, device: torch.device) -> torch.Tensor:
        if get_rank() == 0:
            rng_device = self.generator.device if self.generator is not None else device
            perm = torch.randperm(total, generator=self.generator, device=rng_device).to(device)
        else:
            perm = torch.empty(total, dtype=torch.long, device=device)
        return broadcast(perm, src=0)

    def _keys_shuffle_bn(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shuffle-BN across processes: returns ``(local keys [N, D], every process's keys [W*N, D])``."""
        world, rank = get_world_size(), get_rank()
        sizes = gather_sizes(images)
        if len(set(sizes)) != 1:
            raise ValueError(f"shuffle-BN needs the same local batch on every process, got sizes {sizes}")
        all_images = all_gather_no_grad(images)  # [W*N, C, H, W]
        perm = self._draw_permutation(all_images.shape[0], images.device)
        shard = perm.view(world, -1)[rank]
        shuffled_keys = all_gather_no_grad(self.key_projector(all_images[shard]))  # row j: key of image perm[j]
        all_keys = torch.empty_like(shuffled_keys)
        all_keys[perm] = shuffled_keys
        return all_keys.view(world, -1, all_keys.shape[-1])[rank], all_keys

    def _keys_split_bn(self, images: torch.Tensor) -> torch.Tensor:
        """Split-BN in one process: each of ``num_splits`` contiguous chunks through the key encoder alone."""
        if images.shape[0] % self.num_splits != 0:
            raise ValueError(f"split-BN needs the local batch ({images.shape[0]}) to be a multiple of "
                             f"num_splits ({self.num_splits})")
        return torch.cat([self.key_projector(chunk) for chunk in images.chunk(self.num_splits)])

    @torch.no_grad()
    def compute_keys(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key-encoder embeddings of ``images [N, C, H, W]``.

        Returns ``(keys [N, D] of the local images, keys to enqueue [G, D])``; ``G = N * processes`` in rank
        order when gathering, else ``N``.
        """
        mode = self.resolved_key_bn()
        if mode == "shuffle" and is_distributed() and get_world_size() > 1:
            local, everyone = self._keys_shuffle_bn(images)
            return local, (everyone if self.gather else local)
        local = self._keys_split_bn(images) if mode == "split" else self.key_projector(images)
        return local, (all_gather_no_grad(local) if self.gather else local)

    # ---- queue -------------------------------------------------------------------------------------
    def _check_queue_fits(self, local_batch: int) -> None:
        processes = get_world_size() if self.gather else 1
        global_batch = local_batch * processes
        if self.queue_size % global_batch != 0:
            raise UserInputError(
                f"queue_size {self.queue_size} must be a multiple of the global batch {global_batch} "
                f"(local batch {local_batch} x {processes} process(es))"
            )

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys [G, D]`` into the queue at the pointer (wrapping around) and advance the pointer by G."""
        positions = (self.queue_ptr + torch.arange(keys.shape[0], device=self.queue.device)) % self.queue_size
        self.queue.index_copy_(0, positions, keys.to(self.queue.dtype))
        self.queue_ptr.add_(keys.shape[0]).remainder_(self.queue_size)

    # ---- loss --------------------------------------------------------------------------------------
    def _moco_loss(
        self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(CE([q·k+, q·queue] / T, 0), instance top-1 accuracy)``, computed in float32."""
        with autocast_disabled(q.device):
            q, k = q.float(), k.float()
            positive = (q * k).sum(dim=1, keepdim=True)  # [N, 1]
            negative = q @ queue.float().T  # [N, K]
            logits = torch.cat([positive, negative], dim=1) / self.temperature
            loss = F.cross_entropy(logits, logits.new_zeros(logits.shape[0], dtype=torch.long))
        acc1 = (logits.detach().argmax(dim=1) == 0).float().mean()
        return loss, acc1

    def _queries(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(q [N, D], q_mix, lam)``; MoCo has no mixed queries."""
        return self.projector(images), None, None

    def forward(
        self, views: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views, _ = self.check_inputs(views, labels)
        self._check_queue_fits(views.shape[0])
        q, q_mix, lam = self._queries(views[:, 0])
        k, keys_to_enqueue = self.compute_keys(views[:, 1])
        queue = self.queue.clone()  # the pre-step queue; the enqueue below writes in place
        loss, acc1 = self._moco_loss(q, k, queue)
        logs = {"loss_moco": loss.detach(), "acc1": acc1}
        if q_mix is not None:
            mix = self.mix_criterion(q_mix, k, lam, queue)
            logs["loss_mix"] = mix.detach()
            loss = loss + self.mix_weight * mix
        self.enqueue(keys_to_enqueue)
        return loss, logs


@register_method
class MoCoMixCo(MixCoDeclaration, MoCo):
    """``moco_mixco``: MoCo v2 plus the MixCo term.

    Mixes are built from the query crops, first half with second half of the local batch, ``λ ~ U(0, 1)`` per
    pair; the query encoder sees ``cat(clean query crops, mixed)`` (``1.5 N`` images) in **one** pass, so clean
    and mixed images share BatchNorm statistics. The mix term scores each mixed query against the local clean
    keys of all ``N`` images plus the pre-step queue with soft targets ``(λ, 1 - λ)``; mixed images never
    reach the key encoder or the queue. ``loss = MoCo + mix_weight * MixCo``; the mix term is per process.
    The per-process batch must be even.

    Logs: ``loss_moco``, ``loss_mix``, ``acc1``.

    Args:
        mix_temperature: MixCo temperature (``--mixco-t``, official default 0.05).
        mix_weight: weight of the mix term, ``>= 0`` (``--mix-param``, default 1).
        Others as :class:`MoCo`.
    """

    name = "moco_mixco"
    paper = "MixCo: Kim, Lee, Bae, Yun, arXiv 2010.06300 (on MoCo v2, arXiv 2003.04297)"
    description = "MixCo on MoCo v2: MoCo v2 plus mix-up semi-positives with soft targets (Kim et al., 2020)."
    base_method = "MoCo v2"
    Options = MoCoMixCoOptions

    def __init__(self, model: nn.Module, generator: torch.Generator | None = None, **options: Any) -> None:
        super().__init__(model, generator=generator, **options)
        self.mix_criterion = MixCoLoss(self.options.mix_temperature)
        self.mix_weight = self.options.mix_weight

    def _queries(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        mixed, lam = mix_pairs(images, self.generator)
        embeddings = self.projector(torch.cat([images, mixed]))  # one pass over 1.5 N images
        return embeddings[: images.shape[0]], embeddings[images.shape[0]:], lam

