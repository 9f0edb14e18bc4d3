"""The run's Accelerator: precision (``auto`` resolved for this machine), trackers, and the launcher check.

Shared by training and fine-tuning; Accelerate keeps one process-wide state, which :func:`accelerator_for` resets when
a later run in the same process asks for another precision.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from ..config import TrainConfig, tracker_names
from ..errors import UserInputError

__all__ = ["accelerator_for", "auto_precision", "launcher_mismatch", "launcher_precision", "make_accelerator",
           "precision_source", "resolve_precision", "resolve_trackers", "tracker_config"]


def auto_precision(cuda: bool, cuda_bf16: bool, cpu_capability: str) -> str:
    """``precision: auto``: bf16 autocast where it is fast (GPUs with bf16, CPUs with AMX), else fp16 on older
    GPUs and fp32 on CPUs without AMX (there bf16 autocast was 1.3-2x slower than fp32: benchmarks/results)."""
    if cuda:
        return "bf16" if cuda_bf16 else "fp16"
    return "bf16" if "AMX" in cpu_capability.upper() else "fp32"


#: What ``accelerate launch --mixed_precision X`` passes to the process it starts (``no`` also when none was given).
LAUNCHER_PRECISION = "ACCELERATE_MIXED_PRECISION"


def launcher_precision(environ: Mapping[str, str] | None = None) -> str | None:
    """The precision the launcher was explicitly asked for (``bf16`` or ``fp16``), or None.

    ``no`` is not a choice: ``accelerate launch`` passes it whenever ``--mixed_precision`` was not given. A precision
    this package does not train in (``fp8``) is refused.
    """
    value = (os.environ if environ is None else environ).get(LAUNCHER_PRECISION, "").strip().lower()
    if value in ("", "no"):
        return None
    if value not in ("bf16", "fp16"):
        raise UserInputError(f"accelerate launch --mixed_precision {value}: timm-selfcon trains in fp32, bf16 or fp16; "
                             "launch with --mixed_precision bf16, fp16 or no")
    return value


def resolve_precision(precision: str, environ: Mapping[str, str] | None = None) -> str:
    """The precision a run uses: ``precision`` itself, or for ``auto`` the launcher's explicit ``--mixed_precision``,
    else this machine's choice (:func:`auto_precision`).

    Refused (:class:`UserInputError`, before any work): a launcher's choice that contradicts the recipe's own
    precision, and a precision this machine cannot run (fp16 without a GPU, bf16 on a GPU without it).
    """
    launcher = launcher_precision(environ)
    if precision == "auto":
        chosen = launcher or auto_precision(torch.cuda.is_available(), _cuda_bf16(),
                                            torch.backends.cpu.get_cpu_capability())
    else:
        if launcher is not None and launcher != precision:
            # an explicit precision (the recipe's, or a config's default) is never overridden silently
            raise UserInputError(f"accelerate launch --mixed_precision {launcher} contradicts the configured precision: "
                                 f"{precision}; launch without --mixed_precision, or set precision={launcher}, or "
                                 "precision=auto (which takes the launcher's choice)")
        chosen = precision
    asked = f"accelerate launch --mixed_precision {chosen}" if launcher is not None else f"precision={chosen!r}"
    if chosen == "fp16" and not torch.cuda.is_available():
        raise UserInputError(f"{asked} needs a GPU; on a CPU use precision='bf16' (autocast with AMX where present) "
                             "or 'fp32'")
    if chosen == "bf16" and torch.cuda.is_available() and not _cuda_bf16():
        raise UserInputError(f"{asked}: this GPU does not support bf16; use fp16 or fp32")
    return chosen


def precision_source(precision: str, environ: Mapping[str, str] | None = None) -> str:
    """Where the run's precision came from: ``recipe``, ``launcher`` (``auto`` took its choice) or
    ``auto (this machine)``."""
    if precision != "auto":
        return "recipe"
    return "launcher" if launcher_precision(environ) is not None else "auto (this machine)"


def _cuda_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def make_accelerator(config: TrainConfig) -> Accelerator:
    """The training run's Accelerator: the config's precision, trackers and gradient accumulation."""
    log_with, notice = resolve_trackers(config.log_with)
    # cpu=True on a machine without an accelerator: otherwise Accelerate ignores torchrun's WORLD_SIZE on CPUs
    # and every process trains alone (and they overwrite each other's checkpoints)
    accelerator = accelerator_for(resolve_precision(config.precision), log_with=log_with or None,
                                  project_dir=config.output_dir,
                                  gradient_accumulation_steps=config.gradient_accumulation_steps,
                                  cpu=not _has_accelerator_device())
    if notice:
        accelerator.print(notice)
    return accelerator


def accelerator_for(precision: str, **kwargs: Any) -> Accelerator:
    """An Accelerator for ``precision`` (``fp32``, ``bf16``, ``fp16``), even after another precision was used in this
    process; ``kwargs`` go to ``Accelerator``. fp16 needs a GPU (CPUs autocast in bf16)."""
    if precision == "fp16" and not torch.cuda.is_available():
        raise UserInputError("precision='fp16' needs a GPU; on a CPU use precision='bf16' (autocast with AMX where present)")
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed) != mixed:
        # Accelerate keeps one process-wide state and refuses a second precision; a later run in the same process
        # (Python API, notebooks, a fine-tuning after a training) with another precision resets it (the process
        # group is kept)
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed, **kwargs)


def resolve_trackers(log_with: str | list[str] | None) -> tuple[list[str], str | None]:
    """The Accelerate trackers of ``log_with`` and a notice to print, or a UserInputError for a missing package.

    ``auto`` is TensorBoard when it is installed; without it the run says once what it skips and how to get it.
    """
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
    from accelerate.utils import LoggerType

    names = tracker_names(log_with)
    if names is None:
        if _has_tensorboard():
            return ["tensorboard"], None
        return [], ("note: tensorboard is not installed, so this run writes no TensorBoard logs (metrics.jsonl has "
                    "every metric); pip install tensorboard to get them, or log_with=none to silence this note")
    # registered custom trackers are always available; Accelerate silently drops a built-in one it cannot import
    builtin = {t.value for t in LoggerType}
    available = {str(t) for t in get_available_trackers()} | (set(LOGGER_TYPE_TO_CLASS) - builtin)
    missing = [n for n in names if n != "all" and n not in available]
    if missing:
        raise UserInputError(f"log_with={log_with!r}: {', '.join(missing)} is not installed (pip install "
                             f"{' '.join(missing)}), or choose log_with=none")
    return names, None


def tracker_config(config: TrainConfig) -> dict[str, Any]:
    """The resolved config for ``init_trackers``: scalars kept, lists / mappings / None as JSON text (what
    TensorBoard's hparams and the other trackers take)."""
    return {key: value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
            for key, value in config.to_dict().items()}


def _has_accelerator_device() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, XPU, MPS, HPU, ...
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def launcher_mismatch(num_processes: int, environ: Mapping[str, str]) -> str | None:
    """A warning when a launcher asked for several processes but this run is one of one.

    ``accelerate launch --cpu --num_processes N`` starts a single process on CPUs (its simple launcher: only
    ``MASTER_ADDR`` / ``MASTER_PORT`` say more were wanted); a ``WORLD_SIZE`` > 1 that Accelerate did not join
    would also train alone.
    """
    if num_processes != 1:
        return None
    fix = ("; on CPUs start the processes with torchrun: torchrun --nproc_per_node N -m timm_selfcon.cli train "
           "RECIPE (README, Training)")
    world = environ.get("WORLD_SIZE", "")
    if world.isdigit() and int(world) > 1:
        return f"the launcher set WORLD_SIZE={world} but this run sees 1 process{fix}"
    if environ.get("MASTER_ADDR") and not world:
        # with --cpu, or without it on a machine whose launch needs --multi_gpu: Accelerate's simple launcher
        why = ("its --cpu launcher starts only one" if environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1")
               else "without --multi_gpu (or GPUs) its launcher starts only one")
        return f"accelerate launch asked for several processes (MASTER_ADDR is set) but this run is 1 process: {why}{fix}"
    return None
