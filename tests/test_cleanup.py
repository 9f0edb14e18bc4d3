"""The suite cleans up after itself: temporary folders go after a passing run, the datasets cache with them."""
from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from timm_selfcon.data import load_image_dataset


def test_pytest_removes_the_temporary_folders_of_a_passing_run(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.getini("tmp_path_retention_policy") == "failed"


def test_datasets_cache_lives_in_the_session_folder(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp()
    assert Path(datasets.config.HF_DATASETS_CACHE).is_relative_to(base)
    folder = tmp_path / "data"
    folder.mkdir()
    datasets.Dataset.from_dict({"x": [1, 2]}).to_parquet(str(folder / "train.parquet"))
    with pytest.raises(ValueError):  # no image column; the Arrow conversion is cached all the same
        load_image_dataset(folder)
    assert any(Path(datasets.config.HF_DATASETS_CACHE).rglob("*.arrow"))
