"""A training ``output_dir`` is never overwritten silently; resume is explicit; nothing is created before validation."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from timm_selfcon.cli import main
from timm_selfcon.config import TrainConfig, resolve_config
from timm_selfcon.engine.checkpoint import TRAINER_STATE
from timm_selfcon.engine.run_dir import CONFIG_HISTORY
from timm_selfcon.engine.train import train
from timm_selfcon.errors import UserInputError

from ._eval_data import tree_digest
from .test_train import read_metrics, tiny_config, tiny_settings


def test_training_into_a_previous_run_is_refused_before_any_work(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_data, run, "supcon_s"))
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(UserInputError) as raised:
        train(tiny_config(tiny_data, run, "supcon_s", max_steps=2))
    message = str(raised.value)
    assert str(run) in message and "resume=true" in message and "overwrite=true" in message
    assert "new output_dir" in message
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing touched


def test_overwrite_clears_the_previous_run(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_data, run, "supcon_s", max_steps=2, save_every_steps=1))
    (run / "notes.txt").write_text("mine")  # not a run file: kept
    train(tiny_config(tiny_data, run, "supcon_s", max_steps=1, overwrite=True))
    assert sorted(p.name for p in run.glob("ckpt-*")) == ["ckpt-1"]  # the old ckpt-2 is gone
    assert [r["step"] for r in read_metrics(run)] == [1]
    assert (run / "notes.txt").read_text() == "mine"


def test_resume_true_with_nothing_to_resume_names_the_folder(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=f"resume=true, but output_dir '{tmp_path / 'typo'}' does not exist"):
        train(tiny_config(tiny_data, tmp_path / "typo", "supcon_s", resume=True))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match=r"holds no checkpoint to resume from.*resume=auto"):
        train(tiny_config(tiny_data, tmp_path / "empty", "supcon_s", resume=True))
    assert not (tmp_path / "typo").exists() and not any((tmp_path / "empty").iterdir())


def test_resume_auto_resumes_when_a_checkpoint_exists(tiny_data: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    first = train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=1, resume="auto"))
    info = json.loads((tmp_path / "run_info.json").read_text())
    summary = train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=2, resume="auto"))
    assert summary["steps"] == 2 and capsys.readouterr().out.count("resumed from") == 1
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    # the run's cost is summed over both sittings; its pairing hashes are those of its initial weights and batches
    assert summary["sittings"] == 2 and summary["train_seconds"] > first["train_seconds"]
    assert summary["cpu_seconds"] > first["cpu_seconds"]
    # each sitting says where it started and on which CPU: CPU seconds of different CPUs are not comparable
    log = summary["sitting_log"]
    assert [(s["sitting"], s["start_step"]) for s in log] == [(1, 0), (2, 1)]
    assert all(s["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and s["cpu_model"] for s in log)
    assert sum(s["cpu_seconds"] for s in log) == pytest.approx(summary["cpu_seconds"])
    assert summary["cpu_capability"] == log[-1]["cpu_capability"]
    resumed_info = json.loads((tmp_path / "run_info.json").read_text())
    assert all(resumed_info[k] == info[k] for k in ("initial_encoder_sha256", "first_batches_sha256"))


def test_resume_with_a_changed_computation_key_is_refused_listing_it(tiny_data: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=1))
    # keys that do not change the computation may differ
    train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=2, num_workers=1, log_every_steps=2, resume=True))
    with pytest.raises(UserInputError, match=r"lr: 0.05 -> 0.1; method_kwargs.temperature: 0.1 -> 0.2\..*"
                                             r"allow_config_change=true"):
        train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=3, lr=0.1, method_kwargs={"temperature": 0.2},
                          resume=True))
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["lr"] == 0.05
    assert not (tmp_path / CONFIG_HISTORY).exists()

    train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=3, lr=0.1, resume=True, allow_config_change=True))
    history = yaml.safe_load((tmp_path / CONFIG_HISTORY).read_text())
    assert len(history) == 1 and history[0]["step"] == 2
    assert history[0]["changes"] == {"lr": {"from": 0.05, "to": 0.1}}
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["lr"] == 0.1


def test_a_saved_config_without_newer_keys_compares_with_their_defaults(tiny_data: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=1))
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    for key in ("overwrite", "allow_config_change"):  # as written before these keys existed
        saved.pop(key)
    saved["a_key_of_a_newer_version"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    assert train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=2, resume=True))["steps"] == 2


@pytest.mark.parametrize("override, message", [
    ({"model": "selfcon_resnet19_cifar"}, "unknown model"),
    ({"data": "does/not/exist.parquet"}, "does/not/exist.parquet"),
    ({"method_kwargs": {"alpah": 0.5}}, "alpah"),
    ({"optimizer": "adamw_typo"}, "adamw_typo"),
    ({"model_kwargs": {"sub_netwrk": "fc", "layers": [1, 1, 1, 1]}}, "sub_netwrk"),
])
def test_failed_validation_leaves_no_folder_behind(override: dict, message: str, tiny_data: Path,
                                                   tmp_path: Path) -> None:
    run = tmp_path / "nested" / "run"
    with pytest.raises(ValueError, match=message):
        train(resolve_config(None, {**tiny_settings(tiny_data, run, "selfcon"), **override}))
    assert not (tmp_path / "nested").exists()


def test_resume_and_overwrite_together_are_refused() -> None:
    with pytest.raises(UserInputError, match="choose one"):
        TrainConfig(resume=True, overwrite=True)
    with pytest.raises(UserInputError, match="resume: expected true, false or auto, got 'ture'"):
        TrainConfig(resume="ture")


def test_a_run_saved_with_the_method_options_at_the_top_level_resumes(tiny_data: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=1))
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    # config.yaml as 0.3 wrote it: every method option at the top level (the unused ones at config-wide defaults)
    options = saved.pop("method_kwargs")
    saved.update(temperature=options["temperature"], base_temperature=options["base_temperature"],
                 projection_dim=options["out_dim"], gather=options["gather"], queue_size=65536, moco_momentum=0.999,
                 mix_temperature=0.05, mix_weight=1.0, method_kwargs={})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=2, resume=True))  # compared converted: no change
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 2
    with pytest.raises(UserInputError, match=r"method_kwargs.temperature: 0.1 -> 0.2\."):
        train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=3, method_kwargs={"temperature": 0.2},
                          resume=True))


def test_cli_refusal_is_one_error_line(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(tiny_config(tiny_data, tmp_path, "supcon_s"))
    recipe = tmp_path.parent / f"{tmp_path.name}.yaml"
    recipe.write_text(yaml.safe_dump(tiny_settings(tiny_data, tmp_path, "supcon_s")))
    capsys.readouterr()
    try:
        assert main(["train", str(recipe)]) == 2
    finally:
        os.unlink(recipe)
    out, err = capsys.readouterr()
    assert err.startswith("timm-selfcon train: error: output_dir") and err.count("\n") == 1
    assert out == ""  # refused before anything else is said or done
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 1


def kill_during_the_first_checkpoint(run: Path) -> None:
    """What a run killed while writing its first checkpoint leaves: config.yaml, run_info.json, metrics.jsonl and a
    half-written ckpt-1.tmp; no `last`, no summary."""
    os.unlink(run / "last")
    (run / "summary.json").unlink()
    (run / "ckpt-1").rename(run / "ckpt-1.tmp")
    (run / "ckpt-1.tmp" / TRAINER_STATE).unlink()


@pytest.mark.parametrize("resume", [None, "resume=true", "resume=auto"])
def test_a_run_that_never_saved_starts_again_with_its_command(resume: str | None, tiny_data: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24, item 17: a folder with a recipe and no checkpoint is a run that never saved; rerunning the same
    command (plain, resume=true or resume=auto) starts it again and says so; only the run's own files go."""
    run = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_settings(tiny_data, run, "supcon_s", log_with="none")))
    assert main(["train", str(recipe)]) == 0
    kill_during_the_first_checkpoint(run)
    (run / "notes.txt").write_text("mine")  # not the run's: kept
    capsys.readouterr()
    assert main(["train", str(recipe), *([resume] if resume else [])]) == 0
    out = capsys.readouterr().out
    assert f"output_dir '{run}' holds a run that never saved a checkpoint" in out and "starting it again" in out
    assert os.readlink(run / "last") == "ckpt-1" and not list(run.glob("*.tmp"))
    assert [r["step"] for r in read_metrics(run)] == [1] and (run / "notes.txt").read_text() == "mine"


def test_a_run_that_never_saved_is_not_restarted_with_other_values(tiny_data: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_data, run, "supcon_s", log_with="none"))
    kill_during_the_first_checkpoint(run)
    before = tree_digest(run)
    for resume in (False, True, "auto"):
        with pytest.raises(UserInputError, match=r"never saved a checkpoint.*lr: 0.05 -> 0.1.*overwrite=true"):
            train(tiny_config(tiny_data, run, "supcon_s", log_with="none", lr=0.1, resume=resume))
    assert tree_digest(run) == before


def test_resume_auto_never_deletes_a_complete_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    """Without `last`, or without a recipe, a folder is not a run that never saved: resume=auto refuses, deleting
    nothing."""
    run = tmp_path / "run"
    train(tiny_config(tiny_data, run, "supcon_s", log_with="none"))
    os.unlink(run / "last")  # a complete ckpt-1 that no `last` names
    before = tree_digest(run)
    with pytest.raises(UserInputError, match=r"holds checkpoints \(ckpt-1\) but no 'last' link"):
        train(tiny_config(tiny_data, run, "supcon_s", log_with="none", resume="auto"))
    assert tree_digest(run) == before
    shutil.rmtree(run / "ckpt-1")
    (run / "config.yaml").unlink()  # metrics and run_info of something, without its recipe
    before = tree_digest(run)
    with pytest.raises(UserInputError, match=r"nothing is deleted"):
        train(tiny_config(tiny_data, run, "supcon_s", log_with="none", resume="auto"))
    assert tree_digest(run) == before
