"""Atomic checkpoints: ``ckpt-<step>.tmp`` is written, renamed to ``ckpt-<step>``, then ``last`` is switched.

``last`` is a symlink replaced with ``os.replace``, so a run killed at any moment leaves ``last``
pointing at a complete checkpoint. A checkpoint holds:

- ``model.safetensors`` and ``config.json``: the encoder alone under timm's own key names, written by timm's
  ``save_for_hf``, so ``timm.create_model("local-dir:RUN/last", pretrained=True)`` and
  ``timm.create_model(name, checkpoint_path="RUN/ckpt-<step>/model.safetensors", **model_kwargs)`` load it;
- ``accelerate/``: Accelerate's ``save_state`` (the whole training method's weights, optimizer, every process's
  RNG states), which resume and evaluation read;
- ``trainer_state.json``: the step and epoch.

Checkpoints written before this layout hold Accelerate's files at the top (``model.safetensors`` = the method's
state dict); :func:`accelerate_state_dir` finds either, so they still resume, evaluate and export.
``save_total_limit`` keeps only the newest checkpoints, never deleting the one ``last`` points to.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from ..errors import UserInputError

TRAINER_STATE = "trainer_state.json"
#: The sub-folder of a checkpoint holding Accelerate's ``save_state``.
STATE_DIR = "accelerate"


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, state: dict[str, Any],
                    timm_encoder: TimmEncoder | None = None, total_limit: int | None = None) -> Path:
    """Write ``output_dir/ckpt-<step>`` atomically and point ``output_dir/last`` at it (all processes call this).

    ``timm_encoder`` adds the encoder's timm files; ``total_limit`` then deletes the oldest checkpoints.
    """
    final = output_dir / f"ckpt-{step}"
    tmp = output_dir / f"ckpt-{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / STATE_DIR))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if timm_encoder is not None:
            timm_encoder.write(tmp)
        (tmp / TRAINER_STATE).write_text(json.dumps({**state, "step": step}, indent=2))
        match_umask(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        link_tmp = output_dir / "last.tmp"
        if link_tmp.is_symlink() or link_tmp.exists():
            link_tmp.unlink()
        link_tmp.symlink_to(final.name)
        os.replace(link_tmp, output_dir / "last")
        if total_limit is not None:
            prune_checkpoints(output_dir, total_limit)
    accelerator.wait_for_everyone()
    return final


class TimmEncoder:
    """Writes a module's timm files (``model.safetensors`` + ``config.json``) into a checkpoint folder."""

    def __init__(self, encoder: torch.nn.Module, model_args: dict[str, Any], data_config: dict[str, Any]) -> None:
        self.encoder, self.model_args, self.data_config = encoder, model_args, data_config

    def write(self, folder: Path) -> None:
        from timm.models import save_for_hf

        encoder = self.encoder
        if any(not t.is_contiguous() for t in encoder.state_dict().values()):  # channels_last: safetensors refuses
            import copy

            encoder = copy.deepcopy(encoder).to(memory_format=torch.contiguous_format)
        save_for_hf(encoder, str(folder), model_args=self.model_args, safe_serialization=True,
                    data_config=self.data_config)


def checkpoint_steps(output_dir: Path) -> list[tuple[int, Path]]:
    """The complete ``ckpt-<step>`` folders of a run, oldest first."""
    found = []
    for path in output_dir.glob("ckpt-*"):
        suffix = path.name.removeprefix("ckpt-")
        if suffix.isdigit() and (path / TRAINER_STATE).is_file():
            found.append((int(suffix), path))
    return sorted(found)


def prune_checkpoints(output_dir: Path, total_limit: int) -> list[Path]:
    """Delete the oldest checkpoints beyond ``total_limit``, never the one ``last`` points to; returns them."""
    last = (output_dir / "last").resolve() if (output_dir / "last").exists() else None
    checkpoints = [path for _, path in checkpoint_steps(output_dir) if path.resolve() != last]
    keep = max(total_limit - (last is not None), 0)
    doomed = checkpoints[:len(checkpoints) - keep] if keep else checkpoints
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def accelerate_state_dir(checkpoint: Path) -> Path:
    """Accelerate's ``save_state`` folder of a checkpoint: ``<ckpt>/accelerate``, or the checkpoint itself for
    checkpoints written before that layout."""
    sub = Path(checkpoint) / STATE_DIR
    return sub if sub.is_dir() else Path(checkpoint)


def match_umask(root: Path) -> None:
    """Give every file under ``root`` the permissions of a newly created ordinary file (safetensors writes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *(root.rglob("*") if root.is_dir() else ())]:
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~umask)


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
