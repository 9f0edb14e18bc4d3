"""Process-group helpers for the training methods: rank/world, all-gather with and without gradient.

SelfCon (Bae et al., AAAI 2023, arXiv 2106.15499) and SupCon ran under ``nn.DataParallel``, so their loss saw
the whole batch; under DDP the methods rebuild that global batch with :func:`all_gather_with_grad`. MoCo v2 /
MixCo (Kim et al., arXiv 2010.06300) gather keys only, without gradient, to fill the queue
(:func:`all_gather_no_grad`) and shuffle the key batch across processes (shuffle-BN).

Everything here is the identity (or the trivial answer) when ``torch.distributed`` is not initialised, so a
method runs unchanged in one process.

Gradient of the gather, and why it is summed over processes
-----------------------------------------------------------
Every process computes the *same* global loss ``L(z_0, ..., z_{W-1})`` from the gathered features, and its
autograd graph reaches only its own shard ``z_r``. The backward of :func:`all_gather_with_grad` therefore sums
the incoming gradients over the ``W`` processes (all-reduce) and keeps the own slice, giving
``W * dL/dz_r`` on process ``r``. DDP then averages parameter gradients over the ``W`` processes:
``(1/W) * sum_r W * dL/dz_r * dz_r/dtheta = dL/dtheta``, exactly the one-process gradient of the global loss.
(Keeping only the own slice without the sum would give ``dL/dtheta / W``.)
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_no_grad",
    "all_gather_with_grad",
    "broadcast",
    "gather_sizes",
    "get_rank",
    "get_world_size",
    "is_distributed",
]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank in the default group (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes in the default group (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def gather_sizes(tensor: torch.Tensor) -> list[int]:
    """``tensor.shape[0]`` of every process, in rank order (``[tensor.shape[0]]`` in one process)."""
    if not is_distributed():
        return [tensor.shape[0]]
    local = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.empty_like(local) for _ in range(get_world_size())]
    dist.all_gather(sizes, local)
    return [int(size.item()) for size in sizes]


def _gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every process's ``tensor`` along dim 0 in rank order; sizes may differ between processes."""
    tensor = tensor.contiguous()
    longest = max(sizes)
    if tensor.shape[0] < longest:
        pad = tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad])
    else:
        padded = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the gradients over processes and keeps the own slice."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        sizes = gather_sizes(tensor)
        rank = get_rank()
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return _gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        # All-reduce rather than reduce-scatter: gloo has no reduce-scatter, and these gradients are small
        # (a batch of projections), so the extra traffic does not matter.
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start:ctx.stop]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor [n_r, ...]`` of every process along dim 0, in rank order, keeping the gradient.

    Returns ``[sum_r n_r, ...]``; the local shard occupies rows ``sum(n_<rank) ...``. Per-process sizes may
    differ. The backward sums each process's gradient of its (global) loss over processes, so that DDP's
    gradient averaging yields the one-process gradient of the global loss (see the module docstring).
    Identity without a process group.
    """
    if not is_distributed() or get_world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


@torch.no_grad()
def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor [n_r, ...]`` of every process along dim 0, in rank order, without gradient.

    Per-process sizes may differ. Returns ``tensor`` itself (detached) without a process group.
    """
    if not is_distributed() or get_world_size() == 1:
        return tensor.detach()
    return _gather_padded(tensor.detach(), gather_sizes(tensor))


@torch.no_grad()
def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with process ``src``'s copy and return it (no-op in one process)."""
    if is_distributed() and get_world_size() > 1:
        dist.broadcast(tensor, src=src)
    return tensor
