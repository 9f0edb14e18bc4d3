"""The suite's one tiny-image-dataset builder (tests/conftest.py): layouts, columns, labels, corrupt rows, seeds."""
import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import PALETTE, tiny_image_dataset
from PIL import Image, UnidentifiedImageError


def read(path: Path) -> datasets.Dataset:
    return datasets.Dataset.from_parquet(str(path))


def test_parquet_splits_with_class_names_and_learnable_colours(tmp_path: Path) -> None:
    root = tiny_image_dataset(tmp_path, {"train": 8, "test": 4}, class_names=["a", "b"])
    train = read(root / "train.parquet")
    assert len(train) == 8 and len(read(root / "test.parquet")) == 4
    assert train.features["label"].names == ["a", "b"] and train["label"] == [0, 1] * 4
    for row in train:
        assert row["img"].size == (16, 16)
        mean = np.asarray(row["img"]).reshape(-1, 3).mean(0)
        assert np.abs(mean - PALETTE[row["label"]]).max() < 10  # the class's colour


def test_columns_unlabelled_jpeg_and_single_file(tmp_path: Path) -> None:
    tiny_image_dataset(tmp_path, {"only": 3}, layout="data.parquet", image_column="image", label_column="fine_label",
                       image_format="JPEG", image_size=12, content="noise")
    table = read(tmp_path / "data.parquet")
    assert table.column_names == ["image", "fine_label"] and table[0]["image"].format == "JPEG"
    tiny_image_dataset(tmp_path / "u", {"train": 2}, label_column=None)
    assert read(tmp_path / "u" / "train.parquet").column_names == ["img"]


def test_corrupt_rows_are_undecodable(tmp_path: Path) -> None:
    tiny_image_dataset(tmp_path, {"train": 4, "test": 2}, corrupt_rows=(1,))  # rows of the first split
    cells = read(tmp_path / "train.parquet").cast_column("img", datasets.Image(decode=False))["img"]
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(cells[1]["bytes"]))
    Image.open(io.BytesIO(cells[0]["bytes"])).load()
    with pytest.raises(ValueError, match="not in"):
        tiny_image_dataset(tmp_path / "x", {"train": 2}, corrupt_rows={"test": (0,)})


def test_image_folder_layout(tmp_path: Path) -> None:
    tiny_image_dataset(tmp_path, {"train": 4, "test": 2}, num_classes=2, layout="{split}/{label}/{index:02d}.png")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == [
        "test/class0/00.png", "test/class1/01.png",
        "train/class0/00.png", "train/class0/02.png", "train/class1/01.png", "train/class1/03.png"]


def test_seeds_per_row_or_shared(tmp_path: Path) -> None:
    def pixels(root: Path, split: str = "train") -> list[np.ndarray]:
        return [np.asarray(image) for image in read(root / f"{split}.parquet")["img"]]

    short = pixels(tiny_image_dataset(tmp_path / "a", {"train": 2}))
    longer = pixels(tiny_image_dataset(tmp_path / "b", {"train": 3}))
    assert all((x == y).all() for x, y in zip(short, longer))  # a row does not depend on the others
    assert not (pixels(tiny_image_dataset(tmp_path / "c", {"train": 2}, seed=1))[0] == short[0]).all()
    shared = pixels(tiny_image_dataset(tmp_path / "d", {"train": 2}, rng_per_row=False))
    assert not (shared[1] == short[1]).all()


def test_factory_fixture_writes_a_fresh_folder(make_tiny_image_dataset) -> None:
    first, second = make_tiny_image_dataset({"train": 2}), make_tiny_image_dataset({"train": 2})
    assert first != second and (first / "train.parquet").is_file() and (second / "train.parquet").is_file()
