"""Tiny generated image datasets for the engine tests: 4 classes of 16x16 PNGs in a parquet folder (train, test)."""
from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from ._eval_data import cached_position_data, cached_trained_run

NUM_CLASSES = 4
TRAIN_ROWS = 48
TEST_ROWS = 16
IMAGE_SIDE = 16
CORRUPT_ROW = 5


def png_bytes(seed: int, label: int) -> bytes:
    """A 16x16 RGB image whose mean colour depends on the class (so the classes are learnable)."""
    rng = np.random.default_rng(seed)
    base = np.array([(60, 60, 60), (200, 60, 60), (60, 200, 60), (60, 60, 200)][label], dtype=np.int16)
    pixels = np.clip(base + rng.integers(-50, 51, size=(IMAGE_SIDE, IMAGE_SIDE, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_split(path: Path, rows: int, *, seed_offset: int, corrupt_rows: tuple[int, ...] = ()) -> None:
    labels = [i % NUM_CLASSES for i in range(rows)]
    images = [
        {"bytes": b"\x89PNG\r\n not really a png" if i in corrupt_rows else png_bytes(seed_offset + i, label), "path": None}
        for i, label in enumerate(labels)
    ]
    features = datasets.Features({"img": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[f"class{c}" for c in range(NUM_CLASSES)])})
    datasets.Dataset.from_dict({"img": images, "label": labels}, features=features).to_parquet(str(path))


def make_data_dir(root: Path, *, corrupt_rows: tuple[int, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_split(root / "train.parquet", TRAIN_ROWS, seed_offset=0, corrupt_rows=corrupt_rows)
    write_split(root / "test.parquet", TEST_ROWS, seed_offset=10_000)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with ``train.parquet`` (48 rows) and ``test.parquet`` (16 rows): ``img`` PNG, ``label`` ClassLabel(4)."""
    return make_data_dir(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def corrupt_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As :func:`tiny_data` with row ``CORRUPT_ROW`` of the train split undecodable."""
    return make_data_dir(tmp_path_factory.mktemp("corrupt_data"), corrupt_rows=(CORRUPT_ROW,))




@pytest.fixture(scope="module")
def position_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The evaluation tests' dataset, whose class is the position of a bright square (see ``_eval_data``)."""
    return cached_position_data(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``ce`` training run (72 steps, checkpoints ckpt-36 and ckpt-72, ``last`` -> ckpt-72), built once."""
    return cached_trained_run(tmp_path_factory.getbasetemp())
