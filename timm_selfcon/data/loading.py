"""Loading one split of an image-classification dataset, and finding its image and label columns.

SelfCon (Bae et al., AAAI 2023) trains on CIFAR-10/100, Tiny-ImageNet and ImageNet; MixCo (Kim et al., 2020)
on Tiny-ImageNet and ImageNet with CIFAR as linear-eval targets. All of them load through
:func:`load_image_dataset` (Hub id, parquet file or folder, image folder, or the shipped ``builtin:`` subset);
:func:`resolve_columns` then names the image and label columns the torch datasets of
:mod:`timm_selfcon.data.datasets` read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import datasets
import torch

from ..errors import UserInputError, hub_error
from .builtin import BUILTIN_DATASETS
from .sampler import derive_seed

__all__ = [
    "KNOWN_DATASETS",
    "class_names",
    "dataset_short_name",
    "load_image_dataset",
    "local_builder",
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


def dataset_short_name(data: str | None) -> str:
    """A tag-friendly dataset name: ``uoft-cs/cifar100`` -> ``cifar100``; ``builtin:cifar10_subset`` unchanged."""
    if not data:
        return "unknown"
    name = str(data).rstrip("/").split(":")[-1]
    name = Path(name).name if ("/" in name or "\\" in name) else name
    name = name.split("/")[-1]
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "data"


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


def local_builder(path: Path, split: str) -> tuple[str, dict[str, Any]]:
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
        builder, builder_kwargs = local_builder(path, split)
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


def select_classes(hf, label_column: str, class_list: list[str]):
    """Keep the rows of ``class_list`` (e.g. ImageNet-100's wnids) and relabel them 0..len-1 in that order."""
    import datasets

    names = class_names(hf, label_column)
    if names is None:
        raise UserInputError(f"class_list needs a ClassLabel column with class names; {label_column!r} has none")
    missing = [c for c in class_list if c not in names]
    if missing:
        raise UserInputError(f"class_list names {len(missing)} classes the dataset lacks, e.g. {missing[:5]}")
    new_label = {names.index(c): i for i, c in enumerate(class_list)}
    hf = hf.filter(lambda label: label in new_label, input_columns=label_column)
    hf = hf.map(lambda label: {label_column: new_label[label]}, input_columns=label_column)
    return hf.cast_column(label_column, datasets.ClassLabel(names=list(class_list)))
