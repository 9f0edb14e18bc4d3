"""torchrun worker for tests/methods/test_distributed.py: one DDP step per method on CPU (gloo).

Run as ``python -m torch.distributed.run --standalone --nproc_per_node 2 dist_worker.py OUT.pt``. Every process
builds the same seeded method, wraps it in DDP, runs one step on its shard of a fixed global batch and
backpropagates (DDP averages the gradients). Rank 0 saves every rank's loss, its own (averaged) gradients and
the MoCo queue to ``OUT.pt``. The helpers below are imported by the test to build the one-process reference.
"""
from __future__ import annotations

import sys

import timm
import torch
import torch.distributed as dist
import torch.nn as nn

import timm_selfcon  # noqa: F401  (registers the models)
from timm_selfcon.methods import METHODS, TrainingMethod, build_method

METHOD_NAMES = ("selfcon", "selfcon_m", "supcon", "moco")
LAYERS = (1, 1, 1, 1)  # the registered CIFAR ResNet-18 models with one block per stage, for speed
LOCAL_BATCH = 4
IMAGE_SIZE = 16
QUEUE_SIZE = 16
SHUFFLE_SEED = 123


def global_batch(world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed global batch: views ``[world * LOCAL_BATCH, 2, 3, H, W]`` and labels (positives across ranks)."""
    generator = torch.Generator().manual_seed(2024)
    batch = world_size * LOCAL_BATCH
    views = torch.randn(batch, 2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    labels = torch.arange(batch) % 3
    return views, labels


def make_method(name: str) -> TrainingMethod:
    """The seeded method ``name`` (identical weights, queue and shuffle RNG on every process)."""
    torch.manual_seed(0)
    if name.startswith("selfcon"):
        model = timm.create_model("selfcon_resnet18_cifar", num_classes=0, exit_stages=(2,), layers=LAYERS)
        # SelfCon-MU: without labels the row layout (first crops of every rank, then second crops) decides
        # which rows are positives, so a wrong layout changes the loss.
        return build_method(name, model, **({"supervised": False} if name == "selfcon_m" else {}))
    model = timm.create_model("mixco_resnet18_cifar", num_classes=0, layers=LAYERS)
    if name == "moco":
        generator = torch.Generator().manual_seed(SHUFFLE_SEED)
        return build_method(name, model, queue_size=QUEUE_SIZE, momentum=0.9, generator=generator)
    return build_method(name, model)


def local_views(views: torch.Tensor, name: str) -> torch.Tensor:
    """The crops method ``name`` consumes: ``views[:, :views_required]``."""
    return views[:, : METHODS[name].views_required]


def main(out_path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    views, labels = global_batch(world)
    shard = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    results: dict[str, dict[str, object]] = {}
    for name in METHOD_NAMES:
        method = make_method(name)
        ddp = nn.parallel.DistributedDataParallel(method)
        loss, _ = ddp(local_views(views, name)[shard], labels[shard])
        loss.backward()
        losses = [torch.zeros(()) for _ in range(world)]
        dist.all_gather(losses, loss.detach())
        results[name] = {
            "losses": torch.stack(losses),
            "grads": {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None},
        }
        if name == "moco":
            results[name]["queue"] = method.queue.clone()
            results[name]["queue_ptr"] = method.queue_ptr.clone()
    if rank == 0:
        torch.save(results, out_path)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
