"""What a training run cost: wall and CPU time summed over all its sittings, and the machine it ran on.

A run killed and resumed is several *sittings*; the totals travel inside every checkpoint's
``trainer_state.json`` so the run's cost survives any number of them. CPU time counts the training process
(all its threads) and its data-loader workers (live ones read from ``/proc``, finished ones from
``getrusage(RUSAGE_CHILDREN)``): on a shared machine it is a steadier measure of a method's cost than wall time.
It is not steady across machines: the same step costs about twice the CPU seconds on a CPU without AVX-512 as on one
with it, so every sitting also records the CPU it ran on (``sitting_log``), and CPU times of runs on different CPUs
are not compared.
"""
from __future__ import annotations

import hashlib
import math
import os
import resource
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["RunClock", "busy_note", "cpu_description", "cpu_seconds", "format_duration", "indices_sha256",
           "load_average_1m", "machine_load", "state_dict_sha256"]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _live_children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's live children (Linux ``/proc``; 0 elsewhere)."""
    total = 0.0
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the child ended between the listing and the read: counted as reaped below
            total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14, 15 of stat)
    return total


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (every thread) and its children, live and finished."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime + _live_children_cpu_seconds()


def cpu_description() -> dict[str, str]:
    """The CPU this process runs on: ``cpu_model`` (``/proc/cpuinfo``'s model name, family and model; ``platform``
    elsewhere) and ``cpu_capability`` (the widest vector instructions torch uses: ``AVX512``, ``AVX2``, ...)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break  # the first processor's block is enough
    except OSError:
        pass
    if "model name" in fields:
        model = f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    else:
        import platform

        model = platform.processor() or platform.machine()
    return dict(cpu_model=model, cpu_capability=torch.backends.cpu.get_cpu_capability())


def machine_load() -> dict[str, Any]:
    """The CPU, the threads this process computes with and how busy the machine is (a run's speed depends on all
    three)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return dict(**cpu_description(), torch_threads=torch.get_num_threads(),
                torch_interop_threads=torch.get_num_interop_threads(),
                omp_num_threads=os.environ.get("OMP_NUM_THREADS"), cpu_count=os.cpu_count(),
                load_average=[round(value, 2) for value in load])


def load_average_1m() -> float:
    """The machine's 1-minute load average (NaN where the system has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def busy_note(load_at_start: float, load_at_end: float, cpu_count: int | None, own_cores: float) -> str | None:
    """One line saying why a run may have been slow, when other processes kept the machine busy; None otherwise.

    Busy: the 1-minute load average exceeded the cores when the run started (before it computed anything), or at
    its end once the run's own share is taken off (``own_cores``: the CPU seconds per wall second it used, loader
    workers included). The run's own threads alone can push the load above the cores (e.g. 2 torch threads and a
    loader worker on 2 cores), which is not what a busy machine means.
    """
    if not cpu_count or math.isnan(load_at_start) or math.isnan(load_at_end):
        return None
    if load_at_start <= cpu_count and load_at_end - own_cores <= cpu_count:
        return None
    return (f"note: the machine was busy: 1-minute load average {load_at_start:.1f} at the start and "
            f"{load_at_end:.1f} at the end on {cpu_count} cores, of which this run used about {own_cores:.1f}; other "
            "processes competed for the CPUs, so it may have taken longer than on a quiet machine")


def format_duration(seconds: float) -> str:
    """``42.3 s``, ``3 min 13 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class RunClock:
    """Wall and CPU seconds of the training loop, continued from the totals of the checkpoint resumed from
    (``previous``: its ``trainer_state.json``, whose ``step`` is where this sitting starts)."""

    def __init__(self, previous: Mapping[str, Any] | None = None) -> None:
        previous = previous or {}
        self.previous_train_seconds = float(previous.get("train_seconds", 0.0))
        self.previous_cpu_seconds = float(previous.get("cpu_seconds", 0.0))
        self.sittings = int(previous.get("sittings", 0)) + 1
        # checkpoints written before sittings were logged have none: their sittings' CPU is unknown
        self.previous_log = list(previous.get("sitting_log", []))
        self.sitting = dict(sitting=self.sittings, start_step=int(previous.get("step", 0)), **cpu_description(),
                            torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count())
        self.start_wall = time.perf_counter()
        self.start_cpu = cpu_seconds()

    def sitting_cores(self) -> float:
        """CPU seconds per wall second of this sitting so far (loader workers included): the cores it kept busy."""
        wall = time.perf_counter() - self.start_wall
        return (cpu_seconds() - self.start_cpu) / wall if wall > 0 else 0.0

    def train_seconds(self) -> float:
        """Wall seconds of training over every sitting so far (``totals()["train_seconds"]``, without reading the
        CPU clocks)."""
        return self.previous_train_seconds + time.perf_counter() - self.start_wall

    def totals(self) -> dict[str, Any]:
        """``train_seconds`` and ``cpu_seconds`` over every sitting so far, the number of ``sittings`` and the
        ``sitting_log``: per sitting, the step it started from, the CPU it ran on and its own wall and CPU seconds."""
        wall, cpu = time.perf_counter() - self.start_wall, cpu_seconds() - self.start_cpu
        this = dict(self.sitting, train_seconds=wall, cpu_seconds=cpu)
        return dict(train_seconds=self.previous_train_seconds + wall, cpu_seconds=self.previous_cpu_seconds + cpu,
                    sittings=self.sittings, sitting_log=[*self.previous_log, this])


def state_dict_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and values, in order): equal hashes, equal weights."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def indices_sha256(batches: Iterable[Iterable[int]]) -> str:
    """SHA-256 of batches of dataset indices (order and batch boundaries included)."""
    digest = hashlib.sha256()
    for batch in batches:
        digest.update((",".join(str(int(index)) for index in batch) + ";").encode())
    return digest.hexdigest()
