"""Torch datasets of augmented views for SelfCon / MixCo pretraining and linear evaluation, reproducibly seeded.

They wrap a split loaded by :func:`timm_selfcon.data.loading.load_image_dataset`; the loaders of
:mod:`timm_selfcon.data.loaders` batch them.

Reproducibility contract: the augmentation of a sample depends only on ``(seed, epoch, index)``. Every
sample is transformed under a private RNG state seeded from that triple (torch's CPU generator and Python's
``random``, saved and restored around it), so results do not depend on worker processes, the number
of workers, or batches skipped on resume, and the caller's RNG is left untouched.

The epoch reaches the workers *through the sampler*: ``ResumableDistributedSampler`` yields
``SampleKey(index, epoch)`` items. ``set_epoch`` on the main-process dataset object is invisible to
persistent workers (each holds its own copy), so carrying the epoch with each index is the robust choice
and lets the train loader keep its workers alive across epochs.

Sample and batch format (a dict, collated by :func:`timm_selfcon.data.loaders.collate_samples`):

================  =====================  ===============================================================
key               per sample             per batch
================  =====================  ===============================================================
``image``         float32 [V, C, H, W]   float32 [B, V, C, H, W]
``label``         int (-1: no label)     int64 [B]
``index``         int (dataset row)      int64 [B]
``substituted``   bool                   bool [B]: True where an undecodable image was replaced
================  =====================  ===============================================================

An undecodable image is replaced by a mid-grey image of the dataset's nominal size (the size of the first
decodable image), keeping its label, so batch size, MixCo pairs and resume stay intact; a
:class:`CorruptImageWarning` names the index and ``substituted`` carries it to the training loop (workers are
separate processes, so per-process bookkeeping alone would lose it). ``strict_data=True`` raises instead; training
with it first checks that every image decodes (:class:`DecodeCheck`), so the refusal comes before any work.
"""

from __future__ import annotations

import io
import operator
import os
import random
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypedDict

import datasets
import torch
from PIL import Image
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset as TorchIterableDataset
from torch.utils.data import get_worker_info

from ..errors import UserInputError
from .loading import HFDataset, _check_label_feature, _features, class_names, resolve_columns
from .sampler import SampleKey, derive_seed

__all__ = [
    "ContrastiveImageDataset",
    "CorruptImageWarning",
    "DecodeCheck",
    "Sample",
    "StreamingContrastiveDataset",
    "isolated_rng",
    "report_substitutions",
    "strict_data_message",
    "substituted_sources",
    "undecodable_description",
]


class CorruptImageWarning(UserWarning):
    """An image could not be decoded and was replaced by a substitute."""


class Sample(TypedDict):
    """One transformed sample; see the module docstring for the batch form."""

    image: torch.Tensor
    label: int
    index: int
    substituted: bool


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU generator and Python's ``random`` seeded by ``seed``, then restore both.

    Only the CPU torch generator is forked and seeded (``torch.manual_seed`` would also reseed CUDA).
    torchvision and timm transforms draw from these two; numpy's global generator is left alone (saving
    and restoring its state costs ~0.16 ms, more than the rest of this function).
    """
    python_state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            yield
    finally:
        random.setstate(python_state)


def _decode_rgb(value: Any) -> Image.Image:
    """Decode a ``datasets.Image`` cell (dict of bytes/path, raw bytes, path or PIL image) to RGB."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            value = value["bytes"]
        elif value.get("path"):
            value = value["path"]
        else:
            raise UserInputError("image cell has neither bytes nor path")
    if isinstance(value, bytes | bytearray | memoryview):
        source: Any = io.BytesIO(bytes(value))
    elif isinstance(value, str | os.PathLike):
        source = value
    else:
        raise TypeError(f"cannot decode an image from a {type(value).__name__}")
    with Image.open(source) as image:
        return image.convert("RGB")


def _cell_path(value: Any) -> str | None:
    """The file an image cell came from, if it names one."""
    if isinstance(value, Mapping) and value.get("path"):
        return str(value["path"])
    if isinstance(value, str | os.PathLike):
        return os.fspath(value)
    return getattr(value, "filename", None) or None


def undecodable_description(index: int, cell: Any, error: BaseException) -> str:
    """``"sample <index> (<path>): cannot decode image (<error>)"`` on one line (the path where the cell names one)."""
    path = _cell_path(cell)
    name = f"sample {index}" + (f" ({path})" if path else "")
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    return f"{name}: cannot decode image ({reason})"


def strict_data_message(problems: Sequence[str], where: str, shown: int = 3) -> str:
    """The one-line refusal of ``strict_data=true`` for the undecodable images ``problems`` of ``where``."""
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return (f"strict_data=true and {len(problems)} image(s) of {where} cannot be decoded: "
            f"{'; '.join(problems[:shown])}{more}. Fix or remove them, or train with strict_data=false (each is "
            "then replaced by a mid-grey image and listed in summary.json)")


class DecodeCheck(TorchDataset):
    """Rows ``indices`` of a dataset whose image column is undecoded (``datasets.Image(decode=False)``): item ``i``
    is None when row ``indices[i]``'s image decodes, else ``(row, undecodable_description(...))``. Nothing is
    augmented; a DataLoader over it checks a whole split in its workers (:func:`timm_selfcon.data.find_undecodable`)."""

    def __init__(self, hf_dataset: datasets.Dataset, image_column: str, indices: Sequence[int]) -> None:
        self.hf_dataset, self.image_column, self.indices = hf_dataset, image_column, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, str] | None:
        return self.__getitems__([position])[0]

    def __getitems__(self, positions: Sequence[int]) -> list[tuple[int, str] | None]:
        rows = [self.indices[p] for p in positions]
        cells = self.hf_dataset[rows][self.image_column]  # one Arrow read per batch
        found: list[tuple[int, str] | None] = []
        for index, cell in zip(rows, cells, strict=True):
            try:
                _decode_rgb(cell)
                found.append(None)
            except Exception as error:  # any decoder failure of this one cell, as when training reads it
                found.append((index, undecodable_description(index, cell, error)))
        return found


def substituted_sources(dataset: ContrastiveImageDataset, indices: Iterable[int]) -> list[str]:
    """``"sample <index> (<path>)"`` (or ``"sample <index>"`` for images stored in the table) per index."""
    out = []
    for index in sorted(set(indices)):
        path = _cell_path(dataset.hf_dataset[index][dataset.image_column])
        out.append(f"sample {index}" + (f" ({path})" if path else ""))
    return out


def report_substitutions(dataset: ContrastiveImageDataset, batch: Mapping[str, Any], seen: set[int]) -> None:
    """In the process that reads the batches: a :class:`CorruptImageWarning` for every substituted image of
    ``batch`` not reported before (``seen`` is updated), naming it by path. Worker processes leave it to this."""
    indices = batch["index"][batch["substituted"]].tolist()
    new = [i for i in indices if i not in seen and i not in dataset.substituted_indices]  # the latter warned here
    seen.update(indices)
    for source in substituted_sources(dataset, new):
        warnings.warn(f"{source}: cannot decode image; a DataLoader worker used a mid-grey substitute with the "
                      "original label (strict_data=True to fail)", CorruptImageWarning, stacklevel=2)


class _SampleMaker:
    """Decoding, substitution and seeded augmentation shared by the map-style and streaming datasets."""

    hf_dataset: HFDataset
    #: inside DataLoader workers, leave the warning to :func:`report_substitutions` in the reading process
    reader_reports: bool = False

    def _setup(
        self,
        hf_dataset: HFDataset,
        transform: Any,
        image_column: str | None,
        label_column: str | None,
        seed: int,
        strict_data: bool,
        num_classes: int | None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        image_column, label_column = resolve_columns(hf_dataset, image_column, label_column)
        _check_label_feature(hf_dataset, label_column)
        self.image_column = image_column
        self.label_column = label_column
        self.class_names = class_names(hf_dataset, label_column)
        if num_classes is None and self.class_names is not None:
            num_classes = len(self.class_names)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 1):
            raise UserInputError(f"num_classes must be a positive int or None, got {num_classes!r}")
        self.num_classes = num_classes
        columns = [image_column] + ([label_column] if label_column is not None else [])
        if _features(hf_dataset) is not None:
            hf_dataset = hf_dataset.select_columns(columns)
            if isinstance(hf_dataset.features[image_column], datasets.Image):
                hf_dataset = hf_dataset.cast_column(image_column, datasets.Image(decode=False))
        self.hf_dataset = hf_dataset
        self.transform = transform
        self.seed = seed
        self.strict_data = bool(strict_data)
        self.epoch = 0
        #: indices substituted in *this* process (the per-sample flag is authoritative with workers)
        self.substituted_indices: set[int] = set()
        self._substitute: Image.Image | None = None

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for integer keys (eval, ``num_workers=0``); sampler keys carry their own epoch."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise UserInputError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch = epoch

    def _nominal_size(self) -> tuple[int, int]:
        side = getattr(self.transform, "image_size", 32)
        return (side, side)

    def _substitute_image(self) -> Image.Image:
        if self._substitute is None:
            self._substitute = Image.new("RGB", self._nominal_size(), (128, 128, 128))
        return self._substitute.copy()

    def _label(self, value: Any, index: int) -> int:
        if value is None:
            return -1
        label = int(value)
        if label != -1 and (label < 0 or (self.num_classes is not None and label >= self.num_classes)):
            raise UserInputError(f"sample {index} has label {label}, outside [0, {self.num_classes}) (or -1)")
        return label

    def _make_sample(self, image_cell: Any, label_cell: Any, index: int, epoch: int) -> Sample:
        substituted = False
        try:
            image = _decode_rgb(image_cell)
        except Exception as error:  # any decoder failure of this one cell: corrupt, truncated, missing file
            path = _cell_path(image_cell)
            name = f"sample {index}" + (f" ({path})" if path else "")
            if self.strict_data:  # training checked every image before it started (find_undecodable)
                raise UserInputError(undecodable_description(index, image_cell, error)) from error
            image = self._substitute_image()
            substituted = True
            # once per image and process; inside a DataLoader worker the loop that reads the batches says it (the
            # ``substituted`` flag), so a worker recreated each epoch does not repeat it and counts agree
            if index not in self.substituted_indices and (get_worker_info() is None or not self.reader_reports):
                warnings.warn(
                    f"{name}: cannot decode image ({type(error).__name__}: {error}); using a mid-grey "
                    f"{image.width}x{image.height} substitute with the original label (strict_data=True to fail)",
                    CorruptImageWarning,
                    stacklevel=2,
                )
            self.substituted_indices.add(index)
        label = self._label(label_cell, index)
        with isolated_rng(derive_seed("augment", self.seed, epoch, index)):
            views = self.transform(image)
        return {"image": views, "label": label, "index": index, "substituted": substituted}


class ContrastiveImageDataset(_SampleMaker, TorchDataset):
    """Map-style dataset of augmented views whose randomness depends only on ``(seed, epoch, index)``.

    Inside DataLoader workers an undecodable image is warned about by :func:`report_substitutions`, which the
    training and evaluation loops call on every batch (by path, once per image), not by the worker.

    Keys: an int index (uses the epoch of :meth:`set_epoch`) or a ``SampleKey(index, epoch)`` /
    ``(index, epoch)`` tuple as yielded by :class:`ResumableDistributedSampler`.
    Returns a :class:`Sample` dict: ``image`` float32 [V, C, H, W], ``label`` int (-1 without a label column),
    ``index`` int, ``substituted`` bool.

    Args:
        hf_dataset: a map-style ``datasets.Dataset``.
        transform: callable PIL RGB image -> Tensor [V, C, H, W], e.g. from ``build_transform``.
        image_column, label_column: column names; None = detect (see :func:`resolve_columns`).
        seed: base seed of the augmentation.
        strict_data: raise ValueError on an undecodable image instead of substituting it.
        num_classes: label range check; default from the ``ClassLabel`` feature.
    """

    def __init__(
        self,
        hf_dataset: datasets.Dataset,
        transform: Any,
        image_column: str | None = None,
        label_column: str | None = None,
        *,
        seed: int,
        strict_data: bool = False,
        num_classes: int | None = None,
    ) -> None:
        if not isinstance(hf_dataset, datasets.Dataset):
            raise TypeError(
                "ContrastiveImageDataset needs a map-style datasets.Dataset, got "
                f"{type(hf_dataset).__name__}; use StreamingContrastiveDataset for streaming data"
            )
        self._setup(hf_dataset, transform, image_column, label_column, seed, strict_data, num_classes)
        self._length = len(hf_dataset)
        self.reader_reports = True

    def __len__(self) -> int:
        return self._length

    def _parse_key(self, key: int | SampleKey | tuple[int, int]) -> tuple[int, int]:
        if isinstance(key, tuple):
            if len(key) != 2:
                raise TypeError(f"a sample key is an index or an (index, epoch) pair, got {key!r}")
            index, epoch = operator.index(key[0]), operator.index(key[1])
        else:
            index, epoch = operator.index(key), self.epoch
        if not 0 <= index < self._length:
            raise IndexError(f"index {index} out of range for a dataset of {self._length} samples")
        return index, epoch

    def _nominal_size(self) -> tuple[int, int]:
        # size of the first decodable image: deterministic, and what a plain ToTensor pipeline expects
        for index in range(min(self._length, 16)):
            try:
                return _decode_rgb(self.hf_dataset[index][self.image_column]).size
            except Exception:  # a corrupt probe image: try the next row
                continue
        return super()._nominal_size()

    def __getitem__(self, key: int | SampleKey | tuple[int, int]) -> Sample:
        index, epoch = self._parse_key(key)
        row = self.hf_dataset[index]
        label_cell = row[self.label_column] if self.label_column is not None else None
        return self._make_sample(row[self.image_column], label_cell, index, epoch)

    def __getitems__(self, keys: Sequence[int | SampleKey | tuple[int, int]]) -> list[Sample]:
        """Batched fetch for the DataLoader: one Arrow read for the whole batch."""
        parsed = [self._parse_key(key) for key in keys]
        columns = self.hf_dataset[[index for index, _ in parsed]]
        images = columns[self.image_column]
        labels = columns[self.label_column] if self.label_column is not None else [None] * len(parsed)
        return [
            self._make_sample(image, label, index, epoch)
            for (index, epoch), image, label in zip(parsed, images, labels, strict=True)
        ]


class StreamingContrastiveDataset(_SampleMaker, TorchIterableDataset):
    """Iterable counterpart of :class:`ContrastiveImageDataset` for streaming (huge) datasets.

    The ``index`` of a sample is its running position: ``k * num_workers + worker_id`` for the k-th sample a
    DataLoader worker reads (the HF dataset gives each worker whole shards). Augmentation is seeded by
    ``(seed, epoch, index)``, so it is reproducible for a fixed number of workers; exact mid-epoch resume is
    only supported for map-style datasets. Use non-persistent workers so that ``set_epoch`` reaches them.
    With ``num_replicas > 1`` the stream is split between processes by ``datasets.distributed``.
    """

    def __init__(
        self,
        hf_dataset: datasets.IterableDataset,
        transform: Any,
        image_column: str | None = None,
        label_column: str | None = None,
        *,
        seed: int,
        strict_data: bool = False,
        num_classes: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if not isinstance(hf_dataset, datasets.IterableDataset):
            raise TypeError(
                "StreamingContrastiveDataset needs a datasets.IterableDataset, got "
                f"{type(hf_dataset).__name__}"
            )
        if not 0 <= rank < num_replicas:
            raise UserInputError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        if num_replicas > 1:
            from datasets.distributed import split_dataset_by_node

            hf_dataset = split_dataset_by_node(hf_dataset, rank=rank, world_size=num_replicas)
        self._setup(hf_dataset, transform, image_column, label_column, seed, strict_data, num_classes)

    def __iter__(self) -> Iterator[Sample]:
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        self.hf_dataset.set_epoch(self.epoch)
        for position, row in enumerate(self.hf_dataset):
            if self.image_column not in row:
                raise UserInputError(
                    f"image column {self.image_column!r} is not in the stream; it has {list(row)}"
                )
            label_cell = row[self.label_column] if self.label_column is not None else None
            index = position * num_workers + worker_id
            yield self._make_sample(row[self.image_column], label_cell, index, self.epoch)
