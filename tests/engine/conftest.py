"""Tiny generated image datasets for the engine tests: 4 classes of 16x16 PNGs in a parquet folder (train, test)."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_image_dataset

from ._eval_data import cached_position_data, cached_trained_run

NUM_CLASSES = 4
TRAIN_ROWS = 48
TEST_ROWS = 16
IMAGE_SIDE = 16
CORRUPT_ROW = 5


def make_data_dir(root: Path, *, corrupt_rows: tuple[int, ...] = ()) -> Path:
    """``train.parquet`` (``TRAIN_ROWS``) and ``test.parquet`` (``TEST_ROWS``): ``img`` PNG, ``label`` ClassLabel(4),
    each class its own mean colour (learnable); ``corrupt_rows`` of the train split undecodable."""
    return tiny_image_dataset(root, {"train": TRAIN_ROWS, "test": TEST_ROWS}, image_size=IMAGE_SIDE,
                              num_classes=NUM_CLASSES, corrupt_rows={"train": corrupt_rows})


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
