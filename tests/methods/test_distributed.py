"""Real two-process DDP runs (torchrun, gloo, CPU) against a one-process reference.

SelfCon (arXiv 2106.15499) and SupCon were trained with ``DataParallel``: the loss saw the whole batch while
BatchNorm saw each device's shard. The reference below reproduces exactly that in one process (each rank's
shard forwarded separately, features concatenated before the loss), so DDP with the gather-with-gradient must
give the same loss and the same (averaged) gradients. MoCo v2 / MixCo (arXiv 2010.06300): the queue after one
step holds the keys of both ranks in rank order, computed with shuffle-BN.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from timm_selfcon.methods import MoCo, SelfCon, SelfConM, SupCon

WORLD_SIZE = 2
ATOL = 1e-5


def load_worker() -> ModuleType:
    path = Path(__file__).with_name("dist_worker.py")
    spec = importlib.util.spec_from_file_location("dist_worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = load_worker()



@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ddp") / "results.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD_SIZE),
               str(Path(worker.__file__)), str(out)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, f"torchrun failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-8000:]}"
    return torch.load(out)


def shards(tensor: torch.Tensor) -> list[torch.Tensor]:
    return list(tensor.split(worker.LOCAL_BATCH))


def assert_grads_match(method: torch.nn.Module, expected_grads: dict[str, torch.Tensor]) -> None:
    reference = {n: p.grad for n, p in method.named_parameters() if p.grad is not None}
    assert set(reference) == set(expected_grads)
    for name, grad in reference.items():
        torch.testing.assert_close(expected_grads[name], grad, atol=ATOL, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.distributed
def test_selfcon_ddp_matches_one_process_global_loss(ddp_results: dict) -> None:
    views, labels = worker.global_batch(WORLD_SIZE)
    method = worker.make_method("selfcon")
    assert isinstance(method, SelfCon)
    features = torch.cat([method.projector.forward_projections(v[:, 0]) for v in shards(views)])  # per-rank BN
    loss = method.criterion(features, labels)
    loss.backward()
    result = ddp_results["selfcon"]
    # every rank computes the same global loss ...
    torch.testing.assert_close(result["losses"], loss.detach().expand(WORLD_SIZE), atol=ATOL, rtol=0)
    # ... and DDP's average of the per-rank gradients is the one-process gradient of that loss
    assert_grads_match(method, result["grads"])


@pytest.mark.distributed
def test_unsupervised_selfcon_m_ddp_orders_crops_like_one_process(ddp_results: dict) -> None:
    views, _ = worker.global_batch(WORLD_SIZE)
    method = worker.make_method("selfcon_m")
    assert isinstance(method, SelfConM) and not method.needs_labels
    per_rank = [method.projector.forward_projections(torch.cat([v[:, 0], v[:, 1]])) for v in shards(views)]
    first_crops = torch.cat([f[: worker.LOCAL_BATCH] for f in per_rank])
    second_crops = torch.cat([f[worker.LOCAL_BATCH:] for f in per_rank])
    loss = method.criterion(torch.cat([first_crops, second_crops]), None)  # rows i and i + 8: one image
    loss.backward()
    result = ddp_results["selfcon_m"]
    torch.testing.assert_close(result["losses"], loss.detach().expand(WORLD_SIZE), atol=ATOL, rtol=0)
    assert_grads_match(method, result["grads"])


@pytest.mark.distributed
def test_supcon_ddp_matches_one_process_global_loss(ddp_results: dict) -> None:
    views, labels = worker.global_batch(WORLD_SIZE)
    method = worker.make_method("supcon")
    assert isinstance(method, SupCon)
    per_rank = []
    for v in shards(views):
        z = method.projector(torch.cat([v[:, 0], v[:, 1]]))
        per_rank.append(torch.stack(z.chunk(2), dim=1))
    loss = method.criterion(torch.cat(per_rank), labels)
    loss.backward()
    result = ddp_results["supcon"]
    torch.testing.assert_close(result["losses"], loss.detach().expand(WORLD_SIZE), atol=ATOL, rtol=0)
    assert_grads_match(method, result["grads"])


@pytest.mark.distributed
def test_moco_ddp_shuffle_bn_queue_and_gradients(ddp_results: dict) -> None:
    views, _ = worker.global_batch(WORLD_SIZE)
    method = worker.make_method("moco")
    assert isinstance(method, MoCo)
    initial_queue = method.queue.clone()
    # shuffle-BN: rank 0 draws the permutation of the global key batch; rank r encodes shard r of it
    perm = torch.randperm(WORLD_SIZE * worker.LOCAL_BATCH, generator=torch.Generator().manual_seed(worker.SHUFFLE_SEED))
    key_images = views[:, 1]
    with torch.no_grad():
        shuffled_keys = torch.cat([method.key_projector(key_images[idx]) for idx in perm.view(WORLD_SIZE, -1)])
    keys = torch.empty_like(shuffled_keys)
    keys[perm] = shuffled_keys
    losses = []
    for q_images, k in zip(shards(views[:, 0]), shards(keys)):
        q = method.projector(q_images)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ initial_queue.T], dim=1) / method.temperature
        losses.append(F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long)))
    torch.stack(losses).mean().backward()  # DDP averages the per-rank (local) MoCo losses' gradients

    result = ddp_results["moco"]
    torch.testing.assert_close(result["losses"], torch.stack(losses).detach(), atol=ATOL, rtol=0)
    assert_grads_match(method, result["grads"])
    expected_queue = initial_queue.clone()
    expected_queue[: len(keys)] = keys  # both ranks' keys, in rank order
    torch.testing.assert_close(result["queue"], expected_queue, atol=ATOL, rtol=0)
    assert int(result["queue_ptr"]) == WORLD_SIZE * worker.LOCAL_BATCH
    # shuffle-BN really changed the keys: encoding each rank's own shard gives different ones
    with torch.no_grad():
        unshuffled = torch.cat([method.key_projector(k) for k in shards(key_images)])
    assert not torch.allclose(unshuffled, keys, atol=1e-4)
