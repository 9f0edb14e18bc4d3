"""The launcher's choices reach the run (issue 24, item 6): ``accelerate launch --mixed_precision`` and
``--num_processes`` through the real launcher, on CPUs, with a one-step training run on tiny data.

``accelerate launch`` passes its ``--mixed_precision`` as ``ACCELERATE_MIXED_PRECISION`` (``no`` when none was
given), and for ``--num_processes N`` without a multi-process backend it starts one process with ``MASTER_ADDR`` set.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from timm_selfcon.errors import UserInputError

from .test_train import REPO_ROOT, tiny_settings

CPU_ONLY = not torch.cuda.is_available()


def accelerate_launch(flags: list[str], recipe: Path, *overrides: str, home: Path) -> subprocess.CompletedProcess:
    """``accelerate launch FLAGS -m timm_selfcon.cli train RECIPE OVERRIDES`` in a fresh process (no user config)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    for inherited in ("ACCELERATE_MIXED_PRECISION", "MASTER_ADDR", "WORLD_SIZE", "ACCELERATE_USE_CPU"):
        env.pop(inherited, None)
    command = [sys.executable, "-m", "accelerate.commands.launch", *flags, "-m", "timm_selfcon.cli", "train",
               str(recipe), *overrides]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)


def write_recipe(tiny_data: Path, tmp_path: Path) -> Path:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_settings(tiny_data, tmp_path / "run", "supcon_s", precision="auto",
                                                   log_with="none")))
    return recipe


@pytest.mark.skipif(not CPU_ONLY, reason="the CPU launcher's behaviour (one process, bf16 autocast on the CPU)")
def test_accelerate_launch_bf16_and_two_processes_on_cpus(tiny_data: Path, tmp_path: Path) -> None:
    completed = accelerate_launch(["--num_processes", "2", "--mixed_precision", "bf16"], write_recipe(tiny_data, tmp_path),
                                  home=tmp_path / "home")
    assert completed.returncode == 0, completed.stderr[-4000:]
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    # precision: auto defers to the launcher's explicit choice, and run_info.json says what was used and why
    assert (info["mixed_precision"], info["precision_used"], info["precision_from"]) == ("bf16", "bf16", "launcher")
    # without --cpu, the launcher still starts one process on a machine without GPUs: said, not silent
    assert info["num_processes"] == 1
    assert "accelerate launch asked for several processes (MASTER_ADDR is set) but this run is 1 process" in \
        completed.stderr


@pytest.mark.skipif(not CPU_ONLY, reason="fp16 is possible on a GPU")
def test_accelerate_launch_fp16_on_a_cpu_is_refused_before_any_work(tiny_data: Path, tmp_path: Path) -> None:
    completed = accelerate_launch(["--mixed_precision", "fp16"], write_recipe(tiny_data, tmp_path),
                                  home=tmp_path / "home")
    assert completed.returncode != 0  # the launcher's own code (1) for a process that exited with 2
    errors = [line for line in completed.stderr.splitlines() if line.startswith("timm-selfcon train: error:")]
    assert len(errors) == 1 and "--mixed_precision fp16 needs a GPU" in errors[0], completed.stderr[-4000:]
    assert "Traceback" not in completed.stderr.split("timm-selfcon train: error:")[0]  # no traceback of ours before it
    assert not (tmp_path / "run").exists()


def test_precision_resolution_follows_the_launcher_and_refuses_contradictions() -> None:
    from timm_selfcon.engine.accelerator import precision_source, resolve_precision

    bf16 = {"ACCELERATE_MIXED_PRECISION": "bf16"}
    assert resolve_precision("auto", bf16) == "bf16" and precision_source("auto", bf16) == "launcher"
    assert resolve_precision("bf16", bf16) == "bf16" and precision_source("bf16", bf16) == "recipe"
    assert resolve_precision("fp32", {"ACCELERATE_MIXED_PRECISION": "no"}) == "fp32"  # "no" is the launcher's default
    assert precision_source("auto", {}) == "auto (this machine)"
    with pytest.raises(UserInputError, match=r"--mixed_precision bf16 contradicts .* precision: fp32; .* precision=auto"):
        resolve_precision("fp32", bf16)
    with pytest.raises(UserInputError, match=r"--mixed_precision fp8: .* fp32, bf16 or fp16"):
        resolve_precision("auto", {"ACCELERATE_MIXED_PRECISION": "fp8"})
    if CPU_ONLY:
        with pytest.raises(UserInputError, match="precision='fp16' needs a GPU"):
            resolve_precision("fp16", {})
