"""Export the reproduction report's models with ``timm-selfcon export`` and load them back with ``local-dir:``.

- The best SelfCon run of the report (``results/runs/selfcon_seed*.json``, chosen by the ensemble probe's
  accuracy on the validation split, never on the test split) is exported with its ``linear_fast`` classifiers and
  its exit into ``benchmarks/results/<name>/`` (committed: under 20 MB).
- The MixCo run (``moco_mixco_seed0`` by default) is exported the same way into the run's own folder (not
  committed).

Each export is then loaded with ``timm.create_model("local-dir:...")`` and run over the test split with timm's
eval transform from the exported ``pretrained_cfg``; the top-1 of every head must match what the run's JSON
reports for the same classifiers (the probe evaluated them on cached features of the same images). Results go
to ``benchmarks/results/exported_models.json``.

Usage: ``python benchmarks/export_report_models.py [--mixco-run moco_mixco_seed0]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "runs"
SIZE_LIMIT_BYTES = 20_000_000
TOLERANCE_POINTS = 0.1  # top-1 % points: features recomputed in a different batch order may round differently


def best_selfcon_run() -> dict:
    runs = [json.loads(p.read_text()) for p in sorted(RUNS.glob("selfcon_seed*.json"))]
    if not runs:
        raise SystemExit("no SelfCon run has finished (benchmarks/report_runs.py writes them)")
    return max(runs, key=lambda run: run["linear_fast"]["results"]["ensemble"]["best_val"]["val_top1"])


def export_run(run: dict, out_dir: Path) -> None:
    run_dir = Path(run["recipe"]["output_dir"])
    subprocess.run([sys.executable, "-m", "timm_selfcon.cli", "export", str(run_dir), str(out_dir),
                    "--protocol", "linear_fast"], check=True, cwd=ROOT)


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


def check(run: dict, folder: Path) -> dict:
    data = Path(run["recipe"]["data"])
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixco-run", default="moco_mixco_seed0")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = {}

    selfcon = best_selfcon_run()
    folder = RESULTS / f"{selfcon['recipe']['model']}-cifar10-cpu-report"
    export_run(selfcon, folder)
    report["selfcon"] = check(selfcon, folder)
    report["selfcon"]["chosen_by"] = "ensemble linear_fast probe, best validation top-1 (no test-split selection)"
    if report["selfcon"]["model_safetensors_bytes"] >= SIZE_LIMIT_BYTES:
        raise SystemExit(f"{folder} is {report['selfcon']['model_safetensors_bytes']} bytes: over the 20 MB limit")

    mixco_json = RUNS / f"{args.mixco_run}.json"
    if mixco_json.exists():
        mixco = json.loads(mixco_json.read_text())
        folder = Path(mixco["recipe"]["output_dir"]) / "export"
        export_run(mixco, folder)
        report["mixco"] = check(mixco, folder)
        report["mixco"]["note"] = "exported into the run's folder under runs/ (not committed)"
    else:
        print(f"skip MixCo: {mixco_json} does not exist yet")

    out = RESULTS / "exported_models.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
