"""Suite-wide settings shared by every test package."""
from collections.abc import Iterator

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
