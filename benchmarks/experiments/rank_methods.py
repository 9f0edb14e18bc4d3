"""Can a CPU rank CE, SupCon and SelfCon? A resumable queue of runs on the full CIFAR-10 train split.

Issue "SelfCon that learns", item 3. Everything here is ours (CPU scale), not the papers' setting:

- Encoder: ``selfcon_resnet10_w16_cifar`` (ResNet-10 at a quarter width, 0.31M parameters; fc exit after
  layer2 for SelfCon, no exit for CE and SupCon), fp32, channels_last, batch 256.
- Data: the shared CIFAR-10 parquet (``--data``): train rows 0..44,999 train the encoders and the probes,
  rows 45,000..49,999 are the ``validation`` split (stabilizer selection only), the 10,000 test images give
  the reported numbers.
- Optimisation, one recipe for every method: the official SelfCon CIFAR values (SGD momentum 0.9, wd 1e-4,
  temperature 0.1 / base 0.07, per-iteration warm-up from 0.01) with lr 0.5 scaled linearly to batch 256
  (0.125), a one-epoch warm-up and a per-step cosine over the run. CE uses the crop + flip augmentation, the
  contrastive methods SupCon's.

Phases, in order (a run whose JSON exists under ``--results`` is skipped; a killed run resumes from its last
per-epoch checkpoint with ``resume=auto``):

1. ``floor_*``: each initial encoder untrained (SelfCon's with its exit, CE's and SupCon's without), probed the
   same way: the floors every gain is read against.
2. ``sweep_*``: SelfCon-S for ``--sweep-epochs`` epochs without a stabilizer and with each candidate
   (gradient clipping, a separate lr warm-up of the projection heads, BatchNorm in the projection heads, LARS);
   the winner is the candidate with the best backbone ``linear_fast`` top-1 on the **validation** split.
3. ``main_*``: CE, SupCon, SelfCon-S without a stabilizer and SelfCon-S with the winner, ``--epochs`` epochs
   each; ``linear_fast`` (backbone, exit, ensemble), kNN and early exit on the test split, and ``linear_fast``
   every ``--curve-every`` epochs for the accuracy-versus-epoch curve.
4. ``linear_*``: the papers' ``linear`` protocol (frozen encoder, features recomputed every epoch from crop + flip,
   SGD lr 3, x0.1 at 60% and 80% of the epochs) on each main run's final checkpoint, then on the floors, for
   ``--linear-epochs`` epochs (default 10: the papers' 100 take 40-60 minutes per encoder on this 2-core CPU,
   six encoders beyond the ranking's budget; other counts are named ``linear_e<epochs>_<run>``). The final
   checkpoint is ``<work-dir>/<run>/last``, or the source given with ``--final RUN=SOURCE`` (a run folder or
   ``local-dir:`` export) for a run whose folder is gone; a run with neither is skipped, said.

``python -m benchmarks.experiments.rank_methods --commit`` (run it from a git worktree at a fixed commit, with
``--results`` pointing into the main checkout: every finished run's JSON is committed there on its own).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import RESULTS, ROOT, write_json
from timm_selfcon.fileio import atomic_path

SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"
MODEL = "selfcon_resnet10_w16_cifar"
SELFCON_EXITS = {"exit_stages": [2], "sub_network": "fc"}
NO_EXITS = {"exit_stages": []}
BATCH_SIZE = 256
TRAIN_IMAGES = 45_000
STEPS_PER_EPOCH = TRAIN_IMAGES // BATCH_SIZE  # drop_last: 175
LINEAR_EPOCHS = 10
COMMON = dict(model=MODEL, image_size=32, batch_size=BATCH_SIZE, precision="fp32", channels_last=True, num_workers=1,
              log_every_steps=25, lr=0.125, weight_decay=1e-4, momentum=0.9, warmup_epochs=1, warmup_from=0.01,
              schedule="cosine_per_step", temperature=0.1, base_temperature=0.07, train_split="train",
              eval_split="validation")
# The candidates against SelfCon's collapse (recipes/README.md); each changes one thing of COMMON.
STABILIZERS: dict[str, dict] = {
    "none": {},
    "clip": {"clip_grad_norm": 1.0},
    "head_warmup": {"head_lr_warmup_steps": STEPS_PER_EPOCH},
    "head_bn": {"method_kwargs": {"head_batchnorm": True}},
    "lars": {"optimizer": "lars"},
}


def floor_specs() -> dict[str, dict]:
    return {"floor_selfcon": dict(model=MODEL, model_kwargs=SELFCON_EXITS, seed=0),
            "floor_noexit": dict(model=MODEL, model_kwargs=NO_EXITS, seed=0)}


def sweep_specs() -> dict[str, dict]:
    return {f"sweep_{name}": dict(COMMON, method="selfcon", model_kwargs=SELFCON_EXITS, seed=0, **copy.deepcopy(extra))
            for name, extra in STABILIZERS.items()}


def main_specs(winner: str) -> dict[str, dict]:
    # SelfCon with the winner first, SupCon (twice the images per step) third: a sitting that ends early has the
    # most informative runs
    specs = {
        f"main_selfcon_{winner}": dict(COMMON, method="selfcon", model_kwargs=SELFCON_EXITS, seed=0,
                                       **STABILIZERS[winner]),
        "main_ce": dict(COMMON, method="ce", model_kwargs=NO_EXITS, augmentation="ce", seed=0),
        "main_supcon": dict(COMMON, method="supcon", model_kwargs=NO_EXITS, seed=0),
        "main_selfcon_none": dict(COMMON, method="selfcon", model_kwargs=SELFCON_EXITS, seed=0),
    }
    return copy.deepcopy(specs)


def prepare_data(source: Path, target: Path) -> Path:
    """``train`` (rows 0..44,999 of the shared train split), ``validation`` (the rest) and ``test`` parquet files."""
    import datasets

    if (target / "test.parquet").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    train = datasets.load_dataset("parquet", data_files=str(source / "train.parquet"), split="train")
    for name, rows in (("train", range(TRAIN_IMAGES)), ("validation", range(TRAIN_IMAGES, len(train)))):
        with atomic_path(target / f"{name}.parquet") as tmp:
            train.select(rows).to_parquet(str(tmp))
    test = datasets.load_dataset("parquet", data_files=str(source / "test.parquet"), split="train")
    with atomic_path(target / "test.parquet") as tmp:
        test.to_parquet(str(tmp))
    return target


def probe(source, data: Path, split: str, protocols: tuple[str, ...], out_dir: Path, **extra) -> dict:
    from timm_selfcon.engine.evaluate import evaluate

    results = {}
    for protocol in protocols:
        report = evaluate(source, protocol=protocol, data=str(data), train_split="train", split=split,
                          val_fraction=0.1, num_workers=1, batch_size=512, output_dir=str(out_dir / split), **extra)
        results[protocol] = {k: report.get(k) for k in ("results", "hyperparameters", "early_exit", "history")}
    return results


def run_floor(name: str, spec: dict, args: argparse.Namespace) -> dict:
    out_dir = Path(args.work_dir) / name
    extra = dict(model_kwargs=spec["model_kwargs"], seed=spec["seed"])
    exits = ("early_exit",) if spec["model_kwargs"].get("exit_stages") else ()
    return dict(name=name, recipe=dict(spec, method="untrained"), train_seconds=0.0,
                validation=probe(spec["model"], args.data_dir, "validation", ("linear_fast",), out_dir, **extra),
                test=probe(spec["model"], args.data_dir, "test", ("linear_fast", "knn", *exits), out_dir, **extra))


def run_training(name: str, spec: dict, epochs: int, args: argparse.Namespace, final_split: str) -> dict:
    from timm_selfcon.config import resolve_config
    from timm_selfcon.engine.train import train

    out_dir = Path(args.work_dir) / name
    values = dict(spec, data=str(args.data_dir), epochs=epochs, output_dir=str(out_dir),
                  save_every_steps=STEPS_PER_EPOCH, resume="auto",
                  provenance="ours: benchmarks/experiments/rank_methods.py, CPU-scale method ranking")
    config = resolve_config(None, values)
    start = time.perf_counter()
    summary = train(config)
    seconds = time.perf_counter() - start
    metrics = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    exits = ("early_exit",) if spec["method"] == "selfcon" else ()
    protocols = ("linear_fast",) if final_split == "validation" else ("linear_fast", "knn", *exits)
    results = dict(name=name, recipe=config.to_dict(), train_seconds_this_sitting=seconds, train_summary=summary,
                   loss_curve=[(m["step"], m["loss"]) for m in metrics],
                   train_images_per_s=[m["images_per_s"] for m in metrics][-20:])
    results[final_split] = probe(out_dir, args.data_dir, final_split, protocols, out_dir)
    if final_split == "test":
        curve = {}
        for epoch in range(args.curve_every, epochs, args.curve_every):
            report = probe(out_dir / f"ckpt-{epoch * STEPS_PER_EPOCH}", args.data_dir, "test", ("linear_fast",),
                           out_dir / f"epoch{epoch}")
            curve[epoch] = {h: v["last"]["top1"] for h, v in report["linear_fast"]["results"].items()}
        curve[epochs] = {h: v["last"]["top1"] for h, v in results["test"]["linear_fast"]["results"].items()}
        results["linear_fast_per_epoch"] = curve
    return results


def run_linear(run: str, source: str, extra: dict, args: argparse.Namespace) -> dict:
    """The ``linear`` protocol on the test split for ``source`` (the final checkpoint of ``run``)."""
    start = time.perf_counter()
    results = probe(source, args.data_dir, "test", ("linear",), Path(args.work_dir) / f"linear_{run}",
                    epochs=args.linear_epochs, **extra)
    return dict(name=linear_name(run, args.linear_epochs), run=run, source=str(source), epochs=args.linear_epochs,
                protocol_note=f"the papers' linear protocol shortened to {args.linear_epochs} epochs (theirs: 100)",
                probe_seconds=time.perf_counter() - start, test=results)


def linear_name(run: str, epochs: int) -> str:
    return f"linear_{run}" if epochs == LINEAR_EPOCHS else f"linear_e{epochs}_{run}"


def final_checkpoints(results_dir: Path, work_dir: Path, given: dict[str, str]) -> dict[str, tuple[str, dict]]:
    """Run name -> (encoder source, evaluate kwargs) for the ``linear`` phase: finished main runs first, then floors."""
    found = {}
    for path in sorted(results_dir.glob("main_*.json")):
        run = path.stem
        source = given.get(run) or (str(work_dir / run) if (work_dir / run / "last").exists() else None)
        if source is None:
            print(f"linear: no final checkpoint of {run} (give one with --final {run}=SOURCE); skipped", flush=True)
            continue
        found[run] = (source, {})
    for run, spec in floor_specs().items():
        found[run] = (spec["model"], dict(model_kwargs=spec["model_kwargs"], seed=spec["seed"]))
    return found


def sweep_winner(results_dir: Path) -> str | None:
    """The stabilizer whose sweep run has the best backbone top-1 on the validation split (``none`` excluded)."""
    scores = {}
    for name in STABILIZERS:
        path = results_dir / f"sweep_{name}.json"
        if not path.exists():
            return None
        run = json.loads(path.read_text())
        scores[name] = run["validation"]["linear_fast"]["results"]["backbone"]["last"]["top1"]
    return max((s, n) for n, s in scores.items() if n != "none")[1]


def write_and_commit(path: Path, results: dict, commit: bool, label: str = "Method-ranking run") -> None:
    write_json(path, results, default=str)
    if commit:
        commit_paths([path], f"{label} {path.stem} ({Path(sys.argv[0]).as_posix()})")


def commit_paths(paths: list[Path], message: str) -> None:
    """Commit exactly ``paths`` (added, changed or deleted) in the checkout that holds them, retrying while another
    git command holds the index lock."""
    repo = paths[0].parent
    while not repo.exists():
        repo = repo.parent
    for attempt in range(20):
        add = subprocess.run(["git", "add", "-A", "--", *map(str, paths)], cwd=repo, capture_output=True)
        if add.returncode == 0 and subprocess.run(["git", "commit", "-q", "-m", message, "--", *map(str, paths)],
                                                  cwd=repo, capture_output=True).returncode == 0:
            return
        time.sleep(3 + attempt)
    print(f"could not commit {', '.join(map(str, paths))}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED_CIFAR10), help="folder with CIFAR-10 train.parquet, test.parquet")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--sweep-epochs", type=int, default=3)
    parser.add_argument("--curve-every", type=int, default=5)
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "rank"))
    parser.add_argument("--results", default=str(RESULTS / "rank"))
    parser.add_argument("--only", nargs="*", default=None, help="run only these names")
    parser.add_argument("--commit", action="store_true", help="commit each finished run's JSON where it is written")
    parser.add_argument("--linear-epochs", type=int, default=LINEAR_EPOCHS,
                        help="epochs of the linear phase (0: skip it; other than %(default)s: results named "
                             "linear_e<epochs>_<run>)")
    parser.add_argument("--final", nargs="*", default=[], metavar="RUN=SOURCE",
                        help="final checkpoint of a main run whose folder under --work-dir is gone")
    args = parser.parse_args(argv)
    if args.linear_epochs < 0:
        parser.error(f"--linear-epochs must be >= 0, got {args.linear_epochs}")
    given = dict(item.split("=", 1) for item in args.final if "=" in item)
    if len(given) != len(args.final) or not all(run.startswith("main_") for run in given):
        parser.error(f"--final takes RUN=SOURCE with RUN a main run (main_ce, ...), got {args.final}")
    missing = [f"{run}={source}" for run, source in given.items() if not Path(source.removeprefix("local-dir:")).exists()]
    if missing:
        parser.error(f"--final: no such checkpoint or export folder: {', '.join(missing)}")
    source = Path(args.data)
    if not (source / "train.parquet").is_file() or not (source / "test.parquet").is_file():
        parser.error(f"--data {str(source)!r} must hold train.parquet and test.parquet (CIFAR-10)")
    results_dir = Path(args.results)
    args.data_dir = prepare_data(source, Path(args.work_dir) / "cifar10")

    def queue():
        yield from ((n, s, "floor") for n, s in floor_specs().items())
        yield from ((n, s, "sweep") for n, s in sweep_specs().items())
        winner = sweep_winner(results_dir)
        if winner is None:
            print("sweep unfinished: the main runs wait for its winner")
            return
        print(f"stabilizer chosen on the validation split: {winner}")
        yield from ((n, s, "main") for n, s in main_specs(winner).items())

    for name, spec, phase in queue():
        path = results_dir / f"{name}.json"
        if (args.only and name not in args.only) or path.exists():
            continue
        print(f"run {name}", flush=True)
        if phase == "floor":
            results = run_floor(name, spec, args)
        elif phase == "sweep":
            results = run_training(name, spec, args.sweep_epochs, args, "validation")
        else:
            results = run_training(name, spec, args.epochs, args, "test")
        results.update(phase=phase, load_average=os.getloadavg(), data=dict(source=str(source), train=TRAIN_IMAGES))
        write_and_commit(path, results, args.commit)
    if args.linear_epochs:
        for run, (encoder, extra) in final_checkpoints(results_dir, Path(args.work_dir), given).items():
            path = results_dir / f"{linear_name(run, args.linear_epochs)}.json"
            if (args.only and path.stem not in args.only) or path.exists():
                continue
            print(f"run {path.stem} ({encoder})", flush=True)
            results = run_linear(run, encoder, extra, args)
            results.update(phase="linear", load_average=os.getloadavg())
            write_and_commit(path, results, args.commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
