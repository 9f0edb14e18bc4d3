"""``timm-selfcon --help`` / ``--version`` answer without importing torch; eval and finetune list their keys."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import timm_selfcon
from timm_selfcon.engine.evaluate import EvalConfig
from timm_selfcon.engine.finetune import FinetuneConfig

ROOT = Path(__file__).resolve().parents[1]


def run_launcher(*args: str) -> subprocess.CompletedProcess:
    """The console script's code in a fresh interpreter, reporting whether torch got imported."""
    code = ("import sys, timm_selfcon_cli\n"
            "try:\n    timm_selfcon_cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)


def test_version_without_torch() -> None:
    result = run_launcher("--version")
    assert result.stdout.splitlines() == [f"timm-selfcon {timm_selfcon.__version__}", "NO_TORCH"], result.stderr


@pytest.mark.parametrize("command, config", [("eval", EvalConfig), ("finetune", FinetuneConfig)])
def test_help_lists_every_key_without_torch(command: str, config: type) -> None:
    result = run_launcher(command, "--help")
    assert result.stdout.rstrip().endswith("NO_TORCH"), result.stderr
    listed = [line.split(":")[0].strip() for line in result.stdout.split("keys (key=value")[1].splitlines()[1:]
              if line.startswith("  ")]
    assert listed == list(config.model_fields)
    assert "  protocol: str = \"linear_fast\"" in result.stdout or command == "finetune"


def test_top_level_help_without_torch() -> None:
    result = run_launcher("--help")
    assert "quickstart" in result.stdout and result.stdout.rstrip().endswith("NO_TORCH")


def test_console_script_points_at_the_launcher() -> None:
    assert 'timm-selfcon = "timm_selfcon_cli:main"' in (ROOT / "pyproject.toml").read_text()
