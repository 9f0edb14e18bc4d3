"""Two-process training through the real CLI (``torchrun --nproc_per_node 2 -m timm_selfcon.cli train``, CPU, gloo)
against a one-process reference of the same global batches.

SelfCon (arXiv 2106.15499) was trained with ``DataParallel``: the loss saw the whole batch while BatchNorm saw
each device's shard. The reference reproduces exactly that in one process: each rank's shard (the contiguous
slice ``r`` of the global batch, as the sampler hands it out) goes through the model separately, the projections
are concatenated before the loss, and plain momentum SGD with the recipe's schedule takes the step. After a few
steps the DDP run's parameters must match (BatchNorm running buffers are not compared: DDP broadcasts rank 0's).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml
from accelerate.utils import set_seed
from safetensors.torch import load_file

from timm_selfcon.config import resolve_config
from timm_selfcon.data import ResumableDistributedSampler, collate_samples
from timm_selfcon.engine.schedule import lr_at
from timm_selfcon.engine.train import build_data
from timm_selfcon.methods import SelfCon, build_method

from .conftest import CORRUPT_ROW, TRAIN_ROWS
from .test_train import REPO_ROOT, tiny_settings

WORLD_SIZE = 2
STEPS = 4


def torchrun_train(settings: dict, tmp_path: Path, processes: int = WORLD_SIZE,
                   show_warnings: bool = False) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node processes -m timm_selfcon.cli train`` on ``settings`` written as a recipe (CPU,
    gloo, one thread per process); warnings silenced unless ``show_warnings``."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    if show_warnings:
        env.pop("PYTHONWARNINGS")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "timm_selfcon.cli", "train", str(recipe)]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.distributed
def test_two_process_selfcon_matches_the_one_process_reference(tiny_data: Path, tmp_path: Path) -> None:
    settings = tiny_settings(tiny_data, tmp_path / "ddp", "selfcon", max_steps=STEPS, epochs=2, warmup_epochs=1,
                             lr=0.1, weight_decay=1e-3, save_every_steps=100)
    completed = torchrun_train(settings, tmp_path)
    assert completed.returncode == 0, f"torchrun failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    output_dir = tmp_path / "ddp"
    info = json.loads((output_dir / "run_info.json").read_text())
    assert info["num_processes"] == WORLD_SIZE
    assert os.readlink(output_dir / "last") == f"ckpt-{STEPS}"
    assert (output_dir / f"ckpt-{STEPS}" / "accelerate" / f"random_states_{WORLD_SIZE - 1}.pkl").is_file()  # every rank
    trained = load_file(str(output_dir / f"ckpt-{STEPS}" / "accelerate" / "model.safetensors"))

    # ---- one-process reference: same initial weights (the engine's order: seed, data, model, method)
    config = resolve_config(None, settings)
    set_seed(config.seed)
    dataset = build_data(config, 1, 1, 0).dataset
    model = timm.create_model(config.model, num_classes=0, **config.model_kwargs)
    method = build_method("selfcon", model,
                          **{k: config.method_kwargs[k] for k in ("temperature", "base_temperature", "out_dim")})
    assert isinstance(method, SelfCon)
    method.train()
    optimizer = torch.optim.SGD(method.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=False)
    samplers = [ResumableDistributedSampler(TRAIN_ROWS, config.batch_size, num_replicas=WORLD_SIZE, rank=rank,
                                            seed=config.seed) for rank in range(WORLD_SIZE)]
    steps_per_epoch = TRAIN_ROWS // config.batch_size
    rank_batches = [list(sampler) for sampler in samplers]  # epoch 0 (STEPS < steps_per_epoch)
    assert steps_per_epoch >= STEPS
    initial = {name: p.detach().clone() for name, p in method.named_parameters()}
    for step in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps_per_epoch, epochs=config.epochs, lr=config.lr, schedule=config.schedule,
                                min_lr_ratio=config.min_lr_ratio, warmup_epochs=config.warmup_epochs,
                                warmup_from=config.warmup_from)
        shards = [collate_samples([dataset[key] for key in batches[step]]) for batches in rank_batches]
        features = torch.cat([method.projector.forward_projections(shard["image"][:, 0]) for shard in shards])
        labels = torch.cat([shard["label"] for shard in shards])
        loss = method.criterion(features, labels)  # the loss over the global batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    parameters = dict(method.named_parameters())
    assert set(parameters) <= set(trained)
    moved = max(float((parameters[n].detach() - initial[n]).abs().max()) for n in parameters)
    assert moved > 1e-3, "the reference barely moved: the comparison would be meaningless"
    for name, value in parameters.items():
        torch.testing.assert_close(trained[name], value.detach(), rtol=1e-5, atol=1e-6,
                                   msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.distributed
def test_strict_data_refuses_on_every_process_before_any_work(tmp_path: Path) -> None:
    """Each process checks its share of the rows (issue 24, item 13) and the processes refuse together: with one
    corrupt row in each rank's share, a refusal (whichever rank's torchrun lets print before stopping the other)
    names both, and no run folder is made (no process is left waiting in a collective)."""
    from .conftest import make_data_dir

    data = make_data_dir(tmp_path / "data", corrupt_rows=(5, 6))  # rank 1 reads the odd rows, rank 0 the even
    settings = tiny_settings(data, tmp_path / "ddp", "supcon_s", max_steps=2, strict_data=True, log_with="none")
    completed = torchrun_train(settings, tmp_path)
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output[-3000:]
    refusals = [line for line in output.splitlines() if "timm-selfcon train: error: strict_data=true" in line]
    assert refusals and all("2 image(s)" in r and "sample 5:" in r and "sample 6:" in r for r in refusals), \
        output[-3000:]
    assert not (tmp_path / "ddp").exists()


@pytest.mark.distributed
def test_two_processes_print_each_warning_of_the_run_once(corrupt_data: Path, tmp_path: Path) -> None:
    """Issue 24, item 22: every process warned about the run as a whole (the substituted images, gathered from all
    processes) and every process decoding the whole split (``data_pipeline=device``) warned about each image."""
    settings = tiny_settings(corrupt_data, tmp_path / "ddp", "selfcon", batch_size=TRAIN_ROWS, max_steps=1,
                             data_pipeline="device")
    completed = torchrun_train(settings, tmp_path, show_warnings=True)
    assert completed.returncode == 0, f"torchrun failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    err = completed.stderr
    assert err.count("1 undecodable image(s)") == 1, err[-4000:]
    assert err.count(f"sample {CORRUPT_ROW}: cannot decode image") == 1, err[-4000:]


@pytest.mark.distributed
def test_two_processes_train_a_backbone_only_method_on_a_model_with_exits(tiny_data: Path, tmp_path: Path) -> None:
    """SupCon on a multi-exit model: the exits get no gradient; DDP waited for them and failed ("Expected to have
    finished reduction ...") until the method froze them."""
    settings = tiny_settings(tiny_data, tmp_path / "ddp", "supcon", max_steps=2)
    settings["model_kwargs"].update(exit_stages=[2], sub_network="fc")
    completed = torchrun_train(settings, tmp_path, show_warnings=True)
    assert completed.returncode == 0, f"torchrun failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    assert os.readlink(tmp_path / "ddp" / "last") == "ckpt-2"
