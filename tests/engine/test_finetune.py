"""Fine-tuning (``timm-selfcon finetune``): the encoder without exits, timm's optimizer / scheduler, the export.

Uses the trained ``ce`` run and the position dataset of ``_eval_data.py`` (trained once per session).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from safetensors.torch import load_file

from timm_selfcon import cli
from timm_selfcon.engine.evaluate import EvalConfig, evaluate
from timm_selfcon.engine.finetune import FinetuneConfig, finetune

from ._eval_data import (
    MODEL,
    MODEL_KWARGS,
    NUM_CLASSES,
    tree_digest,
    write_position_dataset,
)


def settings(data: Path, output_dir: Path, **overrides: Any) -> dict[str, Any]:
    """16 px, batch 16 (12 steps per epoch), no augmentation (the class is a position), AdamW, no warm-up."""
    values: dict[str, Any] = dict(data=str(data), epochs=1, batch_size=16, optimizer="adamw", lr=1e-3,
                                  weight_decay=0.0, warmup_epochs=0, augmentation="eval", image_size=16,
                                  num_workers=0, output_dir=str(output_dir), seed=0)
    values.update(overrides)
    return values


def test_finetune_exports_the_encoder_without_exits(trained_run: Path, position_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "finetuned"
    report = finetune(trained_run, FinetuneConfig(**settings(position_data, out)))
    assert report["model"] == MODEL and report["num_classes"] == NUM_CLASSES and report["split"] == "test"
    assert [epoch["epoch"] for epoch in report["history"]] == [1]
    assert report["result"]["last"]["top1"] >= 75.0  # a new classifier on features already trained for the task
    assert json.loads((out / "report.json").read_text()) == report

    weights = load_file(str(out / "model.safetensors"))
    assert not any(k.startswith(("exits.", "exit_heads.")) for k in weights)
    assert weights["fc.weight"].shape == (NUM_CLASSES, 512)
    config = json.loads((out / "config.json").read_text())
    assert config["model_args"]["exit_stages"] == [] and config["model_args"]["num_classes"] == NUM_CLASSES
    assert config["pretrained_cfg"]["classifier"] == "fc"  # the exits' heads are gone from the export too
    assert config["pretrained_cfg"]["label_names"] == ["top", "bottom"]
    assert config["pretrained_cfg"]["tag"] == f"finetune_{position_data.name}"  # not the registered 'untrained'

    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert model.exit_stages == () and model.num_classes == NUM_CLASSES
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    other_head = timm.create_model(f"local-dir:{out}", pretrained=True, num_classes=5)
    assert other_head.fc.out_features == 5
    assert torch.equal(other_head.conv1.weight, weights["conv1.weight"])

    # the export is a timm model id that evaluation takes like any other
    knn = evaluate(f"local-dir:{out}", EvalConfig(data=str(position_data), protocol="knn", image_size=16,
                                                  num_workers=0, output_dir=str(tmp_path / "eval")))
    assert knn["model"] == f"local-dir:{out}" and knn["checkpoint"] is None
    assert knn["results"]["backbone"]["k20"] >= 75.0


def _change(after: dict[str, torch.Tensor], before: dict[str, torch.Tensor], name: str) -> float:
    return float((after[name] - before[f"model.{name}"]).abs().max())


def test_finetune_starts_from_the_checkpoint_and_layer_decay_scales_the_lr(trained_run: Path, position_data: Path,
                                                                           tmp_path: Path) -> None:
    checkpoint = load_file(str(trained_run / "last" / "accelerate" / "model.safetensors"))
    changes = {}
    for layer_decay in (None, 0.1):
        out = tmp_path / f"decay_{layer_decay}"
        finetune(trained_run, FinetuneConfig(**settings(position_data, out, lr=1e-2, max_steps=2,
                                                        layer_decay=layer_decay)))
        after = load_file(str(out / "model.safetensors"))
        changes[layer_decay] = {name: _change(after, checkpoint, name)
                                for name in ("conv1.weight", "layer4.0.conv2.weight")}
    plain, decayed = changes[None], changes[0.1]
    # AdamW moves every weight by about lr per step; the stem is 5 groups below the head: lr x 0.1**5
    assert 0.005 < plain["conv1.weight"] < 0.05 and 0.005 < plain["layer4.0.conv2.weight"] < 0.05, changes
    assert decayed["conv1.weight"] < 1e-5, changes
    assert decayed["conv1.weight"] < decayed["layer4.0.conv2.weight"] < plain["layer4.0.conv2.weight"], changes
    # hence the fine-tuned stem still is the checkpoint's (a random initialisation differs by ~0.1): it was loaded


def test_finetune_needs_a_label_column_and_names_the_columns(position_data: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["finetune", MODEL, f"data={position_data}", "label_column=fine_label",
                     f"model_kwargs={json.dumps(MODEL_KWARGS)}", f"output_dir={tmp_path / 'out'}"])
    assert code == 2
    assert "label column 'fine_label' is not in the dataset; its columns are ['img', 'label']" in capsys.readouterr().err
    unlabelled = write_position_dataset(tmp_path / "unlabelled", train_rows=4, test_rows=2, with_labels=False)
    with pytest.raises(ValueError, match=r"needs labels.*\['img'\]"):
        finetune(MODEL, FinetuneConfig(**settings(unlabelled, tmp_path / "out", model_kwargs=MODEL_KWARGS)))
    assert not (tmp_path / "out").exists()


def test_cli_finetune_of_a_timm_model_name(position_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    code = cli.main(["finetune", MODEL, f"data={position_data}", "model_kwargs={layers: [1, 1, 1, 1]}", "epochs=1",
                     "max_steps=1", "batch_size=16", "image_size=16", "num_workers=0", "warmup_epochs=0",
                     "layer_decay=0.75", f"output_dir={out}"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["source"] == MODEL and report["hyperparameters"]["layer_decay"] == 0.75
    assert report["hyperparameters"]["model_kwargs"] == {"layers": [1, 1, 1, 1]}
    model_args = json.loads((out / "config.json").read_text())["model_args"]
    assert model_args["layers"] == [1, 1, 1, 1] and model_args["exit_stages"] == []


def test_finetune_never_writes_over_a_folder_silently(trained_run: Path, position_data: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The rule of train (issue 24, item 16): an earlier output is refused before any work unless overwrite=true; a
    training run, or any other folder holding files, is refused whatever overwrite says."""
    command = ["finetune", MODEL, f"data={position_data}", "model_kwargs={layers: [1, 1, 1, 1]}", "max_steps=1",
               "batch_size=16", "image_size=16", "num_workers=0", "warmup_epochs=0"]
    out = tmp_path / "out"
    assert cli.main([*command, f"output_dir={out}"]) == 0
    before = tree_digest(out)
    capsys.readouterr()
    assert cli.main([*command, "lr=0.01", f"output_dir={out}"]) == 2
    printed, err = capsys.readouterr()
    assert err.startswith(f"timm-selfcon finetune: error: output_dir '{out}' already holds") and err.count("\n") == 1
    assert "overwrite=true" in err and "new output_dir" in err and printed == ""  # refused before any work
    assert tree_digest(out) == before
    assert cli.main([*command, "lr=0.01", "overwrite=true", f"output_dir={out}"]) == 0
    assert json.loads((out / "report.json").read_text())["hyperparameters"]["lr"] == 0.01

    run_before = tree_digest(trained_run)
    capsys.readouterr()
    assert cli.main([*command, "overwrite=true", f"output_dir={trained_run}"]) == 2
    err = capsys.readouterr().err
    assert f"output_dir '{trained_run}' holds a training run" in err and err.count("\n") == 1
    assert tree_digest(trained_run) == run_before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert cli.main([*command, "overwrite=true", f"output_dir={mine}"]) == 2
    assert "not an earlier fine-tuning output" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_finetune_in_another_precision_in_the_same_process(trained_run: Path, position_data: Path,
                                                           tmp_path: Path) -> None:
    # the trained run (fp32) was made in this process; Accelerate would refuse a second precision
    report = finetune(trained_run, FinetuneConfig(**settings(position_data, tmp_path / "bf16", precision="bf16",
                                                             max_steps=1)))
    assert report["hyperparameters"]["precision"] == "bf16" and len(report["history"]) == 1
    with pytest.raises(ValueError, match=r"precision: Input should be 'fp32', 'bf16', 'fp16' or 'auto' \(got 'fp8'\)"):
        finetune(trained_run, FinetuneConfig(**settings(position_data, tmp_path / "fp8", precision="fp8")))
