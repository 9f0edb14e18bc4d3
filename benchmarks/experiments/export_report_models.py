"""Export the reported SelfCon and MixCo encoders with ``timm-selfcon export`` and load them back with ``local-dir:``.

- The SelfCon run of the method ranking (``results/rank/main_selfcon_<stabilizer>.json``, the stabilizer that
  ``rank_methods.py`` chose on the validation split, never on the test split) is exported with its
  ``linear_fast`` classifiers and its exit into ``benchmarks/results/<model>-cifar10-cpu-rank/`` (committed: the
  only exported folder there, under 5 MB).
- The MoCo v2 + MixCo run of seed 0 of the MixCo experiment (``results/mixco/moco_mixco_seed0.json``, written by
  ``experiments_queue.py``; ``--mixco-run`` names another) is exported the same way, with its test-split
  ``linear_fast`` classifiers, into ``benchmarks/results/<model>-moco_mixco-cifar10-cpu/`` (committed, under 5 MB).

Each export is then loaded with ``timm.create_model("local-dir:...")`` and run over the test split with timm's
eval transform from the exported ``pretrained_cfg``; the top-1 of every head must match what the run's JSON
reports for the same classifiers (the probe evaluated them on cached features of the same images). Then an
independent check: a linear probe (``timm_selfcon.engine.probe``) of the exported backbone's frozen features of
the first 10,000 CIFAR-10 train images, tested on the 10,000 test images, beside the same probe of the same
architecture created with ``pretrained=False``; the export must lead by ``MIN_GAIN_POINTS``. Results go to
``benchmarks/results/exported_models.json``.

Usage: ``python -m benchmarks.experiments.export_report_models [--data ../shared/data/cifar10] [--only selfcon|mixco]
[--mixco-run moco_mixco_seed0]`` (``--only`` keeps the other entry of the existing JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.harness import RESULTS, ROOT, write_json

MIXCO = RESULTS / "mixco"
RANK = RESULTS / "rank"
SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"
SIZE_LIMIT_BYTES = 5_000_000
TOLERANCE_POINTS = 0.1  # top-1 % points: features recomputed in a different batch order may round differently
MIN_GAIN_POINTS = 15.0
PROBE_TRAIN_IMAGES = 10_000


def best_selfcon_run() -> dict:
    """The ranking's SelfCon run with the stabilizer chosen on the validation split."""
    from benchmarks.experiments.rank_methods import sweep_winner

    winner = sweep_winner(RANK)
    path = RANK / f"main_selfcon_{winner}.json"
    if winner is None or not path.exists():
        raise SystemExit(f"the ranking's SelfCon run has not finished ({path}; "
                         f"benchmarks/experiments/rank_methods.py writes it)")
    run = json.loads(path.read_text())
    run["linear_fast"] = run["test"]["linear_fast"]
    return run


def export_run(run: dict, out_dir: Path, eval_dir: Path | None = None) -> None:
    run_dir = Path(run["recipe"]["output_dir"])
    extra = ["--eval-dir", str(eval_dir)] if eval_dir else []
    subprocess.run([sys.executable, "-m", "timm_selfcon.cli", "export", str(run_dir), str(out_dir),
                    "--protocol", "linear_fast", *extra], check=True, cwd=ROOT)


@torch.no_grad()
def heads_top1(folder: Path, data: Path) -> dict[str, float]:
    """Top-1 % of every head of ``local-dir:folder`` (and the ensemble, for multi-exit models) on the test split."""
    import timm
    from timm.data import create_transform, resolve_data_config

    import timm_selfcon  # noqa: F401
    from timm_selfcon.data import load_image_dataset

    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    transform = create_transform(**resolve_data_config(model=model), is_training=False)
    test = load_image_dataset(str(data), "test")
    image_column = "img" if "img" in test.column_names else "image"
    names = [f"exit_{k}" for k in range(getattr(model, "num_exits", 0))] + ["backbone"]  # forward_exit_logits order
    correct = dict.fromkeys([*names, "ensemble"] if len(names) > 1 else names, 0)
    for start in range(0, len(test), 500):
        rows = test[start:start + 500]
        images = torch.stack([transform(image.convert("RGB")) for image in rows[image_column]])
        labels = torch.tensor(rows["label"])
        logits = model.forward_exit_logits(images) if len(names) > 1 else [model(images)]
        for name, head_logits in zip(names, logits, strict=True):
            correct[name] += int((head_logits.argmax(1) == labels).sum())
        if len(names) > 1:
            correct["ensemble"] += int((model(images).argmax(1) == labels).sum())
    return {name: 100.0 * count / len(test) for name, count in correct.items()}


def probe_against_untrained(folder: Path, data: Path) -> dict:
    """Linear probe of the exported backbone and of an untrained one (``pretrained=False``, seed 0), both on frozen
    features of the first ``PROBE_TRAIN_IMAGES`` train images, tested on the test split."""
    import timm
    from timm.data import resolve_data_config

    import timm_selfcon  # noqa: F401
    from timm_selfcon.data import ContrastiveImageDataset, build_eval_loader, build_transform, load_image_dataset
    from timm_selfcon.engine.probe import extract_features, train_linear_probe

    exported = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0)
    torch.manual_seed(0)
    model_args = {k: v for k, v in json.loads((folder / "config.json").read_text()).get("model_args", {}).items()
                  if k != "num_classes"}
    untrained = timm.create_model(exported.pretrained_cfg["architecture"], pretrained=False, num_classes=0, **model_args)
    cfg = resolve_data_config(model=exported)
    transform = build_transform("eval", cfg["input_size"][-1], cfg["mean"], cfg["std"])
    splits = {"train": load_image_dataset(str(data), "train").select(range(PROBE_TRAIN_IMAGES)),
              "test": load_image_dataset(str(data), "test")}
    loaders = {name: build_eval_loader(ContrastiveImageDataset(hf, transform, "img", "label", seed=0), 500, 1)
               for name, hf in splits.items()}
    top1 = {}
    for name, encoder in (("exported", exported), ("untrained", untrained)):
        train_x, train_y = extract_features(encoder, loaders["train"], desc=f"{name} train")
        test_x, test_y = extract_features(encoder, loaders["test"], desc=f"{name} test")
        top1[name] = train_linear_probe(train_x, train_y, test_x, test_y, epochs=100, seed=0).top1
    gain = top1["exported"] - top1["untrained"]
    if gain < MIN_GAIN_POINTS:
        raise SystemExit(f"{folder}: the exported backbone leads an untrained one by {gain:.2f} points "
                         f"({top1}), less than {MIN_GAIN_POINTS}")
    return dict(protocol=f"linear probe (timm_selfcon.engine.probe, 100 epochs) on frozen backbone features of the "
                         f"first {PROBE_TRAIN_IMAGES} train images, top-1 % on the test split",
                top1=top1, gain_points=gain)


def check(run: dict, folder: Path, data: Path | None = None) -> dict:
    data = data or Path(run["recipe"]["data"])
    measured = heads_top1(folder, data)
    reported = {head: value["last"]["top1"] for head, value in run["linear_fast"]["results"].items()}
    size = (folder / "model.safetensors").stat().st_size
    entry = {"run": run["name"], "folder": str(folder.relative_to(ROOT)), "architecture": run["recipe"]["model"],
             "model_safetensors_bytes": size, "files": sorted(p.name for p in folder.iterdir()),
             "local_dir_top1": measured, "run_json_linear_fast_top1": reported,
             "max_difference_points": max(abs(measured[h] - reported[h]) for h in measured)}
    if entry["max_difference_points"] > TOLERANCE_POINTS:
        raise SystemExit(f"{folder}: the loaded model's accuracy {measured} differs from the run's {reported}")
    return entry


def export_and_check(run: dict, folder: Path, data: Path, chosen_by: str) -> dict:
    """Export ``run`` with its test-split ``linear_fast`` classifiers into ``folder``, reload it and check it."""
    export_run(run, folder, Path(run["recipe"]["output_dir"]) / "test" / "eval")  # the queues' test probes
    entry = check(run, folder, data)
    entry["chosen_by"] = chosen_by
    if entry["model_safetensors_bytes"] >= SIZE_LIMIT_BYTES:
        raise SystemExit(f"{folder} is {entry['model_safetensors_bytes']} bytes: over the 5 MB limit")
    entry["against_untrained"] = probe_against_untrained(folder, data)
    return entry


def mixco_run(name: str) -> dict:
    """A finished run of the MixCo experiment, its test ``linear_fast`` result where ``check`` reads it."""
    path = MIXCO / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"the MixCo run {name} has not finished ({path}; "
                         f"benchmarks/experiments/experiments_queue.py writes it)")
    run = json.loads(path.read_text())
    if not Path(run["recipe"]["output_dir"]).is_dir():
        raise SystemExit(f"{name}'s run folder {run['recipe']['output_dir']} is not on this machine")
    run["linear_fast"] = run["test"]["linear_fast"]
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_CIFAR10, help="CIFAR-10 train.parquet and test.parquet")
    parser.add_argument("--mixco-run", default="moco_mixco_seed0")
    parser.add_argument("--only", choices=("selfcon", "mixco"), default=None,
                        help="export and check one of the two (the other's entry in the JSON is kept)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = RESULTS / "exported_models.json"
    report = json.loads(out.read_text()) if args.only and out.exists() else {}
    if args.only != "mixco":
        selfcon = best_selfcon_run()
        report["selfcon"] = export_and_check(
            selfcon, RESULTS / f"{selfcon['recipe']['model']}-cifar10-cpu-rank", args.data,
            "the ranking's SelfCon run with the stabilizer chosen on the validation split (no test-split selection)")
    if args.only != "selfcon":
        mixco = mixco_run(args.mixco_run)
        report["mixco"] = export_and_check(
            mixco, RESULTS / f"{mixco['recipe']['model']}-{mixco['method']}-cifar10-cpu", args.data,
            f"seed {mixco['seed']} of the MixCo experiment (the seed fixed before the runs; no test-split selection)")
    print(json.dumps(report, indent=2))
    write_json(out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
