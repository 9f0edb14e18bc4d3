"""``log_with``: Accelerate's trackers by name, the resolved config passed to ``init_trackers``, one clear notice."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

import pytest
from accelerate.tracking import GeneralTracker, register_tracker_class

from timm_selfcon.engine.train import train
from timm_selfcon.errors import UserInputError

from .test_train import tiny_config

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


class RecordingTracker(GeneralTracker):
    """A real Accelerate tracker that keeps what it is given in memory."""

    name = "timm_selfcon_test_recorder"
    requires_logging_directory = False
    runs: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, run_name: str, **kwargs: Any) -> None:
        super().__init__()
        self.run = dict(name=run_name, config=None, logs=[])
        RecordingTracker.runs.append(self.run)

    @property
    def tracker(self) -> dict[str, Any]:
        return self.run

    def store_init_configuration(self, values: dict) -> None:
        self.run["config"] = dict(values)

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        self.run["logs"].append((step, dict(values)))


register_tracker_class(RecordingTracker)


def test_log_with_passes_the_resolved_config_to_the_tracker(tiny_data: Path, tmp_path: Path) -> None:
    RecordingTracker.runs.clear()
    config = tiny_config(tiny_data, tmp_path, "supcon_s", log_with=RecordingTracker.name, max_steps=2)
    train(config)
    (run,) = RecordingTracker.runs
    assert run["name"] == "train"
    assert run["config"]["lr"] == config.lr and run["config"]["method"] == "supcon_s"
    assert run["config"]["model_kwargs"] == '{"exit_stages": [], "layers": [1, 1, 1, 1]}'  # JSON text for hparams
    assert run["config"]["clip_grad_norm"] == "null"
    assert [step for step, _ in run["logs"]] == [1, 2]


def test_unknown_tracker_is_refused_listing_them(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"log_with must be auto, none, or Accelerate tracker names \(.*wandb"):
        tiny_config(tiny_data, tmp_path, log_with="wandbb")


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed here")
def test_a_tracker_that_is_not_installed_is_an_error_before_any_folder(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"mlflow is not installed \(pip install mlflow\)"):
        train(tiny_config(tiny_data, tmp_path / "run", "supcon_s", log_with="mlflow"))
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(HAS_TENSORBOARD, reason="tensorboard is installed here")
def test_auto_without_tensorboard_says_what_it_skips_once(tiny_data: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    train(tiny_config(tiny_data, tmp_path / "auto", "supcon_s"))
    assert capsys.readouterr().out.count("note: tensorboard is not installed") == 1
    train(tiny_config(tiny_data, tmp_path / "none", "supcon_s", log_with="none"))
    assert "note: tensorboard" not in capsys.readouterr().out  # (the run's path, printed at its end, has the word)
