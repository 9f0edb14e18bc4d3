"""What a training run writes about itself, beside its checkpoints: ``run_info.json`` (what a reader needs to trust
the run: versions, commit, processes, threads, load, precision, and the pairing hashes), ``metrics.jsonl`` (read back
on resume, completed records only) and the lines the run ends with (where it is, how long it took)."""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import timm
import torch
from accelerate import Accelerator

from ..config import TrainConfig
from ..data import ResumableDistributedSampler, resolve_num_workers
from ..fileio import write_text_atomic
from .accelerator import precision_source, resolve_precision
from .clock import format_duration, indices_sha256, machine_load, state_dict_sha256

__all__ = ["drop_metrics_after", "ending_lines", "logged_loss", "metric_records", "pairing_hashes", "run_info"]


def run_info(config: TrainConfig, accelerator: Accelerator, pairing: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a reader of the run needs to trust it: versions, commit, processes, threads, machine load, precision
    actually used, and ``pairing`` (hashes of the initial weights and first batches, see :func:`pairing_hashes`)."""
    import accelerate
    import datasets

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    from .. import __version__

    return dict(
        num_processes=accelerator.num_processes, device=str(accelerator.device),
        precision=config.precision, precision_used=resolve_precision(config.precision),
        precision_from=precision_source(config.precision), mixed_precision=accelerator.mixed_precision,
        num_workers_used=resolve_num_workers(config.num_workers),
        versions=dict(timm_selfcon=__version__, torch=torch.__version__, timm=timm.__version__,
                      accelerate=accelerate.__version__, datasets=datasets.__version__, python=platform.python_version()),
        git_commit=commit, **machine_load(), **(pairing or {}),
    )


def pairing_hashes(method: torch.nn.Module, sampler: ResumableDistributedSampler, batches: int = 3) -> dict[str, str]:
    """Hashes that show two runs are paired: same initial weights (of the encoder, and of every weight of the
    method) and the same first ``batches`` global batches of dataset indices. Call before any checkpoint is loaded:
    the freshly built method holds the run's initial weights, resumed or not."""
    steps = range(min(batches, sampler.steps_per_epoch))
    return dict(initial_encoder_sha256=state_dict_sha256(method.encoder),
                initial_method_sha256=state_dict_sha256(method),
                first_batches_sha256=indices_sha256(sampler.global_batch(step, epoch=0) for step in steps))


def ending_lines(summary: dict[str, Any], elapsed: float | None, note: str | None = None) -> list[str]:
    """The last lines a run prints: where it is, how long it took (``elapsed``: this sitting from data loading to
    the probe; the training alone, over every sitting, from ``summary``) and ``note``, if any."""
    output_dir = Path(summary["output_dir"])
    last = output_dir / "last"
    checkpoint = os.readlink(last) if last.is_symlink() else "none"
    lines = [f"run: {output_dir} (last -> {checkpoint}; summary.json, metrics.jsonl, run_info.json); in Python: "
             f"import timm, timm_selfcon; timm.create_model(\"local-dir:{last}\", pretrained=True)"]
    training, sittings = format_duration(summary["train_seconds"]), summary.get("sittings", 1)
    if elapsed is None:
        lines.append(f"training took {training}" + (f" over {sittings} sittings" if sittings > 1 else ""))
    elif sittings > 1:  # resumed: this command is one sitting, the training time counts them all
        lines.append(f"this sitting took {format_duration(elapsed)}; training took {training} over {sittings} sittings")
    else:
        lines.append(f"took {format_duration(elapsed)} (training {training})")
    return lines + ([note] if note else [])


def metric_records(metrics_path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(line, record)`` of every complete record of ``metrics.jsonl`` (none when it is missing).

    Records are appended line by line (:func:`~timm_selfcon.fileio.append_line`): a run killed while appending can
    leave its last line incomplete, which is skipped.
    """
    if not metrics_path.is_file():
        return []
    records = []
    for line in metrics_path.read_text().splitlines():
        try:
            records.append((line, json.loads(line)))
        except json.JSONDecodeError:  # the incomplete last line of a killed run (or a blank line)
            continue
    return records


def logged_loss(metrics_path: Path, step: int) -> float:
    """The loss that ``metrics.jsonl`` recorded at ``step`` (NaN when it holds no record of that step)."""
    for _, record in reversed(metric_records(metrics_path)):
        if record.get("step") == step and "loss" in record:
            return float(record["loss"])
    return math.nan


def drop_metrics_after(metrics_path: Path, step: int) -> None:
    """Keep the complete metric records of steps <= ``step`` (rewritten atomically): a killed run may have logged
    steps it will now repeat, and an incomplete last line."""
    if not metrics_path.is_file():
        return
    kept = [line for line, record in metric_records(metrics_path) if record.get("step", 0) <= step]
    if "".join(line + "\n" for line in kept) != metrics_path.read_text():
        write_text_atomic(metrics_path, "".join(line + "\n" for line in kept))
