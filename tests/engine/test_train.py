"""The training loop end to end on tiny generated data: every method, checkpoints, exact resume, failures.

Each run uses the registered CIFAR ResNet-18 models with one block per stage (``layers=[1, 1, 1, 1]``) on
16x16 images, batch 8, so a step takes a fraction of a second on one CPU thread.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import yaml
from accelerate.utils import set_seed
from safetensors.torch import load_file

from timm_selfcon.cli import main
from timm_selfcon.config import TrainConfig, resolve_config
from timm_selfcon.data import CorruptImageWarning
from timm_selfcon.engine.accelerator import auto_precision, launcher_mismatch, resolve_precision
from timm_selfcon.engine.checkpoint import STATE_DIR, TRAINER_STATE
from timm_selfcon.engine.run_records import drop_metrics_after, logged_loss
from timm_selfcon.engine.schedule import lr_at
from timm_selfcon.engine.train import build_data, check_batch_layout, train
from timm_selfcon.methods import METHODS, build_method

from .conftest import CORRUPT_ROW, NUM_CLASSES, TRAIN_ROWS

SMALL_RESNET = [1, 1, 1, 1]
LOG_KEY = {"ce": "loss_ce", "supcon": "loss_supcon", "supcon_s": "loss_supcon", "selfcon": "loss_selfcon",
           "selfcon_m": "loss_selfcon", "simclr": "loss_simclr", "moco": "loss_moco", "simclr_mixco": "loss_mix",
           "moco_mixco": "loss_mix"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_settings(data: Path, output_dir: Path, method: str = "selfcon", **overrides: Any) -> dict[str, Any]:
    """Recipe keys of a tiny run: 16x16 crops, batch 8 (6 steps per epoch of the 48-row train split)."""
    if method.startswith("selfcon"):
        model, model_kwargs = "selfcon_resnet18_cifar", {"exit_stages": [2], "sub_network": "fc"}
    elif method in ("ce", "supcon", "supcon_s"):
        model, model_kwargs = "selfcon_resnet18_cifar", {"exit_stages": []}
    else:
        model, model_kwargs = "mixco_resnet18_cifar", {}
    settings = dict(
        data=str(data), method=method, model=model, model_kwargs={**model_kwargs, "layers": SMALL_RESNET},
        image_size=16, batch_size=8, num_workers=0, epochs=2, max_steps=1, lr=0.05,
        warmup_epochs=0, save_every_steps=100, log_every_steps=1, output_dir=str(output_dir), seed=0,
    )
    options = {"queue_size": 16} if method.startswith("moco") else {}  # a queue of two batches
    settings.update(overrides)
    settings["method_kwargs"] = {**options, **overrides.get("method_kwargs", {})}
    return settings


def tiny_config(data: Path, output_dir: Path, method: str = "selfcon", **overrides: Any) -> TrainConfig:
    return resolve_config(None, tiny_settings(data, output_dir, method, **overrides))


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def method_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The training method's state dict in a checkpoint (Accelerate's ``accelerate/model.safetensors``)."""
    return load_file(str(checkpoint / STATE_DIR / "model.safetensors"))


def kill_after_checkpoint(process: subprocess.Popen, last: Path, step: int) -> int:
    """SIGKILL ``process`` once ``last`` points at checkpoint ``step`` or later; the step it had reached."""
    deadline = time.monotonic() + 240
    while process.poll() is None and checkpoint_step(last) < step and time.monotonic() < deadline:
        time.sleep(0.01)
    killed_at = checkpoint_step(last)
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0]
    assert process.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{output[-3000:]}"
    return killed_at


def assert_same_weights(first: Path, second: Path) -> None:
    """Every tensor of two checkpoints' method states bit-identical (parameters and BatchNorm buffers)."""
    a, b = method_state(first), method_state(second)
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:5]}"


# ------------------------------------------------------------------------------------------ every method


@pytest.mark.parametrize("method", list(METHODS))
def test_one_step_of_every_method(method: str, tiny_data: Path, tmp_path: Path) -> None:
    summary = train(tiny_config(tiny_data, tmp_path, method))
    assert summary["steps"] == 1 and summary["substituted_images"] == []
    assert torch.isfinite(torch.tensor(summary["final_loss"]))
    assert os.readlink(tmp_path / "last") == "ckpt-1"
    assert (tmp_path / "ckpt-1" / "model.safetensors").is_file()
    [record] = read_metrics(tmp_path)
    assert record["step"] == 1 and record["loss"] == pytest.approx(summary["final_loss"])
    logged = [LOG_KEY[method]] if method in LOG_KEY else [k for k in record if k.startswith("loss_")]
    assert logged and logged[0] in record, f"{method} logged {sorted(record)}"


def test_the_method_is_told_the_run_progress(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from timm_selfcon.methods.moco import MoCo

    seen: list[tuple[int, int]] = []
    update = MoCo.after_optimizer_step
    monkeypatch.setattr(MoCo, "after_optimizer_step", lambda self, step, total: (seen.append((step, total)),
                                                                                  update(self, step, total)))
    train(tiny_config(tiny_data, tmp_path, "moco", max_steps=3, method_kwargs={"queue_size": 8}))
    assert seen == [(1, 3), (2, 3), (3, 3)]


# ------------------------------------------------------------------------------------------ output layout


def test_checkpoint_layout_and_run_records(tiny_data: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_data, tmp_path, max_steps=3, save_every_steps=2)
    summary = train(config)
    # a checkpoint every 2 steps and at the end; `last` is a relative symlink to the newest
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-2", "ckpt-3"]
    assert (tmp_path / "last").is_symlink() and os.readlink(tmp_path / "last") == "ckpt-3"
    assert not list(tmp_path.glob("*.tmp"))
    checkpoint = tmp_path / "ckpt-3"
    for name in ("model.safetensors", "config.json", TRAINER_STATE, *(f"{STATE_DIR}/{n}" for n in (
            "model.safetensors", "optimizer.bin", "random_states_0.pkl"))):
        assert (checkpoint / name).is_file(), f"{name} missing from {sorted(p.name for p in checkpoint.rglob('*'))}"
    state = json.loads((checkpoint / TRAINER_STATE).read_text())
    assert {k: state[k] for k in ("epoch", "step", "sittings")} == {"epoch": 0, "step": 3, "sittings": 1}
    assert 0 < state["train_seconds"] <= summary["train_seconds"] and 0 < state["cpu_seconds"] <= summary["cpu_seconds"]
    # the resolved config, and what the run actually used; each checkpoint carries the config too (copied out of the
    # run, it still evaluates and exports)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == config.to_dict()
    assert yaml.safe_load((checkpoint / "config.yaml").read_text()) == config.to_dict()
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["num_processes"] == 1 and info["precision"] == "fp32" and info["mixed_precision"] == "no"
    assert info["device"] == "cpu"
    assert {"timm_selfcon", "torch", "timm", "accelerate", "datasets", "python"} <= set(info["versions"])
    assert info["versions"]["torch"] == torch.__version__
    # the threads it computed with and the machine's load (1- and 2-thread runs end with different weights)
    assert info["torch_threads"] == torch.get_num_threads() and len(info["load_average"]) == 3
    assert summary["torch_threads"] == torch.get_num_threads()
    assert all(re.fullmatch(r"[0-9a-f]{64}", info[key]) for key in (
        "initial_encoder_sha256", "initial_method_sha256", "first_batches_sha256"))
    if (REPO_ROOT / ".git").exists():  # a git checkout (CI's fresh clone): the commit is recorded
        assert re.fullmatch(r"[0-9a-f]{40}", info["git_commit"] or ""), info["git_commit"]
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    # the saved weights load into the registered model (what evaluation and export use)
    weights = method_state(checkpoint)
    model = timm.create_model(config.model, num_classes=0, **config.model_kwargs)
    prefix = "projector.model."
    missing = model.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
    assert not missing.missing_keys and not missing.unexpected_keys


def test_bf16_run_records_the_precision_used(tiny_data: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, tmp_path, "supcon_s", precision="bf16", channels_last=True))
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["precision"] == "bf16" and info["mixed_precision"] == "bf16"
    assert torch.isfinite(torch.tensor(read_metrics(tmp_path)[0]["loss"]))


# ------------------------------------------------------------------------------------------ errors before training


@pytest.mark.parametrize(("method", "overrides", "message"), [
    ("ce", {"gradient_accumulation_steps": 3}, r"batch_size=8 must divide by processes x accumulation steps = 1 x 3"),
    ("selfcon", {"gradient_accumulation_steps": 2}, r"gradient_accumulation_steps=2 is refused for method 'selfcon'"),
    ("simclr", {"gradient_accumulation_steps": 2}, r"refused for method 'simclr'"),
    ("simclr_mixco", {"batch_size": 7}, r"'simclr_mixco' needs a per-process batch .* multiple of 2, got batch_size=7"),
])
def test_bad_batch_layout_is_an_error_before_training(method: str, overrides: dict[str, Any], message: str,
                                                      tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        train(tiny_config(tiny_data, tmp_path, method, **overrides))
    assert not list(tmp_path.iterdir()), "nothing may be written before the layout is checked"


def test_batch_layout_accepts_divisible_layouts(tiny_data: Path, tmp_path: Path) -> None:
    assert check_batch_layout(tiny_config(tiny_data, tmp_path, "ce", batch_size=16, gradient_accumulation_steps=2), 2) == 4
    assert check_batch_layout(tiny_config(tiny_data, tmp_path, "moco_mixco", batch_size=8), 2) == 4
    with pytest.raises(ValueError, match="batch_size=12 must divide by processes x accumulation steps = 8 x 1"):
        check_batch_layout(tiny_config(tiny_data, tmp_path, "selfcon", batch_size=12), 8)
    with pytest.raises(ValueError, match=r"'moco_mixco' needs a per-process batch .* multiple of 2, got batch_size=6"):
        check_batch_layout(tiny_config(tiny_data, tmp_path, "moco_mixco", batch_size=6), 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="SyncBatchNorm is allowed where a GPU is present")
@pytest.mark.parametrize(("cuda", "cuda_bf16", "capability", "expected"), [
    (True, True, "AVX512", "bf16"), (True, False, "AVX2", "fp16"),
    (False, False, "AVX512_AMX", "bf16"), (False, False, "AVX512", "fp32"), (False, False, "DEFAULT", "fp32"),
])
def test_auto_precision_picks_bf16_only_where_it_is_fast(cuda: bool, cuda_bf16: bool, capability: str,
                                                         expected: str) -> None:
    assert auto_precision(cuda, cuda_bf16, capability) == expected


def test_auto_precision_run_records_what_it_used(tiny_data: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, tmp_path, "supcon_s", precision="auto"))
    info = json.loads((tmp_path / "run_info.json").read_text())
    used = resolve_precision("auto")
    assert info["precision"] == "auto" and info["precision_used"] == used
    assert info["mixed_precision"] == {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[used]


def test_sync_bn_on_a_cpu_is_an_error(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"sync_bn=true needs GPUs"):
        train(tiny_config(tiny_data, tmp_path, sync_bn=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is allowed where a GPU is present")
def test_fp16_on_a_cpu_is_an_error_suggesting_bf16(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"precision='fp16' needs a GPU; on a CPU use precision='bf16'"):
        train(tiny_config(tiny_data, tmp_path, precision="fp16"))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ optimisation maths


def test_gradient_accumulation_and_sgd_match_a_hand_written_step(tiny_data: Path, tmp_path: Path) -> None:
    """CE with 2 accumulation steps = mean loss of two half batches, then plain momentum SGD (no Nesterov).

    One step with momentum 0.9: Nesterov would move the weights 1.9x as far, and a gradient divided by the
    accumulation steps without a second micro-batch would move them half as far.
    """
    config = tiny_config(tiny_data, tmp_path, "ce", gradient_accumulation_steps=2, max_steps=2, lr=0.2,
                         weight_decay=1e-3, epochs=2, warmup_epochs=1, warmup_from=0.1)
    train(config)
    trained = method_state(tmp_path / "last")

    set_seed(config.seed)  # the engine's order: seed, data, model
    data = build_data(config, 1, 1, 0)
    loader, names = data.loader, data.class_names
    model = timm.create_model(config.model, num_classes=len(names), **config.model_kwargs)
    method = build_method("ce", model)
    initial = {k: v.detach().clone() for k, v in method.state_dict().items()}
    optimizer = torch.optim.SGD(method.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=False)
    loader.batch_sampler.set_epoch(0)
    for step, batch in zip(range(config.max_steps), loader, strict=False):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, TRAIN_ROWS // config.batch_size, epochs=config.epochs, lr=config.lr,
                                warmup_epochs=1, warmup_from=0.1, min_lr_ratio=config.min_lr_ratio)
        for views, labels in zip(batch["image"].chunk(2), batch["label"].chunk(2), strict=True):
            loss, _ = method(views, labels)
            (loss / 2).backward()
        optimizer.step()
        optimizer.zero_grad()
    expected = method.state_dict()
    assert trained.keys() == expected.keys()
    moved = max(float((expected[k] - initial[k]).abs().max()) for k in expected if k.endswith("weight"))
    assert moved > 1e-3, "the reference barely moved: the comparison would be meaningless"
    for name, value in expected.items():
        torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_clip_grad_norm_clips_the_global_norm_before_the_step(tiny_data: Path, tmp_path: Path) -> None:
    """One CE step with ``clip_grad_norm`` equals a hand-written step with ``torch.nn.utils.clip_grad_norm_``."""
    config = tiny_config(tiny_data, tmp_path, "ce", clip_grad_norm=0.01, lr=0.5, weight_decay=0.0)
    train(config)
    trained = method_state(tmp_path / "last")
    logged = read_metrics(tmp_path)[0]["grad_norm"]

    set_seed(config.seed)
    data = build_data(config, 1, 1, 0)
    loader, names = data.loader, data.class_names
    method = build_method("ce", timm.create_model(config.model, num_classes=len(names), **config.model_kwargs))
    lr = lr_at(0, TRAIN_ROWS // config.batch_size, epochs=config.epochs, lr=config.lr, warmup_epochs=0,
               min_lr_ratio=config.min_lr_ratio)
    optimizer = torch.optim.SGD(method.parameters(), lr=lr, momentum=config.momentum)
    loader.batch_sampler.set_epoch(0)
    batch = next(iter(loader))
    loss, _ = method(batch["image"], batch["label"])
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(method.parameters(), 0.01)
    optimizer.step()
    assert float(norm) > 0.1, "the gradient was not large enough for clipping to matter"
    assert logged == pytest.approx(float(norm), rel=1e-4)  # the norm before clipping
    for name, value in method.state_dict().items():
        torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("value", [0, -1.0, "abc", True])
def test_bad_clip_grad_norm_is_rejected_naming_it(value: Any, tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"clip_grad_norm: (Input should be|expected a number)"):
        tiny_config(tiny_data, tmp_path, clip_grad_norm=value)



def test_deterministic_turns_on_deterministic_algorithms_for_the_run(tiny_data: Path, tmp_path: Path) -> None:
    try:
        train(tiny_config(tiny_data, tmp_path, deterministic=True, max_steps=1))
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)  # process-wide: leave the other tests as they were


@pytest.mark.parametrize("key", ["deterministic", "overwrite", "allow_config_change", "channels_last", "strict_data",
                                 "gather"])
def test_non_boolean_switch_is_rejected_naming_it(key: str, tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=rf"{key}: Input should be a valid boolean \(got 'ture'\)"):
        tiny_config(tiny_data, tmp_path, **{key: "ture"})


# ------------------------------------------------------------------------------------------ failures during training


@pytest.mark.parametrize("log_every_steps", [1, 3])
def test_non_finite_loss_stops_naming_the_step_and_last_stays_good(log_every_steps: int, tiny_data: Path,
                                                                   tmp_path: Path) -> None:
    """The loss is read only every ``log_every_steps`` (no host sync per step) but always before a checkpoint:
    the error names the first non-finite step and no checkpoint after it is written."""
    # lr=1e30 blows the projection head up after the first update: the loss of a later step is NaN
    config = tiny_config(tiny_data, tmp_path, "selfcon", lr=1e30, schedule="constant", max_steps=5,
                         save_every_steps=1, log_every_steps=log_every_steps)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step (\d+)") as raised:
        train(config)
    bad_step = int(re.search(r"step (\d+)", str(raised.value)).group(1))
    assert bad_step >= 2, "the first update must succeed for this test to check `last`"
    assert os.readlink(tmp_path / "last") == f"ckpt-{bad_step - 1}"
    assert json.loads((tmp_path / "last" / TRAINER_STATE).read_text())["step"] == bad_step - 1
    assert not (tmp_path / f"ckpt-{bad_step}").exists() and not list(tmp_path.glob("*.tmp"))
    weights = method_state(tmp_path / "last")
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_non_finite_loss_between_two_reads_is_named_by_its_first_step(tiny_data: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_data, tmp_path, "selfcon", lr=1e30, schedule="constant", max_steps=6,
                         save_every_steps=100, log_every_steps=4)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step (2|3) "):  # read at step 4
        train(config)
    assert not (tmp_path / "last").exists() and not read_metrics_or_empty(tmp_path)


def read_metrics_or_empty(output_dir: Path) -> list[dict[str, Any]]:
    return read_metrics(output_dir) if (output_dir / "metrics.jsonl").exists() else []


def test_corrupt_image_is_substituted_and_listed_in_the_summary(corrupt_data: Path, tmp_path: Path) -> None:
    # one global batch = the whole split, so the corrupt row is in the first step
    config = tiny_config(corrupt_data, tmp_path, "supcon_s", batch_size=TRAIN_ROWS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(config)
    assert summary["substituted_images"] == [CORRUPT_ROW]
    assert json.loads((tmp_path / "summary.json").read_text())["substituted_images"] == [CORRUPT_ROW]
    messages = [str(w.message) for w in caught]
    assert any(issubclass(w.category, CorruptImageWarning) and f"sample {CORRUPT_ROW}:" in str(w.message)
               for w in caught), messages
    assert any(f"1 undecodable image(s) of '{corrupt_data}' [train] were replaced by substitutes: sample {CORRUPT_ROW}"
               in m for m in messages), messages
    assert summary["substituted_files"] == [f"sample {CORRUPT_ROW}"]
    assert torch.isfinite(torch.tensor(summary["final_loss"]))


def test_strict_data_refuses_the_corrupt_image(corrupt_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"sample {CORRUPT_ROW}: cannot decode image"):
        train(tiny_config(corrupt_data, tmp_path, "supcon_s", batch_size=TRAIN_ROWS, strict_data=True))


@pytest.mark.parametrize("pipeline, workers", [("workers", 1), ("device", 0)])
def test_strict_data_names_the_corrupt_file_in_one_line_before_training(pipeline: str, workers: int, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str],
                                                                        make_tiny_image_dataset) -> None:
    """strict_data=true checks every image before any work (issue 24, item 13): one error line naming the file, not a
    DataLoader worker's traceback some steps in, and no run folder."""
    make_tiny_image_dataset({"train": 32, "test": 4}, root=tmp_path / "data", num_classes=2,
                            layout="{split}/{label}/{index:02d}.png")
    broken = tmp_path / "data" / "train" / "class1" / "29.png"  # read in the last step of the epoch, not the first
    broken.write_bytes(broken.read_bytes()[:40])  # truncated
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_settings(tmp_path / "data", tmp_path / "run", "supcon_s", max_steps=4,
                                                   num_workers=workers, data_pipeline=pipeline, strict_data=True,
                                                   log_with="none")))
    assert main(["train", str(recipe)]) == 2
    out, err = capsys.readouterr()
    # before it, only the datasets library's progress bars of its first read of the folder
    error = err.splitlines()[-1]
    assert error.startswith("timm-selfcon train: error: strict_data=true") and err.count("error:") == 1, err
    assert f"({broken}): cannot decode image" in error and "strict_data=false" in error
    assert "Traceback" not in err and "worker" not in err and out == ""
    assert not re.search(r"train:\s+\d+%", err)  # no training step was taken
    assert not (tmp_path / "run").exists()  # refused before any work


# ------------------------------------------------------------------------------------------ exact resume


def test_resume_after_a_partial_checkpoint_write_is_exact(tiny_data: Path, tmp_path: Path) -> None:
    """MoCo + MixCo (queue, momentum encoder, global-RNG mixing coefficients) stopped at step 3 while
    `ckpt-4.tmp` was being written, then resumed: the same weights as an unbroken run, across an epoch end."""
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    settings = dict(max_steps=8, save_every_steps=1, epochs=3, warmup_epochs=1, lr=0.1)
    train(tiny_config(tiny_data, unbroken, "moco_mixco", **settings))

    train(tiny_config(tiny_data, broken, "moco_mixco", **{**settings, "max_steps": 3}))
    # what a SIGKILL during the next save leaves behind: a half-written tmp directory and a dangling last.tmp
    partial = broken / "ckpt-4.tmp"
    shutil.copytree(broken / "ckpt-3", partial)
    (partial / STATE_DIR / "model.safetensors").write_bytes(b"\x00" * 17)
    (partial / TRAINER_STATE).unlink()
    (broken / "last.tmp").symlink_to("ckpt-4.tmp")
    metrics = (broken / "metrics.jsonl").read_text()
    (broken / "metrics.jsonl").write_text(metrics + json.dumps({"step": 4, "loss": 0.0}) + "\n")  # logged, not saved

    summary = train(tiny_config(tiny_data, broken, "moco_mixco", **settings, resume=True, num_workers=1))
    assert summary["steps"] == 8
    assert_same_weights(unbroken / "ckpt-8", broken / "ckpt-8")
    assert os.readlink(broken / "last") == "ckpt-8" and not list(broken.glob("*.tmp"))
    assert [r["step"] for r in read_metrics(broken)] == list(range(1, 9))  # the stale step-4 record is gone
    # the resumed run really continued (not a restart): its loss at step 4 is the unbroken run's
    assert read_metrics(broken)[3]["loss"] == read_metrics(unbroken)[3]["loss"]


def run_cli(recipe: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "timm_selfcon.cli", "train", str(recipe), *overrides]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def checkpoint_step(link: Path) -> int:
    try:
        return int(os.readlink(link).removeprefix("ckpt-"))
    except (FileNotFoundError, ValueError):
        return 0


def test_sigkill_then_resume_ends_bit_identical_to_an_unbroken_run(tiny_data: Path, tmp_path: Path) -> None:
    """`timm-selfcon train` (SelfCon, fp32, CPU) killed with SIGKILL once `last` reaches ckpt-2 or later, then
    resumed with resume=true (and another worker count): final weights bit-identical to an unbroken run."""
    steps = 9  # 1.5 epochs, so the resumed run crosses an epoch boundary
    settings = tiny_settings(tiny_data, tmp_path / "killed", "selfcon", max_steps=steps, save_every_steps=1, epochs=3,
                             warmup_epochs=1)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(settings))
    last = tmp_path / "killed" / "last"
    killed_at = kill_after_checkpoint(run_cli(recipe, "num_workers=1"), last, 2)
    assert 2 <= killed_at < steps
    # `last` points at a complete checkpoint, whatever the moment of the kill
    assert (last / TRAINER_STATE).is_file() and (last / "model.safetensors").is_file()

    resumed = run_cli(recipe, "resume=true", "num_workers=0")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    resumed_from = int(re.search(r"resumed from .*ckpt-(\d+) at step (\d+)", output).group(2))
    assert resumed_from >= killed_at

    summary = train(resolve_config(None, {**settings, "output_dir": str(tmp_path / "unbroken")}))
    assert summary["steps"] == steps
    assert_same_weights(tmp_path / "unbroken" / f"ckpt-{steps}", tmp_path / "killed" / f"ckpt-{steps}")
    assert json.loads((tmp_path / "killed" / "summary.json").read_text())["steps"] == steps


def test_resume_auto_without_a_checkpoint_starts_fresh(tiny_data: Path, tmp_path: Path) -> None:
    summary = train(tiny_config(tiny_data, tmp_path, "supcon_s", resume="auto"))
    assert summary["steps"] == 1 and os.readlink(tmp_path / "last") == "ckpt-1"


def test_ce_uses_the_dataset_classes(tiny_data: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, tmp_path, "ce"))
    weights = method_state(tmp_path / "last")
    classifier = [v for k, v in weights.items() if k.endswith("fc.weight")]
    assert classifier and classifier[0].shape[0] == NUM_CLASSES


def test_corrupt_files_are_named_by_path_once_across_workers(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                            make_tiny_image_dataset) -> None:
    """An imagefolder with a truncated PNG, two epochs through one DataLoader worker (recreated each epoch): one
    warning naming the file, in the training process, and the summary names the same file."""
    make_tiny_image_dataset({"train": 16, "test": 4}, root=tmp_path / "data", num_classes=2,
                            layout="{split}/{label}/{index:02d}.png")
    broken = tmp_path / "data" / "train" / "class1" / "03.png"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated
    config = tiny_config(tmp_path / "data", tmp_path / "run", "supcon_s", batch_size=16, max_steps=2, num_workers=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(config)
    per_image = [str(w.message) for w in caught if issubclass(w.category, CorruptImageWarning)]
    assert len(per_image) == 1 and str(broken) in per_image[0], per_image
    assert len(summary["substituted_images"]) == 1 and str(broken) in summary["substituted_files"][0]
    assert any("1 undecodable image(s)" in str(w.message) and str(broken) in str(w.message) for w in caught)
    assert "cannot decode" not in capfd.readouterr().err  # the worker itself stayed silent


def test_a_launcher_asking_for_several_processes_is_warned_about(tiny_data: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert "WORLD_SIZE=3 but this run sees 1 process" in launcher_mismatch(1, {"WORLD_SIZE": "3"})
    assert launcher_mismatch(3, {"WORLD_SIZE": "3"}) is None and launcher_mismatch(1, {}) is None
    # what `accelerate launch --cpu --num_processes 3` leaves in the one process it starts
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.warns(UserWarning, match=r"accelerate launch asked for several processes .* torchrun --nproc_per_node"):
        train(tiny_config(tiny_data, tmp_path, "supcon_s"))


# ------------------------------------------------------------------------------------------ what the user reads


def split_output_lines(text: str) -> list[str]:
    """Lines of captured output; progress bars rewrite their line with carriage returns and cursor moves."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    return [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]


def test_cli_prints_each_training_warning_once_naming_where_it_arose(corrupt_data: Path, tmp_path: Path,
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    """Issue 24, item 22: the run summary's warning was attributed to ``cli.py:30`` (the caller's line) and printed
    with Python's echo of that line. Each warning is one line that names its category and the package file."""
    from timm_selfcon import cli

    settings = tiny_settings(corrupt_data, tmp_path / "run", "supcon", batch_size=TRAIN_ROWS,
                             model_kwargs={"exit_stages": [2], "sub_network": "fc", "layers": SMALL_RESNET})
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(settings))
    capfd.readouterr()
    assert cli.main(["train", str(recipe)]) == 0
    err = capfd.readouterr().err
    lines = [line for line in split_output_lines(err) if "warning:" in line]
    expected = {"trains only the backbone": "UserWarning at timm_selfcon/methods/",
                f"sample {CORRUPT_ROW}: cannot decode image": "CorruptImageWarning at timm_selfcon/data/",
                "1 undecodable image(s)": "UserWarning at timm_selfcon/engine/train.py:"}
    for text, origin in expected.items():
        found = [line for line in lines if text in line]
        assert len(found) == 1, f"{text!r} printed {len(found)} times:\n{err[-3000:]}"
        assert found[0].startswith("timm-selfcon train: warning: ") and origin in found[0], found[0]
    assert "cli.py" not in err, err[-3000:]


def test_metrics_records_carry_the_elapsed_time_and_the_finished_epochs(tiny_data: Path, tmp_path: Path) -> None:
    """Issue 24, item 24: a record had no elapsed time, and the last one said epoch 1 where trainer_state.json said 2.
    ``epoch`` stays the 0-based epoch a step belongs to; ``epochs_done`` is trainer_state.json's count of finished
    epochs; ``train_seconds`` is the training wall time so far, summed over the sittings of a resumed run."""
    steps_per_epoch = TRAIN_ROWS // 8
    settings = dict(epochs=2, max_steps=steps_per_epoch, save_every_steps=steps_per_epoch)
    train(tiny_config(tiny_data, tmp_path, "supcon_s", **settings))  # the first sitting: one epoch
    first_sitting = json.loads((tmp_path / "last" / TRAINER_STATE).read_text())
    summary = train(tiny_config(tiny_data, tmp_path, "supcon_s", **{**settings, "max_steps": None}, resume=True))
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(1, 2 * steps_per_epoch + 1))
    assert [r["epoch"] for r in records] == [0] * steps_per_epoch + [1] * steps_per_epoch
    assert [r["epochs_done"] for r in records] == [0] * (steps_per_epoch - 1) + [1] * steps_per_epoch + [2]
    state = json.loads((tmp_path / "last" / TRAINER_STATE).read_text())
    assert records[-1]["epochs_done"] == state["epoch"] == 2 and state["sittings"] == 2
    seconds = [r["train_seconds"] for r in records]
    assert all(0 < a < b for a, b in itertools.pairwise(seconds)), seconds
    # the second sitting continues the first one's clock: its records count both sittings
    assert seconds[steps_per_epoch - 1] <= first_sitting["train_seconds"] < seconds[steps_per_epoch]
    assert seconds[-1] <= state["train_seconds"] <= summary["train_seconds"]


def test_resuming_a_finished_run_says_it_is_complete_and_changes_nothing(tiny_data: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24, item 25: resuming a finished run printed only "resumed from ... at step N" and rewrote summary.json
    (final_loss NaN) and run_info.json. It says the run is complete and returns its summary, writing nothing."""
    config = tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=2, save_every_steps=1)
    summary = train(config)
    files = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    capsys.readouterr()
    again = train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=2, save_every_steps=1, resume=True))
    out = capsys.readouterr().out
    assert again == summary
    assert f"{tmp_path} is already complete: step 2 of 2" in out, out
    assert "resumed from" not in out
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == files
    # killed after its last checkpoint but before its summary: resuming finishes it, with the loss it had logged
    (tmp_path / "summary.json").unlink()
    finished = train(tiny_config(tiny_data, tmp_path, "supcon_s", max_steps=2, save_every_steps=1, resume=True))
    assert finished["steps"] == 2 and finished["final_loss"] == summary["final_loss"]
    assert json.loads((tmp_path / "summary.json").read_text()) == finished


def test_a_run_ends_saying_where_it_is_and_how_long_it_took(tiny_data: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24, item 27: the quickstart ended without saying where the run is or how long it took."""
    train(tiny_config(tiny_data, tmp_path / "run", "supcon_s", max_steps=2))
    lines = capsys.readouterr().out.splitlines()
    run_line = next(line for line in lines if line.startswith("run: "))
    assert run_line.startswith(f"run: {tmp_path / 'run'} (last -> ckpt-2;"), run_line
    assert f"local-dir:{tmp_path / 'run'}/last" in run_line
    assert re.fullmatch(r"took \d+\.\d s \(training \d+\.\d s\)", lines[lines.index(run_line) + 1]), lines
    # resumed for more steps: this sitting, and the training over both
    train(tiny_config(tiny_data, tmp_path / "run", "supcon_s", max_steps=3, resume=True))
    lines = capsys.readouterr().out.splitlines()
    assert any(re.fullmatch(r"this sitting took \d+\.\d s; training took \d+\.\d s over 2 sittings", line)
               for line in lines), lines


def test_a_selfcon_config_built_in_python_without_an_exit_is_refused_before_writing(tiny_data: Path,
                                                                                   tmp_path: Path) -> None:
    # TrainConfig(...) skips resolve_config's model check: train() itself refuses, before the run folder exists
    settings = tiny_settings(tiny_data, tmp_path / "run", "selfcon")
    config = TrainConfig(**{**settings, "model_kwargs": {"exit_stages": [], "layers": SMALL_RESNET}})
    with pytest.raises(ValueError, match=r"needs a model with at least one exit.*method=supcon_s"):
        train(config)
    assert not (tmp_path / "run").exists()
    # a checkpoint of such a run, trained before the refusal, still loads: the method itself builds without exits
    model = timm.create_model("selfcon_resnet18_cifar", num_classes=0, exit_stages=[], layers=SMALL_RESNET)
    assert build_method("selfcon", model).encoder is model


def test_resuming_drops_later_metrics_and_an_incomplete_last_line(tmp_path):
    """A run killed while appending to metrics.jsonl leaves half a line; resuming at a checkpoint keeps the complete
    records up to it and rewrites the file whole (never a partial file), and the logged loss is still found."""
    metrics = tmp_path / "metrics.jsonl"
    records = [dict(step=s, loss=1.0 / s) for s in (1, 2, 3)]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 4, "lo')
    assert logged_loss(metrics, 2) == 0.5 and logged_loss(metrics, 4) != logged_loss(metrics, 4)  # NaN
    drop_metrics_after(metrics, 2)
    assert [json.loads(line) for line in metrics.read_text().splitlines()] == records[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no temporary left beside it
