"""Training checkpoints load in timm directly; checkpoints of the earlier layout still resume, evaluate and export."""
from __future__ import annotations

import json
import os
import shutil
import stat
import warnings
from pathlib import Path

import pytest
import timm
import torch
import yaml
from safetensors.torch import load_file, save_file

from timm_selfcon.engine.checkpoint import STATE_DIR, TRAINER_STATE, load_encoder, prune_checkpoints
from timm_selfcon.engine.evaluate import EvalConfig, evaluate
from timm_selfcon.engine.train import train
from timm_selfcon.hub import export

from .test_train import method_state, tiny_config


@pytest.fixture(scope="module")
def selfcon_run(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    run = tmp_path_factory.mktemp("timm_ckpt") / "run"
    train(tiny_config(tiny_data, run, "selfcon", max_steps=2, save_every_steps=1))
    return run


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_local_dir_loads_the_encoder_of_last(selfcon_run: Path) -> None:
    encoder, _ = load_encoder(selfcon_run)
    model = timm.create_model(f"local-dir:{selfcon_run / 'last'}", pretrained=True)
    assert same_tensors(model.state_dict(), encoder.state_dict())
    assert model.exit_stages == (2,) and model.num_classes == 0
    assert model.pretrained_cfg["input_size"] == (3, 16, 16)  # the training's preprocessing
    config = json.loads((selfcon_run / "last" / "config.json").read_text())
    assert config["architecture"] == "selfcon_resnet18_cifar"
    assert config["model_args"]["layers"] == [1, 1, 1, 1]


def test_a_trained_checkpoint_reloads_with_its_training_tag(selfcon_run: Path, tiny_data: Path) -> None:
    """Issue 24, item 21: the registered cfg's tag ``untrained`` was carried into every checkpoint's config.json."""
    model = timm.create_model(f"local-dir:{selfcon_run / 'last'}", pretrained=True)
    assert model.pretrained_cfg["tag"] == f"selfcon_{tiny_data.name}"  # <method>_<dataset>, as an export names it
    assert json.loads((selfcon_run / "ckpt-1" / "config.json").read_text())["pretrained_cfg"]["tag"] == (
        f"selfcon_{tiny_data.name}")


def test_checkpoint_path_loads_the_timm_weights(selfcon_run: Path) -> None:
    run_config = yaml.safe_load((selfcon_run / "config.yaml").read_text())
    model = timm.create_model(run_config["model"], num_classes=0, **run_config["model_kwargs"],
                              checkpoint_path=str(selfcon_run / "ckpt-1" / "model.safetensors"))
    prefix = "projector.model."
    saved = {k[len(prefix):]: v for k, v in method_state(selfcon_run / "ckpt-1").items() if k.startswith(prefix)}
    assert same_tensors(model.state_dict(), saved)


def test_checkpoint_files_have_ordinary_permissions(selfcon_run: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    for path in (selfcon_run / "ckpt-2").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == expected, path
    assert stat.S_IMODE((selfcon_run / "config.yaml").stat().st_mode) == expected


def write_old_layout(run: Path, old: Path) -> None:
    """A copy of ``run`` in the layout written before the timm files: Accelerate's files at the checkpoint's top."""
    shutil.copy(run / "config.yaml", old / "config.yaml")
    for checkpoint in sorted(run.glob("ckpt-*")):
        target = old / checkpoint.name
        shutil.copytree(checkpoint / STATE_DIR, target)
        shutil.copy(checkpoint / TRAINER_STATE, target / TRAINER_STATE)
    (old / "last").symlink_to(os.readlink(run / "last"))


def test_checkpoints_of_the_earlier_layout_evaluate_export_and_resume(selfcon_run: Path, tiny_data: Path,
                                                                     tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    write_old_layout(selfcon_run, old)
    assert not (old / "last" / "config.json").exists() and (old / "last" / "model.safetensors").is_file()
    report = evaluate(old, EvalConfig(protocol="linear_fast", epochs=1, num_workers=0, val_fraction=0.0))
    assert report["checkpoint"].endswith("ckpt-2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export(old, tmp_path / "exported")
    assert result.classifiers_protocol == "linear_fast"
    config = yaml.safe_load((old / "config.yaml").read_text())
    summary = train(tiny_config(tiny_data, old, "selfcon", max_steps=3, save_every_steps=1, resume=True,
                                **{k: config[k] for k in ("model", "model_kwargs")}))
    assert summary["steps"] == 3 and (old / "ckpt-3" / STATE_DIR).is_dir()


def test_convert_and_resume_follow_the_new_layout(selfcon_run: Path) -> None:
    for checkpoint in ("ckpt-1", "ckpt-2"):
        assert (selfcon_run / checkpoint / "config.json").is_file()
        assert (selfcon_run / checkpoint / STATE_DIR / "optimizer.bin").is_file()


def test_save_total_limit_keeps_the_newest_and_never_last(tiny_data: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=4, save_every_steps=1, save_total_limit=2))
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-3", "ckpt-4"]
    # `last` pointing at an older checkpoint (a rolled-back run) is never the one deleted
    os.remove(tmp_path / "last")
    (tmp_path / "last").symlink_to("ckpt-3")
    (tmp_path / "ckpt-5").mkdir()
    (tmp_path / "ckpt-5" / TRAINER_STATE).write_text("{}")
    assert [p.name for p in prune_checkpoints(tmp_path, 1)] == ["ckpt-4", "ckpt-5"]
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-3"]


def test_bad_save_total_limit_is_refused(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"save_total_limit: Input should be greater than 0 \(got 0\)"):
        tiny_config(tiny_data, tmp_path, save_total_limit=0)


def test_channels_last_run_writes_contiguous_timm_weights(tiny_data: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, tmp_path, "supcon_s", channels_last=True))
    weights = load_file(str(tmp_path / "last" / "model.safetensors"))
    assert "conv1.weight" in weights
    save_file(weights, str(tmp_path / "again.safetensors"))  # plain tensors, no memory format carried
