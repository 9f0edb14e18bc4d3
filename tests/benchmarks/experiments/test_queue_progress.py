"""benchmarks/experiments/experiments_queue.py's progress archives: an unfinished queue run travels to a fresh
machine and goes on there exactly as it would have gone on where it started."""
import json
import shutil
from pathlib import Path

from conftest import tiny_image_dataset
from safetensors.torch import load_file

from benchmarks.experiments import experiments_queue
from benchmarks.experiments.experiments_queue import archive_step, newest_step, restore_progress, save_progress
from timm_selfcon.config import resolve_config
from timm_selfcon.engine.checkpoint import STATE_DIR, TRAINER_STATE
from timm_selfcon.engine.evaluate import evaluate
from timm_selfcon.engine.train import train

STEPS_PER_EPOCH = 6  # 48 images, batch 8


def _config(data: Path, run_dir: Path, **overrides):
    return resolve_config(None, dict(
        data=str(data), method="supcon", model="selfcon_resnet18_cifar",
        model_kwargs={"exit_stages": [], "layers": [1, 1, 1, 1]}, image_size=16, batch_size=8, num_workers=0,
        epochs=3, lr=0.05, warmup_epochs=0, save_every_steps=STEPS_PER_EPOCH, log_every_steps=1,
        output_dir=str(run_dir), seed=0, log_with="none", resume="auto", **overrides))


def _final_weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "last" / STATE_DIR / "model.safetensors"))


def test_a_run_resumed_from_its_archive_ends_as_the_run_resumed_in_place(tmp_path: Path) -> None:
    data = tiny_image_dataset(tmp_path / "data", {"train": 48, "validation": 16})
    run_dir = tmp_path / "work" / "equal_compute" / "run"
    train(_config(data, run_dir, max_steps=2 * STEPS_PER_EPOCH))  # killed after epoch 2 of 3
    in_place = tmp_path / "in_place"
    shutil.copytree(run_dir, in_place, symlinks=True)

    archive = tmp_path / "results" / "equal_compute" / "progress" / "run.tar.gz"
    assert save_progress(run_dir, archive, curve_steps=[STEPS_PER_EPOCH, 3 * STEPS_PER_EPOCH]) == 12
    assert archive_step(archive) == 12 and not list(archive.parent.glob(".*.tmp"))
    shutil.rmtree(tmp_path / "work")  # the machine is gone
    assert restore_progress(archive, run_dir) == 12 and newest_step(run_dir) == 12
    # the earlier checkpoint came as what evaluation reads, and evaluates
    assert sorted(p.name for p in (run_dir / "ckpt-6").rglob("*") if p.is_file()) == \
        ["config.yaml", "model.safetensors", TRAINER_STATE]
    report = evaluate(str(run_dir / "ckpt-6"), protocol="knn", data=str(data), train_split="train",
                      split="validation", num_workers=0, batch_size=16)
    assert report["results"]["backbone"]["k20"] >= 0

    restored = train(_config(data, run_dir))
    resumed = train(_config(data, in_place))
    assert restored["steps"] == resumed["steps"] == 3 * STEPS_PER_EPOCH
    a, b = _final_weights(run_dir), _final_weights(in_place)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    # the run's clock went on: two sittings, the second from step 12
    assert [(s["sitting"], s["start_step"]) for s in restored["sitting_log"]] == [(1, 0), (2, 12)]
    metrics = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics == list(range(1, 3 * STEPS_PER_EPOCH + 1))


def test_a_folder_as_far_is_left_alone_and_one_behind_is_kept_aside(tmp_path: Path) -> None:
    data = tiny_image_dataset(tmp_path / "data", {"train": 48})
    run_dir = tmp_path / "run"
    train(_config(data, run_dir, max_steps=STEPS_PER_EPOCH))
    archive = tmp_path / "run.tar.gz"
    save_progress(run_dir, archive, curve_steps=[])
    assert restore_progress(archive, run_dir) is None  # as far already: nothing touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run", "run.tar.gz"]

    train(_config(data, tmp_path / "ahead", max_steps=2 * STEPS_PER_EPOCH))
    save_progress(tmp_path / "ahead", archive, curve_steps=[])
    assert restore_progress(archive, run_dir) == 12
    superseded = [p for p in tmp_path.iterdir() if p.name.startswith("run.superseded-")]
    assert len(superseded) == 1 and newest_step(superseded[0]) == 6  # never deleted


def test_a_run_without_a_checkpoint_writes_no_archive(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    assert save_progress(tmp_path / "run", tmp_path / "out" / "run.tar.gz", curve_steps=[6]) is None
    assert not (tmp_path / "out" / "run.tar.gz").exists()


def test_newest_step_needs_a_complete_checkpoint(tmp_path: Path) -> None:
    assert newest_step(tmp_path) == -1  # no checkpoint
    (tmp_path / "ckpt-12").mkdir()
    (tmp_path / "ckpt-12.tmp").mkdir()  # a checkpoint being written
    assert newest_step(tmp_path) == -1  # no trainer_state.json: not a checkpoint yet
    (tmp_path / "ckpt-12" / TRAINER_STATE).write_text("{}")
    assert newest_step(tmp_path) == 12


def test_the_dry_run_shows_where_a_carried_run_stands(tmp_path: Path, capsys) -> None:
    data = tiny_image_dataset(tmp_path / "data", {"train": 48})
    train(_config(data, tmp_path / "run", max_steps=STEPS_PER_EPOCH))
    results = tmp_path / "results"
    (results / "mixco").mkdir(parents=True)
    for name in experiments_queue.MOCO_TRIALS:  # finished trials: the queue goes on to the equal-compute runs
        validation = {"validation": {"linear_fast": {"results": {"backbone": {"last": {"top1": 50.0}}}}}}
        (results / "mixco" / f"{name}.json").write_text(json.dumps(validation))
    save_progress(tmp_path / "run", results / "equal_compute" / "progress" / "supcon_head_bn.tar.gz", curve_steps=[])
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    for split in ("train", "test"):
        (cifar / f"{split}.parquet").write_bytes(b"")
    assert experiments_queue.main(["--dry-run", "--data", str(cifar), "--results", str(results)]) == 0
    assert "todo equal_compute/supcon_head_bn (train, 20 epochs, carried to step 6)" in capsys.readouterr().out
