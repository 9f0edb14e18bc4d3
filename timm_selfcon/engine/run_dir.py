"""What a training run does with its ``output_dir``: start, resume, refuse or clear (issue 14).

:func:`plan_run_dir` only reads, so every process can call it before any work; :func:`prepare_run_dir` then
acts on the plan on the main process. The rules, like the Hugging Face Trainer's:

- a folder holding a previous run (``config.yaml``, ``metrics.jsonl``, ``ckpt-<step>/``, ``last``, ...) is never
  written over silently: without ``resume`` it is refused, naming the folder and the ways on (``resume=true``, a
  new ``output_dir``, or ``overwrite=true`` which clears the previous run's files first);
- ``resume=true`` needs a checkpoint to resume from (an error naming the folder otherwise);
  ``resume=auto`` resumes when there is one and starts when there is none (for job schedulers that restart the
  same command);
- a folder holding a recipe (``config.yaml``) and no checkpoint is a run that never saved (killed before or
  during its first checkpoint): the same command, plain, ``resume=true`` or ``resume=auto``, starts it again from
  step 0 and says so, replacing only the run's own files; with other computation keys it is refused like a resume.
  Anything else without a checkpoint (complete ``ckpt-<step>`` folders that no ``last`` names, files without a
  recipe) is never deleted, whatever ``resume`` says: only ``overwrite=true`` clears it;
- resuming with a key that changes the computation (anything but :data:`NON_COMPUTATION_KEYS`) different from
  the run's ``config.yaml`` is refused listing the keys, unless ``allow_config_change=true``: then the change is
  appended to ``config_history.yaml`` and ``config.yaml`` holds the new values.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import shutil
from pathlib import Path
from typing import Any

import yaml

from ..config import NON_COMPUTATION_KEYS, TrainConfig, convert_legacy_method_keys, method_options_used
from ..errors import UserInputError
from ..fileio import write_text_atomic
from .checkpoint import TRAINER_STATE, checkpoint_steps

CONFIG_HISTORY = "config_history.yaml"
#: What a training run writes at the top of its ``output_dir``; ``overwrite=true`` removes exactly these.
RUN_FILES = ("config.yaml", CONFIG_HISTORY, "run_info.json", "metrics.jsonl", "summary.json", "last", "last.tmp",
             "eval", "train")
RUN_PATTERNS = ("ckpt-*",)


@dataclasses.dataclass
class RunDirPlan:
    """What :func:`prepare_run_dir` will do."""

    output_dir: Path
    resume_from: Path | None  # the checkpoint to load, or None to start at step 0
    clear: list[Path]  # previous-run entries to delete first (``overwrite=true``, or a run that never saved)
    changes: dict[str, dict[str, Any]]  # computation keys that differ from the saved config: {key: {from, to}}
    note: str | None = None  # what the user is told before the folder changes (a run that never saved, started again)


def previous_run_entries(output_dir: Path) -> list[Path]:
    """The entries of ``output_dir`` a training run wrote (empty for a new or unrelated folder)."""
    if not output_dir.is_dir():
        return []
    found = [output_dir / name for name in RUN_FILES if (output_dir / name).is_symlink() or (output_dir / name).exists()]
    for pattern in RUN_PATTERNS:
        found += sorted(output_dir.glob(pattern))
    return found


def config_differences(saved: dict[str, Any], config: TrainConfig) -> dict[str, dict[str, Any]]:
    """Computation keys whose value in ``config`` differs from the saved ``config.yaml`` ``{key: {from, to}}``; the
    method's options are compared one by one (``method_kwargs.temperature``).

    A key the saved file lacks (written before the key existed) is compared with its default; a key this version
    does not know is ignored. A config saved with the method options at the top level (0.3 and earlier, which
    recorded every option at a config-wide default, used or not) is converted first, keeping the options its method
    takes, and a method option the saved file lacks is compared with the method's own default.
    """
    from ..methods import METHODS

    saved_method = METHODS.get(saved.get("method", config.method))
    takes = saved_method.Options.model_fields if saved_method is not None else None
    saved = convert_legacy_method_keys(saved, takes)
    defaults = TrainConfig(method=config.method).to_dict()
    old = {**defaults, **{k: v for k, v in saved.items() if k in defaults}}
    if saved_method is not None and isinstance(old.get("method_kwargs"), dict):
        with contextlib.suppress(ValueError):  # an option this version no longer has: compared as saved
            old["method_kwargs"] = method_options_used(saved_method.name, old["method_kwargs"])
    new, old = _flat_options(_plain(config.to_dict())), _flat_options(_plain(old))
    keys = [*new, *(key for key in old if key.startswith("method_kwargs.") and key not in new)]
    return {key: {"from": old.get(key), "to": new.get(key)} for key in keys
            if key not in NON_COMPUTATION_KEYS and old.get(key) != new.get(key)}


def _flat_options(values: dict[str, Any]) -> dict[str, Any]:
    """``method_kwargs`` spread into one ``method_kwargs.<option>`` key per option."""
    options = values.pop("method_kwargs", None)
    if not isinstance(options, dict):
        return {**values, "method_kwargs": options}
    return {**values, **{f"method_kwargs.{key}": value for key, value in options.items()}}


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """YAML-round-tripped values (tuples -> lists), so a saved config compares equal to the one it came from."""
    return yaml.safe_load(yaml.safe_dump(values))


def plan_run_dir(config: TrainConfig) -> RunDirPlan:
    """Decide, reading only, whether this run starts, resumes, clears or is refused (UserInputError)."""
    output_dir = Path(config.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserInputError(f"output_dir {str(output_dir)!r} exists and is not a folder")
    previous = previous_run_entries(output_dir)
    last = output_dir / "last"
    has_checkpoint = (last / TRAINER_STATE).is_file()
    if config.overwrite:
        return RunDirPlan(output_dir, None, previous, {})
    if not previous:
        if config.resume is True:
            what = "does not exist" if not output_dir.exists() else "holds no checkpoint to resume from (no 'last' " \
                                                                    "link to a complete ckpt-<step>)"
            raise UserInputError(f"resume=true, but output_dir {str(output_dir)!r} {what}; check the path, or use "
                                 "resume=auto to resume when a checkpoint exists and start otherwise")
        return RunDirPlan(output_dir, None, [], {})
    names = ", ".join(p.name for p in previous[:6]) + (", ..." if len(previous) > 6 else "")
    saved_config = output_dir / "config.yaml"
    changes = config_differences(yaml.safe_load(saved_config.read_text()) or {}, config) if saved_config.is_file() else {}
    listing = "; ".join(f"{k}: {v['from']!r} -> {v['to']!r}" for k, v in changes.items())
    if has_checkpoint:
        if not config.resume:
            raise UserInputError(
                f"output_dir {str(output_dir)!r} already holds a training run ({names}); training again would "
                "overwrite it. Use resume=true (or resume=auto) to continue it, a new output_dir, or overwrite=true to "
                "delete that run's files and start over")
        if changes and not config.allow_config_change:
            raise UserInputError(
                f"resuming {str(output_dir)!r} with keys that change the computation, unlike its config.yaml: "
                f"{listing}. Resume with the run's own values, start a new output_dir, or pass "
                f"allow_config_change=true to continue with the new values (recorded in {CONFIG_HISTORY})")
        return RunDirPlan(output_dir, last.resolve(), [], changes)
    if never_saved(output_dir):
        if changes and not config.allow_config_change:
            raise UserInputError(
                f"output_dir {str(output_dir)!r} holds a run that never saved a checkpoint ({names}), with other "
                f"values: {listing}. Rerun its own command to start it again, use a new output_dir, or overwrite=true "
                "to delete its files and start over")
        note = (f"output_dir {str(output_dir)!r} holds a run that never saved a checkpoint ({names}): starting it "
                "again from step 0 (its files are replaced)")
        return RunDirPlan(output_dir, None, [p for p in previous if p.name != CONFIG_HISTORY], changes, note)
    complete = [path.name for _, path in checkpoint_steps(output_dir)]
    if complete and config.resume:
        raise UserInputError(
            f"output_dir {str(output_dir)!r} holds checkpoints ({', '.join(complete[-3:])}) but no 'last' link to one; "
            f"point 'last' at the one to resume from (ln -sfn {complete[-1]} {str(last)!r}), or use overwrite=true to "
            "delete them and start over")
    if config.resume:
        raise UserInputError(
            f"output_dir {str(output_dir)!r} holds files of an earlier run ({names}) but no checkpoint to resume and "
            "no recipe (config.yaml) of a run that never saved, so nothing is deleted: use a new output_dir, or "
            "overwrite=true to delete these files and start over")
    raise UserInputError(
        f"output_dir {str(output_dir)!r} already holds a training run ({names}); training again would overwrite it. "
        "Use resume=true (or resume=auto) to continue it, a new output_dir, or overwrite=true to delete that run's "
        "files and start over")


def never_saved(output_dir: Path) -> bool:
    """Whether ``output_dir`` holds a run that died before its first checkpoint: its recipe (``config.yaml``), no
    complete checkpoint (``last`` or any ``ckpt-<step>``) and no evaluation (which only a checkpoint can have)."""
    return ((output_dir / "config.yaml").is_file() and not (output_dir / "last" / TRAINER_STATE).is_file()
            and not checkpoint_steps(output_dir) and not (output_dir / "eval").exists())


def prepare_run_dir(plan: RunDirPlan, step: int) -> None:
    """Main process: clear what the plan clears, create the folder, record config changes made at ``step``."""
    for path in plan.clear:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    if plan.changes:
        history_path = plan.output_dir / CONFIG_HISTORY
        history = (yaml.safe_load(history_path.read_text()) or []) if history_path.is_file() else []
        history.append(dict(step=step, time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                            changes=plan.changes))
        write_text_atomic(history_path, yaml.safe_dump(history, sort_keys=False))
