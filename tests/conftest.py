"""Suite-wide settings shared by every test package."""
import os
from collections.abc import Iterator

import datasets
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    # The suite's models and batches are tiny: a second intra-op thread gains little, and on a busy 2-core machine
    # two OpenMP threads spin-wait for each other (about 5-10x the CPU time). Subprocesses set their own.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def datasets_cache_in_the_session_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # `datasets` converts every local parquet / image folder the tests write into an Arrow cache, by default under
    # ~/.cache, where it would pile up run after run: keep it in the session's temporary folder, which pytest
    # removes after a passing run (tmp_path_retention_policy = "failed"). Subprocesses read the variable.
    cache = str(tmp_path_factory.mktemp("hf_datasets_cache"))
    before = datasets.config.HF_DATASETS_CACHE, os.environ.get("HF_DATASETS_CACHE")
    datasets.config.HF_DATASETS_CACHE = cache
    os.environ["HF_DATASETS_CACHE"] = cache
    yield
    datasets.config.HF_DATASETS_CACHE = before[0]
    if before[1] is None:
        os.environ.pop("HF_DATASETS_CACHE", None)
    else:
        os.environ["HF_DATASETS_CACHE"] = before[1]
