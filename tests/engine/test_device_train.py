"""``data_pipeline=device`` through the training loop on a CPU: every kind of method, exact resume after SIGKILL,
two processes against a one-process reference, bad input; and the loop's step-end callbacks and ``compile``."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import yaml
from accelerate.utils import set_seed
from safetensors.torch import load_file

from timm_selfcon.config import resolve_config
from timm_selfcon.data.device import DeviceBatches
from timm_selfcon.engine.checkpoint import TRAINER_STATE, accelerate_state_dir
from timm_selfcon.engine.schedule import lr_at
from timm_selfcon.engine.train import build_data, train
from timm_selfcon.methods import SelfCon, build_method

from .conftest import CORRUPT_ROW, TRAIN_ROWS
from .test_distributed_train import torchrun_train
from .test_train import (
    assert_same_weights,
    kill_after_checkpoint,
    read_metrics,
    run_cli,
    tiny_config,
    tiny_settings,
)

DEVICE = {"data_pipeline": "device"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded splits go to the test's folder (also for the subprocesses, which inherit the environment)."""
    monkeypatch.setenv("TIMM_SELFCON_DEVICE_CACHE", str(tmp_path / "device_cache"))


@pytest.mark.parametrize("method", ["ce", "supcon", "selfcon", "simclr", "moco_mixco"])
def test_one_step_on_the_device_pipeline(method: str, tiny_data: Path, tmp_path: Path) -> None:
    augmentation = {"ce": "ce", "simclr": "simclr", "moco_mixco": "moco_v2"}.get(method, "supcon")
    summary = train(tiny_config(tiny_data, tmp_path / "run", method, augmentation=augmentation, **DEVICE))
    assert summary["steps"] == 1 and torch.isfinite(torch.tensor(summary["final_loss"]))
    assert len(list((tmp_path / "device_cache").glob("*-img-label-16px.safetensors"))) == 1


def test_corrupt_image_is_substituted_once_at_decoding(corrupt_data: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=f"sample {CORRUPT_ROW}: cannot decode image"):
        summary = train(tiny_config(corrupt_data, tmp_path / "run", "supcon_s", **DEVICE))
    assert summary["substituted_images"] == [CORRUPT_ROW]
    with pytest.raises(ValueError, match=f"sample {CORRUPT_ROW}: cannot decode image"):  # also from the cache
        train(tiny_config(corrupt_data, tmp_path / "strict", "supcon_s", strict_data=True, **DEVICE))


def test_sigkill_then_resume_on_the_device_pipeline_ends_bit_identical(tiny_data: Path, tmp_path: Path) -> None:
    """As the workers-path test: SelfCon killed with SIGKILL once `last` reaches ckpt-2, resumed with resume=true;
    the final weights equal an unbroken run's bit for bit (across an epoch boundary)."""
    steps = 9
    settings = tiny_settings(tiny_data, tmp_path / "killed", "selfcon", max_steps=steps, save_every_steps=1, epochs=3,
                             warmup_epochs=1, log_every_steps=4, **DEVICE)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(settings))
    last = tmp_path / "killed" / "last"
    killed_at = kill_after_checkpoint(run_cli(recipe), last, 2)
    assert 2 <= killed_at < steps and (last / TRAINER_STATE).is_file()

    resumed = run_cli(recipe, "resume=true")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert int(re.search(r"resumed from .*ckpt-(\d+) at step (\d+)", output).group(2)) >= killed_at

    summary = train(resolve_config(None, {**settings, "output_dir": str(tmp_path / "unbroken")}))
    assert summary["steps"] == steps
    assert_same_weights(tmp_path / "unbroken" / f"ckpt-{steps}", tmp_path / "killed" / f"ckpt-{steps}")
    assert [r["step"] for r in read_metrics(tmp_path / "killed")] == [4, 8, 9]
    assert read_metrics(tmp_path / "killed")[-1]["loss"] == read_metrics(tmp_path / "unbroken")[-1]["loss"]


@pytest.mark.distributed
def test_two_processes_on_the_device_pipeline_match_the_one_process_reference(tiny_data: Path, tmp_path: Path) -> None:
    """torchrun, 2 CPU processes (gloo): each takes its slice of the shared permutation (disjoint, together the
    global batch); the logged (gathered) loss of every step and the final weights equal one process forwarding
    the two shards separately (per-shard BatchNorm, as DDP) and taking the loss over their concatenation."""
    world, steps = 2, 3
    settings = tiny_settings(tiny_data, tmp_path / "ddp", "selfcon", max_steps=steps, epochs=2, warmup_epochs=1,
                             lr=0.1, weight_decay=1e-3, **DEVICE)
    completed = torchrun_train(settings, tmp_path, world)
    assert completed.returncode == 0, f"torchrun failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    assert json.loads((tmp_path / "ddp" / "run_info.json").read_text())["num_processes"] == world
    trained = load_file(str(accelerate_state_dir(tmp_path / "ddp" / f"ckpt-{steps}") / "model.safetensors"))
    logged = [r["loss"] for r in read_metrics(tmp_path / "ddp")]

    config = resolve_config(None, settings)
    set_seed(config.seed)  # the engine's order: seed, data, model, method
    train_data = build_data(config, 1, 1, 0)
    data, sampler, loader = train_data.dataset, train_data.sampler, train_data.loader
    method = build_method("selfcon", timm.create_model(config.model, num_classes=0, **config.model_kwargs),
                          **{k: config.method_kwargs[k] for k in ("temperature", "base_temperature", "out_dim")})
    assert isinstance(method, SelfCon)
    method.train()
    optimizer = torch.optim.SGD(method.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    shards = []
    for rank in range(world):
        rank_sampler = type(sampler)(TRAIN_ROWS, config.batch_size, num_replicas=world, rank=rank, seed=config.seed)
        rank_sampler.set_epoch(0)
        shards.append(list(DeviceBatches(data, loader.augment, rank_sampler))[:steps])
    reference_losses = []
    for step in range(steps):
        first, second = shards[0][step], shards[1][step]
        assert not set(first["index"].tolist()) & set(second["index"].tolist())
        assert torch.cat([first["index"], second["index"]]).tolist() == sampler.global_batch(step, epoch=0)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, sampler.steps_per_epoch, epochs=config.epochs, lr=config.lr,
                                schedule=config.schedule, min_lr_ratio=config.min_lr_ratio,
                                warmup_epochs=config.warmup_epochs, warmup_from=config.warmup_from)
        features = torch.cat([method.projector.forward_projections(s["image"][:, 0]) for s in (first, second)])
        loss = method.criterion(features, torch.cat([first["label"], second["label"]]))
        reference_losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert logged == pytest.approx(reference_losses, rel=1e-5, abs=1e-6)
    for name, value in method.named_parameters():
        torch.testing.assert_close(trained[name], value.detach(), rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_a_split_above_the_memory_cap_is_refused_before_decoding(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'train' split \(48 images at 16x16\) takes 0\.00 GiB as uint8, above "
                                         r"device_data_max_gib=1e-06; use data_pipeline=workers"):
        train(tiny_config(tiny_data, tmp_path / "run", device_data_max_gib=1e-6, **DEVICE))
    assert not (tmp_path / "device_cache").exists()


def test_device_pipeline_with_streaming_is_refused_with_the_reason(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"streaming was removed in 0.3.0"):
        tiny_config(tiny_data, tmp_path, streaming=True, **DEVICE)
    with pytest.raises(ValueError, match=r"data_pipeline: Input should be 'workers' or 'device' \(got 'gpu'\)"):
        tiny_config(tiny_data, tmp_path, data_pipeline="gpu")


class StepRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, Any]]] = []

    def on_step_end(self, step: int, logs: dict[str, Any]) -> None:
        self.calls.append((step, logs))


def test_step_end_callbacks_see_every_step_and_its_loss(tiny_data: Path, tmp_path: Path) -> None:
    recorder = StepRecorder()
    summary = train(tiny_config(tiny_data, tmp_path, "supcon", max_steps=4, log_every_steps=2, **DEVICE),
                    callbacks=[recorder])
    assert [step for step, _ in recorder.calls] == [1, 2, 3, 4]
    assert all(isinstance(logs["loss"], torch.Tensor) and logs["epoch"] == 0 for _, logs in recorder.calls)
    assert float(recorder.calls[-1][1]["loss"]) == summary["final_loss"]
    assert [r["step"] for r in read_metrics(tmp_path)] == [2, 4]


@pytest.mark.slow
def test_compile_gives_the_eager_loss(tiny_data: Path, tmp_path: Path) -> None:
    """``compile: true`` (torch.compile of the method's forward and loss; about a minute on 2 CPU cores)."""
    eager = train(tiny_config(tiny_data, tmp_path / "eager", max_steps=2, **DEVICE))
    compiled = train(tiny_config(tiny_data, tmp_path / "compiled", max_steps=2, compile=True, **DEVICE))
    assert compiled["final_loss"] == pytest.approx(eager["final_loss"], rel=1e-4)
    weights = load_file(str(tmp_path / "compiled" / "last" / "model.safetensors"))
    assert weights.keys() == load_file(str(tmp_path / "eager" / "last" / "model.safetensors")).keys()
