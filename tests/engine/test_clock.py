"""A run's cost counts its children (the loader workers), and hashes tell equal weights and batches apart."""
import subprocess
import sys
import time

import torch

from timm_selfcon.engine.clock import RunClock, cpu_seconds, indices_sha256, state_dict_sha256

BUSY = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(30)"


def test_cpu_seconds_counts_live_and_finished_children() -> None:
    before = cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        deadline = time.monotonic() + 20
        while cpu_seconds() - before < 0.5 and time.monotonic() < deadline:  # the live child's time, from /proc
            time.sleep(0.1)
        assert cpu_seconds() - before >= 0.5
    finally:
        child.kill()
        child.wait()  # reaped: its time moves to getrusage(RUSAGE_CHILDREN), still counted
    assert cpu_seconds() - before >= 0.5


def test_clock_continues_the_previous_sittings() -> None:
    clock = RunClock({"train_seconds": 100.0, "cpu_seconds": 50.0, "sittings": 2, "step": 7})
    totals = clock.totals()
    assert totals["sittings"] == 3 and 100.0 <= totals["train_seconds"] < 110 and 50.0 <= totals["cpu_seconds"] < 60


def test_hashes_tell_weights_and_batches_apart() -> None:
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    torch.manual_seed(0)
    b = torch.nn.Linear(3, 2)
    assert state_dict_sha256(a) == state_dict_sha256(b)
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert state_dict_sha256(a) != state_dict_sha256(b)
    assert indices_sha256([[1, 2], [3]]) != indices_sha256([[1], [2, 3]])  # batch boundaries count
