"""DataLoaders over the datasets of :mod:`timm_selfcon.data.datasets`, and their batch collation.

The train loader takes its order from :class:`~timm_selfcon.data.sampler.ResumableDistributedSampler`, whose keys
carry the epoch, so its workers may persist across epochs; the eval loader reads every sample once, in order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate

from ..errors import UserInputError
from .datasets import ContrastiveImageDataset, DecodeCheck, Sample, StreamingContrastiveDataset
from .sampler import ResumableDistributedSampler

__all__ = [
    "build_eval_loader",
    "build_train_loader",
    "collate_samples",
    "find_undecodable",
    "resolve_num_workers",
]


def collate_samples(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """Stack samples into ``{"image": [B, V, C, H, W], "label": int64 [B], "index": int64 [B],
    "substituted": bool [B]}`` (in shared memory inside workers)."""
    return default_collate(list(samples))


def resolve_num_workers(num_workers: int | str, processes_per_machine: int | None = None) -> int:
    """``num_workers``, or for ``"auto"`` the cores this process may use less one for the process itself.

    The cores are those of ``os.sched_getaffinity`` (what a container or ``taskset`` allows) shared by the
    processes on this machine (``LOCAL_WORLD_SIZE``, set by torchrun and accelerate launch).
    """
    if num_workers != "auto":
        return int(num_workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = processes_per_machine or int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(cores // max(local, 1) - 1, 0)


def _limit_worker_threads(worker_id: int) -> None:
    # N workers × M intra-op threads oversubscribes the CPU; the main process keeps its own setting.
    torch.set_num_threads(1)


def _pin_memory_default() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def _private_generator() -> torch.Generator:
    # DataLoader draws its workers' base seed from this generator at every iter(); a private one keeps
    # the caller's global RNG stream identical between an unbroken and a resumed run.
    generator = torch.Generator()
    generator.manual_seed(0)
    return generator


def _loader_kwargs(num_workers: int, pin_memory: bool | None, prefetch_factor: int) -> dict[str, Any]:
    """The DataLoader arguments both loaders share, ``num_workers`` checked: collation, pinning, worker set-up, seed."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise UserInputError(f"num_workers must be a non-negative int, got {num_workers!r}")
    return dict(
        num_workers=num_workers,
        collate_fn=collate_samples,
        pin_memory=_pin_memory_default() if pin_memory is None else pin_memory,
        worker_init_fn=_limit_worker_threads,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        generator=_private_generator(),
    )


def build_train_loader(
    dataset: ContrastiveImageDataset,
    sampler: ResumableDistributedSampler,
    per_process_batch_size: int,
    num_workers: int,
    *,
    pin_memory: bool | None = None,
    persistent_workers: bool = True,
    prefetch_factor: int = 2,
    multiprocessing_context: str | None = None,
) -> DataLoader:
    """DataLoader over ``dataset`` in the order of ``sampler`` (a batch sampler; drop_last lives there).

    Persistent workers are safe because the epoch travels inside each sampler key. Call
    ``sampler.set_epoch(e)`` (and ``sampler.set_start_step(s)`` on resume) before iterating. Do not hand
    the result to ``accelerator.prepare`` with several processes: the sampler already shards by rank.
    Batches are dicts, see :func:`collate_samples`.
    """
    if not isinstance(dataset, ContrastiveImageDataset):
        raise TypeError(f"dataset must be a ContrastiveImageDataset, got {type(dataset).__name__}")
    if not isinstance(sampler, ResumableDistributedSampler):
        raise TypeError(f"sampler must be a ResumableDistributedSampler, got {type(sampler).__name__}")
    if per_process_batch_size != sampler.per_replica_batch_size:
        raise UserInputError(
            f"per_process_batch_size={per_process_batch_size} does not match the sampler's "
            f"global_batch_size / num_replicas = {sampler.per_replica_batch_size}"
        )
    if sampler.num_samples != len(dataset):
        raise UserInputError(f"sampler covers {sampler.num_samples} samples but the dataset has {len(dataset)}")
    common = _loader_kwargs(num_workers, pin_memory, prefetch_factor)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        persistent_workers=persistent_workers and num_workers > 0,
        multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
        **common,
    )


def build_eval_loader(
    dataset: ContrastiveImageDataset | StreamingContrastiveDataset,
    batch_size: int,
    num_workers: int,
    *,
    pin_memory: bool | None = None,
    prefetch_factor: int = 2,
) -> DataLoader:
    """Sequential DataLoader (every sample once, last batch kept), e.g. for evaluation or streaming data.

    Workers are not persistent, so a ``set_epoch`` made on ``dataset`` before iterating reaches them.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"batch_size must be a positive int, got {batch_size!r}")
    common = _loader_kwargs(num_workers, pin_memory, prefetch_factor)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False, **common)


def _problems_of_batch(found: Sequence[tuple[int, str] | None]) -> list[tuple[int, str]]:
    return [problem for problem in found if problem is not None]


def find_undecodable(dataset: ContrastiveImageDataset, num_workers: int, *, rank: int = 0, num_replicas: int = 1,
                     batch_size: int = 256) -> list[tuple[int, str]]:
    """Every image of rows ``rank::num_replicas`` of ``dataset`` that does not decode, in row order:
    ``(row, "sample <row> (<path>): cannot decode image (<error>)")``.

    ``strict_data=true`` calls it before training: each image is decoded once (not augmented) in ``num_workers``
    DataLoader workers, so the check costs about one epoch's decoding and a corrupt file is named before any work.
    """
    from tqdm.auto import tqdm

    check = DecodeCheck(dataset.hf_dataset, dataset.image_column, range(rank, len(dataset), num_replicas))
    loader = DataLoader(check, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_problems_of_batch, worker_init_fn=_limit_worker_threads)
    problems: list[tuple[int, str]] = []
    # disable=None: a progress bar in a terminal only, so that a log or a refusal stays one line
    for found in tqdm(loader, desc="strict_data: checking images", disable=None, leave=False):
        problems += found
    return problems
