"""Resumable, rank-consistent batch order for contrastive pretraining.

SelfCon (Bae et al., "Self-Contrastive Learning: Single-viewed Supervised Contrastive Framework using
Sub-network", AAAI 2023) and MixCo (Kim et al., "MixCo: Mix-up Contrastive Learning for Visual
Representation", NeurIPS-W 2020) both define their batch size globally (all GPUs together). This sampler
therefore draws one permutation per epoch for the *global* batch and hands each process a contiguous slice
of it, so that the union of all ranks' batches at a step is exactly the batch a single process would see.

The order depends only on ``(seed, epoch)``; skipping the first ``start_step`` batches (resume) consumes
no random numbers, so a run resumed mid-epoch sees exactly the remaining batches of the unbroken run.

Each yielded item is a :class:`SampleKey` ``(index, epoch)``: the epoch travels with every index to the
dataset, so per-sample augmentation seeds are right even in persistent DataLoader workers (which never see
a ``set_epoch`` call made on the main process's copy of the dataset).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch.utils.data import Sampler

from ..errors import UserInputError

__all__ = ["ResumableDistributedSampler", "SampleKey", "derive_seed"]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends only on ``parts`` (stable across processes, platforms and Python runs).

    Python's ``hash`` is salted per process for strings, so a cryptographic hash is used instead.
    """
    digest = hashlib.blake2b(digest_size=8, person=b"timm-selfcon")
    for part in parts:
        if isinstance(part, str):
            digest.update(b"s" + part.encode("utf-8") + b"\x00")
        elif isinstance(part, int) and not isinstance(part, bool):
            digest.update(b"i" + int(part).to_bytes(16, "little", signed=True))
        else:
            raise TypeError(f"derive_seed parts must be int or str, got {part!r} ({type(part).__name__})")
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


class SampleKey(NamedTuple):
    """What the sampler hands the dataset for one sample: dataset row ``index`` and the ``epoch``."""

    index: int
    epoch: int


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise UserInputError(f"{name} must be >= {minimum}, got {value}")
    return value


class ResumableDistributedSampler(Sampler[list[SampleKey]]):
    """Batch sampler: yields this rank's per-step batch, a list of ``L = G / num_replicas`` sample keys.

    Order: ``perm = randperm(num_samples, generator seeded by (seed, epoch))`` (or ``arange`` without
    shuffle); global batch ``b`` is ``perm[b*G:(b+1)*G]``; rank ``r`` takes its slice ``[r*L:(r+1)*L]``.

    With ``drop_last=False`` the last, short global batch is padded up to a multiple of ``num_replicas`` by
    wrapping around to the start of ``perm`` (a few samples repeat) so that all ranks keep equal batch sizes.

    Use it as ``DataLoader(dataset, batch_sampler=sampler)``. ``set_epoch(e)`` selects the epoch and clears
    the start step; ``set_start_step(s)`` (call it after ``set_epoch``) skips the first ``s`` global batches
    of that epoch. Iterating twice over the same epoch yields the same batches.

    Args:
        num_samples: dataset length N.
        global_batch_size: G, the batch size of all processes together.
        num_replicas: number of processes; must divide G.
        rank: this process, ``0 <= rank < num_replicas``.
        seed: base seed of the order.
        shuffle: permute per epoch (True) or keep dataset order.
        drop_last: drop the last incomplete global batch (contrastive methods need full, even batches).
    """

    def __init__(
        self,
        num_samples: int,
        global_batch_size: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.global_batch_size = _check_int("global_batch_size", global_batch_size, 1)
        self.num_replicas = _check_int("num_replicas", num_replicas, 1)
        self.rank = _check_int("rank", rank, 0)
        self.seed = _check_int("seed", seed, 0)
        if rank >= num_replicas:
            raise UserInputError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        if global_batch_size % num_replicas != 0:
            raise UserInputError(
                f"global_batch_size={global_batch_size} is not divisible by num_replicas={num_replicas}; "
                "every process needs the same per-process batch size"
            )
        if drop_last and num_samples < global_batch_size:
            raise UserInputError(
                f"global_batch_size={global_batch_size} exceeds the dataset's {num_samples} samples with "
                "drop_last=True: an epoch would have no step"
            )
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.start_step = 0

    @property
    def per_replica_batch_size(self) -> int:
        """L = G / num_replicas, the batch size each process sees (except a padded last batch)."""
        return self.global_batch_size // self.num_replicas

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in a full epoch (independent of the start step)."""
        if self.drop_last:
            return self.num_samples // self.global_batch_size
        return -(-self.num_samples // self.global_batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order to yield; also resets the start step to 0."""
        self.epoch = _check_int("epoch", epoch, 0)
        self.start_step = 0

    def set_start_step(self, step: int) -> None:
        """Skip the first ``step`` global batches of the current epoch (resume mid-epoch)."""
        _check_int("step", step, 0)
        if step > self.steps_per_epoch:
            raise UserInputError(f"start step {step} is beyond the {self.steps_per_epoch} steps of an epoch")
        self.start_step = step

    def permutation(self, epoch: int | None = None) -> torch.Tensor:
        """The sample order of ``epoch`` (default: the current one), an int64 tensor of shape [N]."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return torch.arange(self.num_samples)
        generator = torch.Generator()
        generator.manual_seed(derive_seed("sampler-permutation", self.seed, epoch))
        return torch.randperm(self.num_samples, generator=generator)

    def global_batch(self, step: int, epoch: int | None = None) -> list[int]:
        """Dataset indices of global batch ``step`` of ``epoch`` (all ranks together, before slicing)."""
        return self._global_batch(self.permutation(epoch), step)

    def _global_batch(self, perm: torch.Tensor, step: int) -> list[int]:
        if not 0 <= step < self.steps_per_epoch:
            raise UserInputError(f"step must be in [0, {self.steps_per_epoch}), got {step}")
        batch = perm[step * self.global_batch_size : (step + 1) * self.global_batch_size]
        shortfall = -len(batch) % self.num_replicas
        if shortfall:
            batch = torch.cat([batch, perm[:shortfall]])
        return batch.tolist()

    def __iter__(self) -> Iterator[list[SampleKey]]:
        perm = self.permutation()
        epoch = self.epoch
        for step in range(self.start_step, self.steps_per_epoch):
            batch = self._global_batch(perm, step)
            local = len(batch) // self.num_replicas
            yield [SampleKey(index, epoch) for index in batch[self.rank * local : (self.rank + 1) * local]]

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch after the start step."""
        return self.steps_per_epoch - self.start_step
