"""Image datasets for SelfCon / MixCo pretraining and linear evaluation, with reproducible augmentation.

SelfCon (Bae et al., AAAI 2023) trains on CIFAR-10/100, Tiny-ImageNet and ImageNet; MixCo (Kim et al., 2020)
on Tiny-ImageNet and ImageNet with CIFAR as linear-eval targets. All of them load through
:func:`load_image_dataset` (Hub id, parquet file or folder, or an image folder).

Reproducibility contract: the augmentation of a sample depends only on ``(seed, epoch, index)``. Every
sample is transformed under a private RNG state seeded from that triple (torch's CPU generator and Python's
``random``, saved and restored around it), so results do not depend on worker processes, the number
of workers, or batches skipped on resume, and the caller's RNG is left untouched.

The epoch reaches the workers *through the sampler*: ``ResumableDistributedSampler`` yields
``SampleKey(index, epoch)`` items. ``set_epoch`` on the main-process dataset object is invisible to
persistent workers (each holds its own copy), so carrying the epoch with each index is the robust choice
and lets the train loader keep its workers alive across epochs.

Sample and batch format (a dict, collated by :func:`collate_samples`):

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
separate processes, so per-process bookkeeping alone would lose it). ``strict_data=True`` raises instead.
"""

from __future__ import annotations

import io
import operator
import os
import random
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

import datasets
import torch
from PIL import Image
from torch.utils.data import DataLoader, get_worker_info
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset as TorchIterableDataset
from torch.utils.data._utils.collate import default_collate

from timm_selfcon.data.sampler import ResumableDistributedSampler, SampleKey, derive_seed

from ..errors import UserInputError, hub_error

__all__ = [
    "KNOWN_DATASETS",
    "ContrastiveImageDataset",
    "CorruptImageWarning",
    "Sample",
    "StreamingContrastiveDataset",
    "build_eval_loader",
    "build_train_loader",
    "class_names",
    "collate_samples",
    "isolated_rng",
    "load_image_dataset",
    "resolve_columns",
    "split_train_val",
]

#: Hub datasets whose columns are known: id -> (image column, label column).
KNOWN_DATASETS: dict[str, tuple[str, str]] = {
    "uoft-cs/cifar10": ("img", "label"),
    "uoft-cs/cifar100": ("img", "fine_label"),
    "cifar10": ("img", "label"),
    "cifar100": ("img", "fine_label"),
}

_LABEL_COLUMN_NAMES = ("label", "fine_label", "labels")
_IMAGE_COLUMN_NAMES = ("image", "img")  # fallback when a streaming dataset does not declare its features
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_SPLIT_ALIASES = {"validation": ("validation", "val", "valid"), "val": ("val", "validation", "valid")}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

HFDataset = datasets.Dataset | datasets.IterableDataset


#: Datasets that ship with the package, usable as ``data="builtin:<name>"``.
BUILTIN_DATASETS = {"builtin:cifar10_subset": Path(__file__).resolve().parent / "cifar10_subset"}


class CorruptImageWarning(UserWarning):
    """An image could not be decoded and was replaced by a substitute."""


class Sample(TypedDict):
    """One transformed sample; see the module docstring for the batch form."""

    image: torch.Tensor
    label: int
    index: int
    substituted: bool


# --------------------------------------------------------------------------------------------- loading


def _has_images(folder: Path) -> bool:
    """Whether ``folder`` holds an image file at any depth (stops at the first one)."""
    return any(p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file() for p in folder.rglob("*"))


def _class_folders(folder: Path) -> list[str]:
    """Names of the subfolders of ``folder`` that hold images (the classes of an image folder)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _has_images(p))


def _split_names(split: str) -> tuple[str, ...]:
    return _SPLIT_ALIASES.get(split, (split,))


def _imagefolder(split: str, files: str, classes: list[str]) -> tuple[str, dict[str, Any]]:
    if not classes:  # images without class subfolders: unlabelled
        return "imagefolder", {"data_files": {split: [files]}, "drop_labels": True}
    # the class list is given explicitly so that every split of a folder maps names to the same ids,
    # even a split that lacks some classes (datasets would otherwise infer the labels per load)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=classes)})
    return "imagefolder", {"data_files": {split: [files]}, "features": features, "drop_labels": False}


def _local_builder(path: Path, split: str) -> tuple[str, dict[str, Any]]:
    """Pick the ``datasets`` builder and its arguments for ``split`` of a local file or folder."""
    if path.is_file():
        if path.suffix.lower() != ".parquet":
            raise UserInputError(f"unsupported data file {str(path)!r}: expected a .parquet file or a folder")
        return "parquet", {"data_files": {split: [str(path)]}}
    for name in _split_names(split):
        if (path / f"{name}.parquet").is_file():
            return "parquet", {"data_files": {split: [str(path / f"{name}.parquet")]}}
        split_dir = path / name
        if split_dir.is_dir():
            parquet = sorted(split_dir.glob("*.parquet"))
            if parquet:
                return "parquet", {"data_files": {split: [str(p) for p in parquet]}}
            if _has_images(split_dir):
                own_classes = _class_folders(split_dir)
                # union over the sibling split folders laid out as <split>/<class>/<image>
                classes = sorted(
                    {c for sibling in path.iterdir() if sibling.is_dir() for c in _class_folders(sibling)}
                ) if own_classes else []
                return _imagefolder(split, str(split_dir / "**"), classes)
        for pattern in (f"*{name}*.parquet", f"data/*{name}*.parquet"):
            parquet = sorted(path.glob(pattern))
            if parquet:
                return "parquet", {"data_files": {split: [str(p) for p in parquet]}}
    classes = _class_folders(path)
    if split == "train" and classes:
        # class subfolders straight under the root: the whole folder is the training split
        return _imagefolder(split, str(path / "**"), classes)
    listing = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    raise UserInputError(
        f"no split {split!r} in {str(path)!r}: expected {split}.parquet, {split}/*.parquet, "
        f"*{split}*.parquet, {split}/<class>/<image>, or class subfolders (train split only); "
        f"the folder holds {listing[:20]}"
    )


def load_image_dataset(
    data: str | os.PathLike[str],
    split: str = "train",
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    streaming: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load one split of an image-classification dataset.

    Args:
        data: a Hub dataset id (``"uoft-cs/cifar10"``, ``"uoft-cs/cifar100"``, ``"zh-plus/tiny-imagenet"``,
            ``"ILSVRC/imagenet-1k"``), a local ``.parquet`` file (= that split), or a local folder holding
            ``<split>.parquet``, ``<split>/*.parquet``, ``*<split>*.parquet``, ``<split>/<class>/<image>`` or
            ``<class>/<image>`` (train only). Local paths need no network.
        split: split name (``"val"`` and ``"validation"`` find each other in local folders).
        image_column, label_column: validated if given (ValueError listing the dataset's columns when
            missing); detected later by :func:`resolve_columns` when not.
        streaming: return an ``IterableDataset`` that reads lazily (huge datasets such as ImageNet).
        cache_dir: ``datasets`` cache folder for the converted Arrow files.
    """
    cache = None if cache_dir is None else str(cache_dir)
    text = os.fspath(data)
    if text.startswith("builtin:"):
        if text not in BUILTIN_DATASETS:
            raise UserInputError(f"unknown built-in dataset {text!r}; expected one of {sorted(BUILTIN_DATASETS)}")
        text = str(BUILTIN_DATASETS[text])
    path = Path(text).expanduser()
    if path.exists():
        builder, builder_kwargs = _local_builder(path, split)
        ds = datasets.load_dataset(
            builder, split=split, streaming=streaming, cache_dir=cache, **builder_kwargs
        )
    elif text.startswith(("/", ".", "~")) or text.lower().endswith(".parquet") or not _HUB_ID.match(text):
        raise UserInputError(f"data {text!r} does not exist: it is neither an existing file or folder nor a Hub "
                             "dataset id (ORG/NAME)")
    else:
        try:
            ds = datasets.load_dataset(text, split=split, streaming=streaming, cache_dir=cache)
        except Exception as err:
            answer = hub_error(err, text)
            if answer is None:
                raise
            raise answer from err
    resolve_columns(ds, image_column, label_column, data=text)
    return ds


# --------------------------------------------------------------------------------------------- columns


def _features(ds: HFDataset) -> datasets.Features | None:
    return ds.features


def _column_names(ds: HFDataset) -> list[str] | None:
    features = _features(ds)
    return None if features is None else list(features)


def resolve_columns(
    ds: HFDataset,
    image_column: str | None = None,
    label_column: str | None = None,
    *,
    data: str | None = None,
) -> tuple[str, str | None]:
    """Return ``(image_column, label_column or None)``, validating given names and detecting missing ones.

    Detection: the image column is the first ``datasets.Image`` feature; the label column is the known
    default of ``data`` (see :data:`KNOWN_DATASETS`), else ``label``, ``fine_label``, ``labels``, else the
    first ``ClassLabel`` feature, else None (unlabelled). A given column that is absent raises ValueError
    naming the columns the dataset has.
    """
    names = _column_names(ds)
    known = KNOWN_DATASETS.get(data or "")
    if names is None:  # streaming dataset without declared features: trust the caller / defaults
        return image_column or (known[0] if known else "image"), label_column or (known[1] if known else None)
    for role, column in (("image", image_column), ("label", label_column)):
        if column is not None and column not in names:
            raise UserInputError(f"{role} column {column!r} is not in the dataset; its columns are {names}")
    features = _features(ds)
    assert features is not None
    if image_column is None:
        if known and known[0] in names:
            image_column = known[0]
        else:
            image_column = next((n for n in names if isinstance(features[n], datasets.Image)), None)
            if image_column is None:
                image_column = next((n for n in _IMAGE_COLUMN_NAMES if n in names), None)
        if image_column is None:
            raise UserInputError(f"no image column found (no datasets.Image feature); the columns are {names}")
    if label_column is None:
        if known and known[1] in names:
            label_column = known[1]
        else:
            label_column = next((n for n in _LABEL_COLUMN_NAMES if n in names), None)
            if label_column is None:
                label_column = next((n for n in names if isinstance(features[n], datasets.ClassLabel)), None)
    return image_column, label_column


def class_names(ds: HFDataset, label_column: str | None) -> list[str] | None:
    """Class names of ``label_column`` if it is a ``ClassLabel`` feature, else None."""
    features = _features(ds)
    if label_column is None or features is None or label_column not in features:
        return None
    feature = features[label_column]
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def split_train_val(
    ds: datasets.Dataset, val_fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Deterministic random split into (train, val); both keep the original row order. Not stratified."""
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"split_train_val needs a map-style datasets.Dataset, got {type(ds).__name__}")
    if not 0.0 < val_fraction < 1.0:
        raise UserInputError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    num_val = round(len(ds) * val_fraction)
    if not 0 < num_val < len(ds):
        raise UserInputError(f"val_fraction={val_fraction} of {len(ds)} rows leaves an empty train or val split")
    generator = torch.Generator()
    generator.manual_seed(derive_seed("split-train-val", seed))
    perm = torch.randperm(len(ds), generator=generator)
    val_indices = sorted(perm[:num_val].tolist())
    train_indices = sorted(perm[num_val:].tolist())
    return ds.select(train_indices), ds.select(val_indices)


# --------------------------------------------------------------------------------------------- samples


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


def _check_label_feature(ds: HFDataset, label_column: str | None) -> None:
    features = _features(ds)
    if label_column is None or features is None:
        return
    feature = features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        return
    raise UserInputError(
        f"label column {label_column!r} has feature {feature}; expected ClassLabel or an integer Value"
    )


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
            if self.strict_data:
                raise UserInputError(
                    f"{name}: cannot decode image ({type(error).__name__}: {error})"
                ) from error
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


# --------------------------------------------------------------------------------------------- loaders


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
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise UserInputError(f"num_workers must be a non-negative int, got {num_workers!r}")
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_samples,
        pin_memory=_pin_memory_default() if pin_memory is None else pin_memory,
        worker_init_fn=_limit_worker_threads,
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
        generator=_private_generator(),
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
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise UserInputError(f"num_workers must be a non-negative int, got {num_workers!r}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=num_workers,
        collate_fn=collate_samples,
        pin_memory=_pin_memory_default() if pin_memory is None else pin_memory,
        worker_init_fn=_limit_worker_threads,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        generator=_private_generator(),
    )
