"""The training-loss terms of the MixCo experiment's runs, per epoch: what the + MixCo arm does to MoCo's own term.

The queue's result JSONs keep the total loss only; each run folder's ``metrics.jsonl`` (logged every 50 steps) also
has the terms: ``loss_moco`` (MoCo v2's InfoNCE on the clean queries), ``loss_mix`` (MixCo's soft-target term, the
+ MixCo arm only), ``acc1`` (top-1 of the positive key among the queue, on the logged batch). Their per-epoch means
for every finished run whose folder is still on this machine go to ``benchmarks/results/mixco_loss_terms.json``
(each run measured once; entries are kept when a folder is gone), which ``report_experiments.py`` renders beside
the paired table.

The logged terms are measured against the queue the step saw, whose keys come from up to 32 steps of older key
encoders: while the lr is large those keys are stale (easy negatives), and as the lr decays to 0 they become
current. To separate the encoder from the queue, the MoCo-v2 runs' checkpoints every 5 epochs are also measured on
8 fixed batches (no gradient, the queue restored after each) twice: with the checkpoint's own queue, and with the
queue refilled by that checkpoint's key encoder from 32 other batches (``refilled_queue``: every key current).

Usage: ``python -m benchmarks.experiments.mixco_loss_terms [--work-dir runs/experiments]`` (the queue's work dir).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.harness import RESULTS, ROOT, write_json

MIXCO = RESULTS / "mixco"
OUT = RESULTS / "mixco_loss_terms.json"
TERMS = ("loss_moco", "loss_mix", "loss_simclr", "acc1")
CHECK_EVERY_EPOCHS = 5
MEASURED_BATCHES = 8
REFILL_BATCHES = 32  # 32 x 128 = 4,096 keys: the whole queue


def epoch_means(metrics_jsonl: Path) -> dict[str, dict[int, float]]:
    """``{term: {epoch (1-based): mean of the logged values}}`` of one run's ``metrics.jsonl``."""
    by_term: dict[str, dict[int, list[float]]] = {}
    for line in metrics_jsonl.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        for term in TERMS:
            if term in record:
                by_term.setdefault(term, {}).setdefault(int(record["epoch"]) + 1, []).append(float(record[term]))
    return {term: {epoch: round(statistics.fmean(values), 4) for epoch, values in sorted(epochs.items())}
            for term, epochs in by_term.items()}


@torch.no_grad()
def terms_with_both_queues(run_dir: Path, steps: list[int], refill: int = REFILL_BATCHES,
                           measured_batches: int = MEASURED_BATCHES) -> dict[int, dict[str, dict[str, float]]]:
    """``{step: {"own_queue": terms, "refilled_queue": terms}}``: the means of the logged terms over
    ``measured_batches`` fixed batches (epoch 0's order after the first ``refill``), each checkpoint's method in
    train mode (batch statistics, as in training), against its saved queue and against a queue refilled by its own
    key encoder from the first ``refill`` batches (``refill`` x batch >= the queue: every key current)."""
    import yaml
    from safetensors.torch import load_file
    from timm import create_model

    from timm_selfcon.config import resolve_config
    from timm_selfcon.engine.train import build_data, method_kwargs
    from timm_selfcon.methods.registry import build_method, method_class

    values = yaml.safe_load((run_dir / "config.yaml").read_text())
    config = resolve_config(None, dict(values, num_workers=0))
    data = build_data(config, method_class(config.method).views_required, 1, 0)
    data.sampler.set_epoch(0)
    batches = list(itertools.islice(iter(data.loader), refill + measured_batches))

    def measure(method: torch.nn.Module) -> dict[str, float]:
        logs = []
        for batch in batches[refill:]:
            queue, pointer = method.queue.clone(), method.queue_ptr.clone()
            _, step_logs = method(batch["image"], batch["label"])
            method.queue.copy_(queue)  # the forward enqueued this batch's keys: undo it
            method.queue_ptr.copy_(pointer)
            logs.append(step_logs)
        return {term: round(statistics.fmean(float(log[term]) for log in logs), 4) for term in logs[0]}

    missing = [step for step in steps if not (run_dir / f"ckpt-{step}" / "accelerate" / "model.safetensors").is_file()]
    if missing:  # before any model is built: a pruned run folder cannot be measured
        raise SystemExit(f"error: {run_dir} lacks the checkpoints of steps {missing} (ckpt-<step>/accelerate/"
                         "model.safetensors); its checkpoints every 5 epochs are measured")
    measured = {}
    for step in steps:
        torch.manual_seed(config.seed)  # the mixing draws
        model = create_model(config.model, num_classes=0, **config.model_kwargs)
        method = build_method(config.method, model, **method_kwargs(config))
        method.load_state_dict(load_file(str(run_dir / f"ckpt-{step}" / "accelerate" / "model.safetensors")))
        method.train()
        own = measure(method)
        for batch in batches[:refill]:
            method.enqueue(method.compute_keys(batch["image"][:, 1])[1])
        measured[step] = {"own_queue": own, "refilled_queue": measure(method)}
        print(f"{run_dir.name} step {step}: {measured[step]}", flush=True)
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "experiments",
                        help="the queue's work dir (its mixco/<run>/metrics.jsonl)")
    args = parser.parse_args(argv)
    if not (args.work_dir / "mixco").is_dir():
        parser.error(f"--work-dir {args.work_dir} has no mixco/ folder: expected the experiments queue's work dir "
                     "(its mixco/<run>/metrics.jsonl)")
    report = json.loads(OUT.read_text()) if OUT.exists() else {}
    for path in sorted(MIXCO.glob("*.json")):
        run = json.loads(path.read_text())
        metrics = args.work_dir / "mixco" / run["name"] / "metrics.jsonl"
        if run.get("kind") != "train" or not metrics.is_file() or run["name"] in report:
            continue  # a finished run's entry never changes: measured once
        report[run["name"]] = dict(method=run["method"], seed=run["seed"], per_epoch=epoch_means(metrics),
                                   source=f"{run['name']}/metrics.jsonl of the finished run (logged every "
                                          f"{run['recipe'].get('log_every_steps', 50)} steps)")
        if run["method"] in ("moco", "moco_mixco"):
            steps_per_epoch = run["train_summary"]["steps"] // run["epochs"]
            epochs = range(CHECK_EVERY_EPOCHS, run["epochs"] + 1, CHECK_EVERY_EPOCHS)
            checked = terms_with_both_queues(metrics.parent, [e * steps_per_epoch for e in epochs])
            report[run["name"]]["checkpoints"] = {str(e): checked[e * steps_per_epoch] for e in epochs}
        print(f"{run['name']}: " + ", ".join(f"{term} last epoch {values[max(values)]}"
                                             for term, values in report[run["name"]]["per_epoch"].items()))
    write_json(OUT, dict(sorted(report.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
