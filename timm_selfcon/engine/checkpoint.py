"""Atomic checkpoints: ``ckpt-<step>.tmp`` is written, renamed to ``ckpt-<step>``, then ``last`` is switched.

``last`` is a symlink replaced with ``os.replace``, so a run killed at any moment leaves ``last``
pointing at a complete checkpoint. Accelerate's ``save_state`` writes the weights (safetensors), the
optimizer and every process's RNG states; ``trainer_state.json`` adds the step and epoch.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from ..errors import UserInputError

TRAINER_STATE = "trainer_state.json"


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``output_dir/ckpt-<step>`` atomically and point ``output_dir/last`` at it (all processes call this)."""
    final = output_dir / f"ckpt-{step}"
    tmp = output_dir / f"ckpt-{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps({**state, "step": step}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        link_tmp = output_dir / "last.tmp"
        if link_tmp.is_symlink() or link_tmp.exists():
            link_tmp.unlink()
        link_tmp.symlink_to(final.name)
        os.replace(link_tmp, output_dir / "last")
    accelerator.wait_for_everyone()
    return final


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint directory, or a training ``output_dir`` (meaning its ``last``)."""
    path = Path(path)
    if (path / "last").exists():
        path = (path / "last").resolve()
    if not (path / TRAINER_STATE).is_file():
        raise UserInputError(f"{str(path)!r} is not a complete checkpoint (no {TRAINER_STATE}); "
                         "expected a ckpt-<step> directory or a training output_dir with a 'last' link")
    return path


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / TRAINER_STATE).read_text())
