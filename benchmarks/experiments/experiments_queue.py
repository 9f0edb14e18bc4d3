"""The background queue of two experiments on the CPU: does MixCo help, and SelfCon at equal compute.

Everything here is ours (CPU scale), not the papers' setting. Shared with the method ranking
(``rank_methods.py``): the encoder ``selfcon_resnet10_w16_cifar`` (0.31M parameters; ``exit_stages=[]`` is the
ranking's ``floor_noexit`` architecture), the data (CIFAR-10 train rows 0..44,999 train the encoders and the
probes, rows 45,000..49,999 are the ``validation`` split every choice is made on, the 10,000 test images are read
once per run, at its end) and the untrained floor of seed 0 (``rank/floor_noexit.json``).

Queue, in order (a run whose JSON exists is skipped; a killed run resumes from its last per-epoch checkpoint):

1. ``mixco/trial_*``: MoCo v2 alone, seed 0, ``--trial-epochs`` epochs, at the official MoCo lr and key momentum
   (0.015, 0.999; batch 128) and at the CPU recipe's (0.06, 0.99); the better backbone ``linear_fast`` top-1 on
   the validation split sets lr and momentum of every MoCo v2 run below, with and without MixCo.
2. ``mixco/floor_noexit_seed1``: the untrained encoder of seed 1 (seed 0's is the ranking's).
3. ``mixco/moco_seed{0,1}`` and ``mixco/moco_mixco_seed{0,1}``: the paired runs. Within a seed both arms build the
   same initial weights and see the same images in the same order with the same augmentations (the data order
   depends only on (seed, epoch), each augmentation on (seed, epoch, index)); the + MixCo arm adds the mixed
   images. ``run_info.json`` hashes (initial weights, first batches) are copied into each JSON to check it.
4. ``equal_compute/*``: SelfCon-S + head BatchNorm for the epochs at which it costs what SupCon's 20 epochs cost
   (read from ``equal_compute/cost.json``, written by ``bench_method_cost.py``; the run waits for it), SupCon +
   head BatchNorm and SupCon-S + head BatchNorm, 20 epochs each, on the ranking's recipe.
5. ``equal_compute/*_seed1``: when SelfCon-S + head BN at equal compute lands within 1.5 points of SupCon, or of
   SupCon + head BN (``linear`` protocol, test top-1), a second seed of both arms of that comparison (issue 23).
6. ``equal_compute/selfcon_m_head_bn``: SelfCon-M + head BatchNorm, 20 epochs (issue 23: if the budget allows).
7. ``mixco/simclr_seed0``, ``mixco/simclr_mixco_seed0``: the SimCLR pair.

Every training run records its wall and CPU time summed over all sittings (``summary.json``), the thread count
and the load average; it is probed with ``linear_fast`` on the validation split every ``--curve-every`` epochs,
then on the test split with ``linear_fast``, kNN and the papers' ``linear`` protocol shortened to
``--linear-epochs`` epochs (as the ranking's).

Decision rule of the MixCo experiment, stated before its runs (issue 22) and applied by ``report_experiments.py``:
with d_s = (MoCo v2 + MixCo) - (MoCo v2) of seed s, test top-1 of the backbone under the ``linear`` protocol,
"MixCo helps here" if d_0 > 0 and d_1 > 0 and mean(d) > 1 point; "no measurable effect" if |mean(d)| <= 1 point;
otherwise "hurts" (a mean below -1 point, or above 1 point without both seeds positive: "inconsistent").
SelfCon at equal compute (issue 23): with one seed, a difference under 1 point is "not distinguishable with one
seed"; if an equal-compute comparison (against SupCon or SupCon + head BN) lands within 1.5 points, a second seed
of both its arms is queued.

``python -m benchmarks.experiments.experiments_queue --commit`` from a git worktree at a fixed commit, with ``--results``
pointing into the main checkout (each finished run's JSON is committed there on its own); one thread.

A session's machine does not outlive it: before a session ends, ``--save-progress --commit`` (beside the running
queue, same ``--work-dir`` and ``--results``) packs every unfinished run's newest checkpoint into
``<folder>/progress/<name>.tar.gz`` under ``--results`` and commits it; the next session's queue resumes from it
(``restore_progress``) and deletes it when the run's JSON lands.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.experiments.rank_methods import (
    COMMON,
    MODEL,
    NO_EXITS,
    SELFCON_EXITS,
    SHARED_CIFAR10,
    TRAIN_IMAGES,
    commit_paths,
    prepare_data,
    probe,
    write_and_commit,
)
from benchmarks.harness import RESULTS, ROOT
from timm_selfcon.engine.checkpoint import RECIPE, STATE_DIR, TRAINER_STATE, checkpoint_steps

MOCO_BATCH = 128
LINEAR_EPOCHS = 10
RANKING_EPOCHS = 20
# MoCo v2 (+ MixCo) as the official Tiny-ImageNet scripts, at CPU scale (labelled deviations: 32 px CIFAR stem, the
# 0.31M encoder, queue 4,096, a per-step cosine); lr and key momentum are chosen by the trials
MOCO = dict(model=MODEL, model_kwargs=NO_EXITS, image_size=32, batch_size=MOCO_BATCH, precision="fp32",
            channels_last=True, num_workers=1, log_every_steps=50, weight_decay=1e-4, momentum=0.9, warmup_epochs=0,
            schedule="cosine_per_step", temperature=0.2, projection_dim=128, queue_size=4096,
            augmentation="moco_v2", train_split="train", eval_split="validation")
MOCO_MIX = dict(mix_temperature=0.05, mix_weight=1.0)
MOCO_TRIALS = {"trial_lr0.015_m0.999": dict(lr=0.015, moco_momentum=0.999),  # the official MoCo values
               "trial_lr0.06_m0.99": dict(lr=0.06, moco_momentum=0.99)}  # the CPU recipe's
# SimCLR (+ MixCo) as the official Tiny-ImageNet script (lr 0.15 at batch 128, wd 1e-6; per-step cosine, ours)
SIMCLR = dict(MOCO, lr=0.15, weight_decay=1e-6, temperature=0.5, augmentation="simclr")
for key in ("queue_size",):
    SIMCLR.pop(key)
SIMCLR_MIX = dict(mix_temperature=0.5, mix_weight=1.0)  # 0.5 per view
HEAD_BN = {"method_kwargs": {"head_batchnorm": True}}


@dataclass
class Run:
    """One entry of the queue: its result file ``<folder>/<name>.json`` and how to make it."""

    folder: str
    name: str
    kind: str  # "trial" (validation only), "train" (curves, then test) or "floor" (untrained encoder)
    spec: dict = field(default_factory=dict)
    epochs: int = 0


def backbone_top1(path: Path, split: str, protocol: str) -> float | None:
    """The backbone's last-epoch top-1 of a run's JSON under ``split`` / ``protocol``; None until the run landed."""
    if not path.exists():
        return None
    return json.loads(path.read_text())[split][protocol]["results"]["backbone"]["last"]["top1"]


def trial_winner(results: Path) -> dict | None:
    """lr and key momentum of the MoCo trial with the best validation backbone top-1 (None until both ran)."""
    scores = {name: backbone_top1(results / "mixco" / f"{name}.json", "validation", "linear_fast")
              for name in MOCO_TRIALS}
    if None in scores.values():
        return None
    best = max(scores, key=scores.get)
    return dict(MOCO_TRIALS[best], chosen_by=best, validation_top1=scores)


def equal_compute_epochs(results: Path) -> int | None:
    """The epochs at which SelfCon-S + head BN uses the CPU time of SupCon's 20 epochs (None until measured)."""
    path = results / "equal_compute" / "cost.json"
    return json.loads(path.read_text())["equal_compute_epochs"] if path.exists() else None


SECOND_SEED_GAP = 1.5  # points of `linear` test top-1 (issue 23)


def equal_compute_gaps(results: Path, epochs: int) -> dict[str, float]:
    """SelfCon-S + head BN at equal compute minus each 20-epoch SupCon baseline that has finished, ``linear``
    protocol test top-1 of the backbone: ``{"supcon": ..., "supcon_head_bn": ...}``. SupCon is the ranking's run;
    SupCon + head BN is the fair baseline (the same stabilizer as SelfCon's), issue 23's second question."""
    selfcon = backbone_top1(results / "equal_compute" / f"selfcon_head_bn_e{epochs}.json", "test", "linear")
    baselines = {"supcon": results / "rank" / "linear_main_supcon.json",
                 "supcon_head_bn": results / "equal_compute" / "supcon_head_bn.json"}
    if selfcon is None:
        return {}
    return {name: selfcon - top1 for name, path in baselines.items()
            if (top1 := backbone_top1(path, "test", "linear")) is not None}


def queue(results: Path):
    """The runs in order; phases that wait for an earlier result say so and end the queue for this sitting."""
    for name, values in MOCO_TRIALS.items():
        yield Run("mixco", name, "trial", dict(MOCO, method="moco", seed=0, **values))
    yield Run("mixco", "floor_noexit_seed1", "floor", dict(model=MODEL, model_kwargs=NO_EXITS, seed=1))
    winner = trial_winner(results)
    if winner is None:
        print("MoCo trials unfinished: the pairs wait for their choice", flush=True)
        return
    chosen = dict(lr=winner["lr"], moco_momentum=winner["moco_momentum"])
    for seed in (0, 1):
        yield Run("mixco", f"moco_seed{seed}", "train", dict(MOCO, method="moco", seed=seed, **chosen), RANKING_EPOCHS)
        yield Run("mixco", f"moco_mixco_seed{seed}", "train",
                  dict(MOCO, method="moco_mixco", seed=seed, **chosen, **MOCO_MIX), RANKING_EPOCHS)
    epochs = equal_compute_epochs(results)
    if epochs is not None:
        yield Run("equal_compute", f"selfcon_head_bn_e{epochs}", "train",
                  dict(COMMON, method="selfcon", model_kwargs=SELFCON_EXITS, seed=0, **HEAD_BN), epochs)
    else:
        print("equal_compute/cost.json missing: SelfCon at equal compute waits for bench_method_cost.py", flush=True)
    yield Run("equal_compute", "supcon_head_bn", "train",
              dict(COMMON, method="supcon", model_kwargs=NO_EXITS, seed=0, **HEAD_BN), RANKING_EPOCHS)
    yield Run("equal_compute", "supcon_s_head_bn", "train",
              dict(COMMON, method="supcon_s", model_kwargs=NO_EXITS, seed=0, **HEAD_BN), RANKING_EPOCHS)
    if epochs is None:
        return
    # too close for one seed: a second seed of both arms of each equal-compute comparison within the margin
    close = [name for name, gap in equal_compute_gaps(results, epochs).items() if abs(gap) < SECOND_SEED_GAP]
    if close:
        yield Run("equal_compute", f"selfcon_head_bn_e{epochs}_seed1", "train",
                  dict(COMMON, method="selfcon", model_kwargs=SELFCON_EXITS, seed=1, **HEAD_BN), epochs)
    if "supcon" in close:
        yield Run("equal_compute", "supcon_seed1", "train",
                  dict(COMMON, method="supcon", model_kwargs=NO_EXITS, seed=1), RANKING_EPOCHS)
    if "supcon_head_bn" in close:
        yield Run("equal_compute", "supcon_head_bn_seed1", "train",
                  dict(COMMON, method="supcon", model_kwargs=NO_EXITS, seed=1, **HEAD_BN), RANKING_EPOCHS)
    # issue 23 asks for SelfCon-M only "if the queue's budget allows": after what it requires
    yield Run("equal_compute", "selfcon_m_head_bn", "train",
              dict(COMMON, method="selfcon_m", model_kwargs=SELFCON_EXITS, seed=0, **HEAD_BN), RANKING_EPOCHS)
    yield Run("mixco", "simclr_seed0", "train", dict(SIMCLR, method="simclr", seed=0), RANKING_EPOCHS)
    yield Run("mixco", "simclr_mixco_seed0", "train", dict(SIMCLR, method="simclr_mixco", seed=0, **SIMCLR_MIX),
              RANKING_EPOCHS)


def test_probes(source, args: argparse.Namespace, out_dir: Path, exits: bool, **extra) -> dict:
    """The final numbers: ``linear_fast``, kNN (and early exit) on the test split, then the ``linear`` protocol."""
    start = time.perf_counter()
    protocols = ("linear_fast", "knn", "early_exit") if exits else ("linear_fast", "knn")
    results = probe(source, args.data_dir, "test", protocols, out_dir, **extra)
    results.update(probe(source, args.data_dir, "test", ("linear",), out_dir / "linear", epochs=args.linear_epochs,
                         **extra))
    results["linear"]["protocol_note"] = (f"the papers' linear protocol shortened to {args.linear_epochs} epochs "
                                          "(theirs: 100)")
    results["probe_seconds"] = time.perf_counter() - start
    return results


def run_floor(run: Run, args: argparse.Namespace) -> dict:
    out_dir = Path(args.work_dir) / run.folder / run.name
    extra = dict(model_kwargs=run.spec["model_kwargs"], seed=run.spec["seed"])
    return dict(name=run.name, recipe=dict(run.spec, method="untrained"), seed=run.spec["seed"], epochs=0,
                validation=probe(run.spec["model"], args.data_dir, "validation", ("linear_fast",), out_dir, **extra),
                test=test_probes(run.spec["model"], args, out_dir, exits=False, **extra))


# Carrying an unfinished run from one machine to the next, through git. A session's machine is fresh: the run
# folders do not outlive it, so a run longer than what is left of a session would start over every session.
# What travels: the run folder's config.yaml, run_info.json and metrics.jsonl; its newest checkpoint, whole
# (weights, optimizer, RNG states, trainer_state.json with the time and CPU of every sitting), from which training
# resumes exactly as after a kill on the same machine; of the earlier checkpoints probed on the validation split,
# only what evaluation reads (about 1.4 MB each for the 0.31M-parameter encoder). 3.5-8 MB per run.
RUN_FILES = (RECIPE, "run_info.json", "metrics.jsonl")
#: what evaluation reads from a checkpoint: enough for the validation curve of an earlier epoch
PROBE_FILES = (RECIPE, TRAINER_STATE, f"{STATE_DIR}/model.safetensors")


def checkpoint_step(path: Path) -> int:
    """The step of a ``ckpt-<step>`` name inside an archive (``-1`` for a name that is not one)."""
    prefix, _, step = path.name.partition("-")
    return int(step) if prefix == "ckpt" and step.isdigit() else -1


def newest_step(run_dir: Path) -> int:
    """The step of the run's newest complete checkpoint; ``-1`` when it has none."""
    found = checkpoint_steps(run_dir)
    return found[-1][0] if found else -1


def archive_step(archive: Path) -> int:
    """The newest checkpoint's step inside an archive written by :func:`save_progress`."""
    with tarfile.open(archive) as tar:
        return max(checkpoint_step(Path(name.split("/", 1)[0])) for name in tar.getnames())


def save_progress(run_dir: Path, archive: Path, curve_steps: Iterable[int]) -> int | None:
    """Pack ``run_dir``'s newest checkpoint (whole), the probe files of its checkpoints at ``curve_steps`` before it
    and its run files into ``archive`` (written atomically); the newest step, or None when there is no checkpoint
    yet (nothing is written)."""
    step = newest_step(run_dir)
    if step < 0:
        return None
    newest = f"ckpt-{step}"
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=archive.parent, prefix=f".{archive.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for name in RUN_FILES:
                if (run_dir / name).is_file():
                    tar.add(run_dir / name, arcname=name)
            tar.add(run_dir / newest, arcname=newest)
            for earlier in sorted(s for s in set(curve_steps) if 0 < s < step):
                for name in PROBE_FILES:
                    if (run_dir / f"ckpt-{earlier}" / name).is_file():
                        tar.add(run_dir / f"ckpt-{earlier}" / name, arcname=f"ckpt-{earlier}/{name}")
        os.replace(tmp, archive)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return step


def restore_progress(archive: Path, run_dir: Path) -> int | None:
    """Unpack ``archive`` into ``run_dir`` when it holds a newer checkpoint than ``run_dir`` has; the restored step,
    or None when ``run_dir`` was as far already (left as it is). A ``run_dir`` that is behind is kept beside it as
    ``<name>.superseded-<time>``, never deleted."""
    step = archive_step(archive)
    if newest_step(run_dir) >= step:
        return None
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}.restore-"))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        os.symlink(f"ckpt-{step}", staging / "last")
    except BaseException:
        shutil.rmtree(staging)
        raise
    if run_dir.exists():
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.superseded-{time.strftime('%Y%m%d-%H%M%S')}"))
    staging.rename(run_dir)
    return step


def progress_archive(results: Path, run: Run) -> Path:
    """Where an unfinished run's progress travels between machines (see :func:`save_progress`)."""
    return results / run.folder / "progress" / f"{run.name}.tar.gz"


def curve_steps(run: Run, curve_every: int) -> list[int]:
    """The steps of the checkpoints probed on the validation split after training (every ``curve_every`` epochs)."""
    steps_per_epoch = TRAIN_IMAGES // run.spec["batch_size"]
    return [epoch * steps_per_epoch for epoch in range(curve_every, run.epochs + 1, curve_every)]


def save_all_progress(args: argparse.Namespace, results: Path) -> list[Path]:
    """Pack every unfinished run that has a checkpoint (``--save-progress``); the archives written."""
    written = []
    for run in queue(results):
        run_dir = Path(args.work_dir) / run.folder / run.name
        if run.kind == "floor" or (results / run.folder / f"{run.name}.json").exists() or not run_dir.is_dir():
            continue
        archive = progress_archive(results, run)
        step = save_progress(run_dir, archive, curve_steps(run, args.curve_every) if run.kind == "train" else [])
        if step is not None:
            print(f"saved {run.folder}/{run.name} at step {step}: {archive} ({archive.stat().st_size / 2**20:.1f} MB)")
            written.append(archive)
    return written


def run_training(run: Run, args: argparse.Namespace) -> dict:
    """Train ``run`` (resuming a killed sitting, here or, from its progress archive, on another machine), then
    probe it; the result's dict."""
    from timm_selfcon.config import resolve_config
    from timm_selfcon.engine.train import train

    out_dir = Path(args.work_dir) / run.folder / run.name
    archive = progress_archive(Path(args.results), run)
    if archive.exists():
        restored = restore_progress(archive, out_dir)
        if restored is not None:
            print(f"restored {run.folder}/{run.name} at step {restored} from {archive}", flush=True)
    steps_per_epoch = TRAIN_IMAGES // run.spec["batch_size"]
    values = dict(run.spec, data=str(args.data_dir), epochs=run.epochs, output_dir=str(out_dir),
                  save_every_steps=steps_per_epoch, resume="auto",
                  provenance="ours: benchmarks/experiments/experiments_queue.py, CPU-scale experiment")
    config = resolve_config(None, values)
    summary = train(config)
    run_info = json.loads((out_dir / "run_info.json").read_text())
    metrics = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    result = dict(name=run.name, method=config.method, seed=config.seed, epochs=run.epochs, recipe=config.to_dict(),
                  pairing={k: v for k, v in run_info.items() if k.endswith("_sha256")},
                  run_info=run_info, train_summary=summary, loss_curve=[(m["step"], m["loss"]) for m in metrics],
                  train_images_per_s=[m["images_per_s"] for m in metrics][-20:])
    if run.kind == "trial":
        result["validation"] = probe(out_dir, args.data_dir, "validation", ("linear_fast",), out_dir)
        return result
    curve = {}  # validation split only: the test split is read once, below
    for epoch in range(args.curve_every, run.epochs + 1, args.curve_every):
        checkpoint = out_dir / f"ckpt-{epoch * steps_per_epoch}"
        report = probe(checkpoint, args.data_dir, "validation", ("linear_fast",), out_dir / f"epoch{epoch}")
        curve[epoch] = {head: v["last"]["top1"] for head, v in report["linear_fast"]["results"].items()}
    result["validation_linear_fast_per_epoch"] = curve
    result["test"] = test_probes(out_dir, args, out_dir, exits=bool(config.model_kwargs.get("exit_stages")))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED_CIFAR10), help="folder with CIFAR-10 train.parquet, test.parquet")
    parser.add_argument("--trial-epochs", type=int, default=5)
    parser.add_argument("--curve-every", type=int, default=5)
    parser.add_argument("--linear-epochs", type=int, default=LINEAR_EPOCHS)
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "experiments"))
    parser.add_argument("--results", default=str(RESULTS),
                        help="results root: writes mixco/<run>.json and equal_compute/<run>.json under it")
    parser.add_argument("--only", nargs="*", default=None, help="run only these names")
    parser.add_argument("--dry-run", action="store_true", help="list what would run, and stop")
    parser.add_argument("--commit", action="store_true", help="commit each finished run's JSON where it is written")
    parser.add_argument("--save-progress", action="store_true",
                        help="pack every unfinished run's newest checkpoint under --results for the next machine "
                             "(committed with --commit), and stop")
    args = parser.parse_args(argv)
    for option in ("trial_epochs", "curve_every", "linear_epochs"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    source = Path(args.data)
    if not (source / "train.parquet").is_file() or not (source / "test.parquet").is_file():
        parser.error(f"--data {str(source)!r} must hold train.parquet and test.parquet (CIFAR-10)")
    results = Path(args.results)
    if args.dry_run:
        for run in queue(results):
            done = (results / run.folder / f"{run.name}.json").exists()
            archive = progress_archive(results, run)
            carried = f", carried to step {archive_step(archive)}" if not done and archive.exists() else ""
            print(f"{'done' if done else 'todo'} {run.folder}/{run.name} ({run.kind}, {run.epochs or args.trial_epochs} "
                  f"epochs{carried})")
        return 0
    if args.save_progress:
        written = save_all_progress(args, results)
        if args.commit and written:
            commit_paths(written, f"Queue progress: {', '.join(p.name for p in written)} (experiments_queue.py "
                         "--save-progress; the next session resumes them)")
        return 0
    args.data_dir = prepare_data(source, Path(args.work_dir) / "cifar10")
    for run in queue(results):
        path = results / run.folder / f"{run.name}.json"
        if (args.only and run.name not in args.only) or path.exists():
            continue
        print(f"run {run.folder}/{run.name}", flush=True)
        if run.kind == "floor":
            result = run_floor(run, args)
        else:
            if run.kind == "trial":
                run = Run(run.folder, run.name, run.kind, copy.deepcopy(run.spec), args.trial_epochs)
            result = run_training(run, args)
        result.update(kind=run.kind, load_average_at_end=os.getloadavg(),
                      data=dict(source=str(source), train=TRAIN_IMAGES))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_and_commit(path, result, args.commit, label=f"Experiment run ({run.folder})")
        archive = progress_archive(results, run)
        if archive.exists():  # landed: its carried progress is no longer needed
            archive.unlink()
            if args.commit:
                commit_paths([archive], f"Queue progress of {run.folder}/{run.name} removed: its JSON landed")
    return 0



if __name__ == "__main__":
    sys.exit(main())
