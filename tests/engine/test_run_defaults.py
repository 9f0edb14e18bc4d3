"""Evaluating and fine-tuning a training run read the run's own data; ``data=`` overrides it; reports say which."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from timm_selfcon.engine.evaluate import EvalConfig, evaluate, model_folder_name
from timm_selfcon.engine.finetune import FinetuneConfig, finetune

from ._eval_data import write_position_dataset


def quick_eval(**overrides: object) -> EvalConfig:
    return EvalConfig(**{**dict(protocol="linear_fast", epochs=2, num_workers=0, batch_size=64, val_fraction=0.0),
                         **overrides})


def test_eval_of_a_run_defaults_to_the_data_it_trained_on(trained_run: Path, position_data: Path,
                                                          tmp_path: Path) -> None:
    report = evaluate(trained_run, quick_eval(output_dir=str(tmp_path)))
    dataset = report["dataset"]
    assert dataset["data"] == str(position_data) and dataset["data_from"] == "run config"
    assert (dataset["train_split"], dataset["eval_split"]) == ("train", "test")
    assert report["columns"] == ["img", "label"]


def test_eval_data_override_is_recorded(trained_run: Path, tmp_path: Path) -> None:
    other = write_position_dataset(tmp_path / "other", seed=3, train_rows=16, test_rows=8)
    report = evaluate(trained_run, quick_eval(data=str(other), output_dir=str(tmp_path / "out")))
    assert report["dataset"]["data"] == str(other) and report["dataset"]["data_from"] == "data="


def test_eval_uses_the_runs_splits_and_class_list(trained_run: Path, tmp_path: Path) -> None:
    # the same run, as if it had trained on split 'test' and listed its classes in another order
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, symlinks=True, ignore=shutil.ignore_patterns("eval"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.update(train_split="test", eval_split="train", class_list=["bottom", "top"])
    for recipe in (run / "config.yaml", run / "last" / "config.yaml"):  # the run's, and the one its checkpoint carries
        recipe.write_text(yaml.safe_dump(config))
    report = evaluate(run, quick_eval())
    assert (report["dataset"]["train_split"], report["dataset"]["eval_split"]) == ("test", "train")
    assert report["dataset"]["class_names"] == ["bottom", "top"]


def test_finetune_of_a_run_defaults_to_its_data(trained_run: Path, position_data: Path, tmp_path: Path) -> None:
    report = finetune(trained_run, FinetuneConfig(epochs=1, max_steps=1, batch_size=16, num_workers=0,
                                                  warmup_epochs=0, output_dir=str(tmp_path / "ft")))
    assert report["data"] == str(position_data) and report["data_from"] == "run config"
    assert (report["train_split"], report["split"]) == ("train", "test")


def test_eval_of_model_names_writes_each_to_its_own_folder_and_says_where(
        position_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for model in ("selfcon_resnet18_cifar", "mixco_resnet18_cifar"):
        evaluate(model, quick_eval(data=str(position_data), protocol="knn", image_size=16,
                                   model_kwargs={"layers": [1, 1, 1, 1]}))
    reports = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("report.json"))
    assert reports == ["eval_runs/mixco_resnet18_cifar/eval/knn/report.json",
                       "eval_runs/selfcon_resnet18_cifar/eval/knn/report.json"]
    err = capsys.readouterr().err
    assert "wrote eval_runs/selfcon_resnet18_cifar/eval/knn/report.json" in err
    assert "wrote eval_runs/mixco_resnet18_cifar/eval/knn/plot.png" in err


def test_model_folder_names_of_hub_and_local_ids(tmp_path: Path) -> None:
    assert model_folder_name("hf-hub:org/name.tag") == "hf-hub--org--name.tag"
    first, second = tmp_path / "a" / "export", tmp_path / "b" / "export"
    assert model_folder_name(f"local-dir:{first}") != model_folder_name(f"local-dir:{second}")


def test_eval_runs_folder_is_git_ignored() -> None:
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text().split()
    assert "/eval_runs/" in ignored


def test_reported_accuracies_are_what_was_measured(trained_run: Path, tmp_path: Path) -> None:
    """10 test images: every accuracy is a multiple of 10% exactly, not a float32 mean times 100."""
    data = write_position_dataset(tmp_path / "ten", seed=5, train_rows=16, test_rows=10)
    for protocol in ("linear_fast", "knn"):
        report = evaluate(trained_run, quick_eval(data=str(data), protocol=protocol, output_dir=str(tmp_path / "o")))
        text = (tmp_path / "o" / "eval" / protocol / "report.json").read_text()
        numbers = [float(n) for n in re.findall(r'"(?:top1|top5|k\d+)": ([0-9.]+)', text)]
        assert numbers and all(round(n / 10) * 10 == n for n in numbers), numbers
        assert report["protocol"] == protocol
