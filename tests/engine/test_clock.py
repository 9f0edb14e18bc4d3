"""A run's cost counts its children (the loader workers), hashes tell equal weights and batches apart, and the run's
ending says how long it took and whether the machine was busy."""
import math
import subprocess
import sys
import time

import pytest
import torch

from timm_selfcon.engine.clock import (
    RunClock,
    busy_note,
    cpu_description,
    cpu_seconds,
    format_duration,
    indices_sha256,
    state_dict_sha256,
)

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
    # sittings from before the log are unknown: only this one is logged, from the step it resumed at
    assert [(s["sitting"], s["start_step"]) for s in totals["sitting_log"]] == [(3, 7)]


def test_the_sitting_log_carries_each_sittings_cpu_and_times() -> None:
    first = RunClock({}).totals()
    second = RunClock(dict(first, step=5)).totals()
    log = second["sitting_log"]
    assert [(s["sitting"], s["start_step"]) for s in log] == [(1, 0), (2, 5)]
    assert log[0] == first["sitting_log"][0]  # the earlier sitting travels unchanged
    assert log[1]["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and log[1]["cpu_model"]
    assert sum(s["cpu_seconds"] for s in log) == pytest.approx(second["cpu_seconds"])


def test_cpu_description_names_the_model_and_the_vector_instructions() -> None:
    description = cpu_description()
    assert set(description) == {"cpu_model", "cpu_capability"} and all(description.values())


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


@pytest.mark.parametrize(("seconds", "text"), [(0.04, "0.0 s"), (42.25, "42.2 s"), (193, "3 min 13 s"),
                                               (3599.6, "1 h 00 min"), (3 * 3600 + 125, "3 h 02 min")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_quiet_machine_gets_no_note_even_when_the_run_alone_exceeds_the_cores() -> None:
    # 2 torch threads and a loader worker on 2 cores: load ~3 at the end, ~2 of it this run's own
    assert busy_note(0.2, 3.0, 2, 1.95) is None
    assert busy_note(math.nan, 9.0, 2, 1.0) is None and busy_note(0.1, 9.0, None, 1.0) is None


@pytest.mark.parametrize(("start", "end", "own"), [
    (3.1, 3.5, 1.2),  # another job was already running when the run started
    (0.1, 6.0, 1.0),  # one started beside it (issue 24: two 2-thread processes and a loader worker on 2 cores)
])
def test_a_busy_machine_is_said_in_one_line_with_its_numbers(start: float, end: float, own: float) -> None:
    note = busy_note(start, end, 2, own)
    assert note is not None and "\n" not in note and note.startswith("note: the machine was busy")
    assert f"{start:.1f} at the start and {end:.1f} at the end on 2 cores" in note and f"about {own:.1f}" in note
