"""load_image_dataset on local parquet files/folders and image folders, column handling, splits, and the
shipped CIFAR-10 subset. Everything is local: no network, no ../shared."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import encode_image, noise_image, tiny_image_dataset

from timm_selfcon.data import (
    CIFAR10_SUBSET,
    class_names,
    load_image_dataset,
    resolve_columns,
    split_train_val,
)
from timm_selfcon.errors import UserInputError

NAMES = ["cat", "dog", "frog"]


def write_parquet(path: Path, rows: int, *, image_column: str = "img", label_column: str | None = "label") -> Path:
    """One parquet file at ``path``: ``rows`` 8x8 noise PNGs, labels ``ClassLabel(NAMES)``."""
    tiny_image_dataset(path.parent, {"split": rows}, layout=path.name, image_size=8, class_names=NAMES,
                       content="noise", image_column=image_column, label_column=label_column)
    return path


def write_image_folder(root: Path, classes: list[str], per_class: int = 2) -> None:
    """``root/<class>/<index>.png``: ``per_class`` 8x8 noise PNGs of each class."""
    tiny_image_dataset(root, {"split": per_class * len(classes)}, layout="{label}/{index}.png", image_size=8,
                       class_names=classes, content="noise")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "hf-cache"


def test_single_parquet_file_is_the_split(tmp_path: Path, cache: Path) -> None:
    file = write_parquet(tmp_path / "anything.parquet", 7)
    ds = load_image_dataset(file, split="test", cache_dir=cache)
    assert isinstance(ds, datasets.Dataset) and len(ds) == 7
    assert resolve_columns(ds) == ("img", "label")
    assert class_names(ds, "label") == NAMES
    assert ds[0]["img"].size == (8, 8)


@pytest.mark.parametrize(
    "layout", ["{split}.parquet", "{split}/part-0.parquet", "mydata-{split}-00000-of-00001.parquet"]
)
def test_parquet_folder_layouts(tmp_path: Path, cache: Path, layout: str) -> None:
    write_parquet(tmp_path / "data" / layout.format(split="train"), 6)
    write_parquet(tmp_path / "data" / layout.format(split="test"), 3)
    assert len(load_image_dataset(tmp_path / "data", "train", cache_dir=cache)) == 6
    assert len(load_image_dataset(str(tmp_path / "data"), "test", cache_dir=cache)) == 3


def test_val_and_validation_find_each_other(tmp_path: Path, cache: Path) -> None:
    write_parquet(tmp_path / "val.parquet", 4)
    assert len(load_image_dataset(tmp_path, "validation", cache_dir=cache)) == 4


def test_image_folder_with_split_subfolders_shares_class_ids(tmp_path: Path, cache: Path) -> None:
    write_image_folder(tmp_path / "train", NAMES, per_class=2)
    write_image_folder(tmp_path / "test", ["frog"], per_class=3)  # a split lacking classes keeps the ids
    train = load_image_dataset(tmp_path, "train", cache_dir=cache)
    test = load_image_dataset(tmp_path, "test", cache_dir=cache)
    assert resolve_columns(train) == ("image", "label")
    assert class_names(train, "label") == class_names(test, "label") == NAMES
    assert Counter(train["label"]) == {0: 2, 1: 2, 2: 2}
    assert test["label"] == [2, 2, 2]


def test_image_folder_with_class_subfolders_is_the_train_split(tmp_path: Path, cache: Path) -> None:
    write_image_folder(tmp_path, ["a", "b"], per_class=3)
    ds = load_image_dataset(tmp_path, "train", cache_dir=cache)
    assert len(ds) == 6 and class_names(ds, "label") == ["a", "b"]
    with pytest.raises(ValueError, match=r"no split 'test'.*'a/', 'b/'"):
        load_image_dataset(tmp_path, "test", cache_dir=cache)


def test_missing_label_column_lists_the_columns(tmp_path: Path, cache: Path) -> None:
    file = write_parquet(tmp_path / "train.parquet", 3)
    with pytest.raises(ValueError, match=r"label column 'fine_label' is not in the dataset.*\['img', 'label'\]"):
        load_image_dataset(file, label_column="fine_label", cache_dir=cache)
    with pytest.raises(ValueError, match=r"image column 'image' is not in the dataset.*\['img', 'label'\]"):
        load_image_dataset(file, image_column="image", cache_dir=cache)


def test_label_detection_order(tmp_path: Path, cache: Path) -> None:
    fine = load_image_dataset(write_parquet(tmp_path / "a.parquet", 3, label_column="fine_label"), cache_dir=cache)
    assert resolve_columns(fine) == ("img", "fine_label")
    other = load_image_dataset(write_parquet(tmp_path / "b.parquet", 3, label_column="category"), cache_dir=cache)
    assert resolve_columns(other) == ("img", "category")  # first ClassLabel
    unlabelled = load_image_dataset(write_parquet(tmp_path / "c.parquet", 3, label_column=None), cache_dir=cache)
    assert resolve_columns(unlabelled) == ("img", None)
    assert class_names(unlabelled, None) is None


def test_known_hub_defaults_pick_cifar100_fine_label(tmp_path: Path, cache: Path) -> None:
    columns = {
        "img": [{"bytes": encode_image(noise_image(np.random.default_rng(0), 0, 8)), "path": None}],
        "coarse_label": [1],
        "fine_label": [2],
    }
    ds = datasets.Dataset.from_dict(
        columns,
        features=datasets.Features(
            {"img": datasets.Image(), "coarse_label": datasets.Value("int64"), "fine_label": datasets.Value("int64")}
        ),
    )
    assert resolve_columns(ds, data="uoft-cs/cifar100") == ("img", "fine_label")


def test_no_image_column_is_an_error() -> None:
    ds = datasets.Dataset.from_dict({"text": ["a"], "label": [0]})
    with pytest.raises(ValueError, match=r"no image column.*\['text', 'label'\]"):
        resolve_columns(ds)


def test_missing_local_path_and_unsupported_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="does not exist: it is neither an existing file"):
        load_image_dataset(tmp_path / "nope.parquet")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"expected a \.parquet file"):
        load_image_dataset(tmp_path / "x.csv")


def test_local_parquet_streams(tmp_path: Path) -> None:
    ds = load_image_dataset(write_parquet(tmp_path / "train.parquet", 5), streaming=True)
    assert isinstance(ds, datasets.IterableDataset)
    assert sum(1 for _ in ds) == 5


def test_split_train_val_is_deterministic_and_disjoint(tmp_path: Path, cache: Path) -> None:
    ds = load_image_dataset(write_parquet(tmp_path / "train.parquet", 40), cache_dir=cache)
    ds = ds.add_column("row", list(range(40)))
    train, val = split_train_val(ds, 0.25, seed=3)
    train_again, val_again = split_train_val(ds, 0.25, seed=3)
    _, val_other = split_train_val(ds, 0.25, seed=4)
    assert len(train) == 30 and len(val) == 10
    assert set(train["row"]).isdisjoint(val["row"]) and set(train["row"]) | set(val["row"]) == set(range(40))
    assert val["row"] == val_again["row"] == sorted(val["row"]) and train["row"] == train_again["row"]
    assert val["row"] != val_other["row"]
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(ds, 1.0, seed=0)


def test_shipped_cifar10_subset(cache: Path) -> None:
    files = sorted(p.name for p in CIFAR10_SUBSET.iterdir())
    assert files == ["README.md", "test.parquet", "train.parquet"]
    assert sum((CIFAR10_SUBSET / f).stat().st_size for f in files) < 6 * 1024 * 1024
    train = load_image_dataset(CIFAR10_SUBSET, "train", cache_dir=cache)
    test = datasets.load_dataset(
        "parquet", data_files={"test": str(CIFAR10_SUBSET / "test.parquet")}, split="test", cache_dir=str(cache)
    )
    assert (len(train), len(test)) == (5000, 1000)
    assert resolve_columns(train) == ("img", "label")
    assert isinstance(test.features["img"], datasets.Image)
    assert class_names(train, "label") == class_names(test, "label")
    assert class_names(train, "label")[:3] == ["airplane", "automobile", "bird"]
    assert Counter(train["label"]) == dict.fromkeys(range(10), 500)
    assert Counter(test["label"]) == dict.fromkeys(range(10), 100)
    assert train[0]["img"].size == (32, 32)
    train_bytes = {cell["bytes"] for cell in train.cast_column("img", datasets.Image(decode=False))["img"]}
    test_bytes = {cell["bytes"] for cell in test.cast_column("img", datasets.Image(decode=False))["img"]}
    assert train_bytes.isdisjoint(test_bytes)
