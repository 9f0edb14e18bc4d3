"""Downstream fine-tuning: the encoder with its exits removed, a new classifier, timm's optimizer and scheduler.

``timm-selfcon finetune SOURCE data=... [key=value ...]`` (or :func:`finetune`) takes a training checkpoint,
a training ``output_dir`` or any timm model name (``hf-hub:``/``local-dir:`` included), drops the exits
(``plain_encoder``), puts a fresh ``num_classes`` classifier on it and trains every weight with
``timm.optim.create_optimizer_v2`` (optional layer-wise lr decay through the model's ``group_matcher``) and
``timm.scheduler.create_scheduler_v2``, through Accelerate. Writes ``<output_dir>/model.safetensors``,
``config.json`` (timm's, via ``save_for_hf``) and ``report.json``, all at once (:func:`timm_selfcon.fileio.atomic_dir`).
Like ``train``, it never writes over a folder silently: an earlier fine-tuning output is refused before any work
unless ``overwrite=true``, and a training run or a folder holding other files is refused always.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from pydantic import Field, StrictBool, StrictInt
from timm.models import save_for_hf
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from tqdm.auto import tqdm

from ..config import (
    AugmentationName,
    NonNegativeFloat,
    NonNegativeInt,
    OptimizerName,
    PositiveFloat,
    PositiveInt,
    Precision,
    StrictModel,
)
from ..data import (
    ContrastiveImageDataset,
    ResumableDistributedSampler,
    build_eval_loader,
    build_train_loader,
    build_transform,
    class_names,
    resolve_columns,
)
from ..errors import UserInputError
from ..fileio import atomic_dir, write_json_atomic
from .accelerator import accelerator_for, resolve_precision
from .checkpoint import load_encoder, weights_tag
from .evaluate import choose_data, described_weights, load_split
from .evaluation.metrics import topk


class FinetuneConfig(StrictModel):
    """Fine-tuning keys (``key=value`` on the command line).

    ``data``, ``train_split``, ``split`` and the columns left at None mean a training run's own (its
    ``config.yaml``), or for a timm model name ``uoft-cs/cifar10`` with ``train`` / ``test`` (see ``EvalConfig``).
    ``pretrained``: as ``EvalConfig``'s; the report's ``weights`` says which weights fine-tuning started from.
    """

    data: str | None = None
    train_split: str | None = None
    split: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    optimizer: OptimizerName = "sgd"
    lr: PositiveFloat = 0.05
    weight_decay: NonNegativeFloat = 5e-4
    layer_decay: PositiveFloat | None = None
    scheduler: str = "cosine"
    warmup_epochs: NonNegativeInt = 1
    augmentation: AugmentationName = "ce"
    image_size: PositiveInt | None = None
    precision: Precision = "fp32"
    num_workers: NonNegativeInt = 2
    max_steps: PositiveInt | None = None
    seed: StrictInt = 0
    output_dir: str = "runs/finetune"
    overwrite: StrictBool = False  # replace an earlier fine-tuning output in output_dir
    pretrained: StrictBool | None = None  # a timm model name: None = its tag decides (plain name: random init)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)  # for a timm model name (e.g. exit_stages, layers)


def finetune(source: str | os.PathLike[str], config: FinetuneConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Fine-tune the encoder of ``source`` on ``config.data``; returns (and writes) the report."""
    config = config or FinetuneConfig(**overrides)
    check_output_dir(Path(config.output_dir), config.overwrite)  # reads only: refused before any work
    precision = resolve_precision(config.precision)  # a launcher's explicit choice for auto; fp16 needs a GPU
    accelerator = accelerator_for(precision)
    set_seed(config.seed)
    encoder, info = load_encoder(source, config.pretrained, **config.model_kwargs)
    weights = described_weights(info, config.seed)
    model = encoder.plain_encoder() if hasattr(encoder, "plain_encoder") else encoder
    choice = choose_data(info, config.data, config.train_split, config.split, config.image_column,
                         config.label_column)
    accelerator.print(f"fine-tuning {info['model']} ({weights}) on {choice.describe()}")
    train_hf = load_split(choice, choice.train_split)
    image_col, label_col = resolve_columns(train_hf, choice.image_column, choice.label_column, data=choice.data)
    if label_col is None:
        raise UserInputError(f"fine-tuning needs labels; {choice.data!r} has columns {train_hf.column_names}")
    names = class_names(train_hf, label_col)
    num_classes = len(names) if names else int(max(train_hf[label_col])) + 1
    model.reset_classifier(num_classes)
    cfg = model.pretrained_cfg
    image_size = config.image_size or cfg["input_size"][-1]
    mean, std = cfg["mean"], cfg["std"]
    train_set = ContrastiveImageDataset(train_hf, build_transform(config.augmentation, image_size, mean, std),
                                        image_col, label_col, seed=config.seed)
    sampler = ResumableDistributedSampler(len(train_set), config.batch_size, num_replicas=accelerator.num_processes,
                                          rank=accelerator.process_index, seed=config.seed)
    train_loader = build_train_loader(train_set, sampler, sampler.per_replica_batch_size, config.num_workers)
    test_hf = load_split(choice, choice.split, image_col, label_col)
    test_set = ContrastiveImageDataset(test_hf, build_transform("eval", image_size, mean, std), image_col, label_col,
                                       seed=config.seed)
    test_loader = build_eval_loader(test_set, config.batch_size, config.num_workers)

    optimizer = create_optimizer_v2(model, opt=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                                    layer_decay=config.layer_decay)
    scheduler, num_epochs = create_scheduler_v2(optimizer, sched=config.scheduler, num_epochs=config.epochs,
                                                warmup_epochs=config.warmup_epochs,
                                                updates_per_epoch=sampler.steps_per_epoch)
    model, optimizer, test_loader = accelerator.prepare(model, optimizer, test_loader)
    history, step = [], 0
    for epoch in range(num_epochs):
        model.train()
        sampler.set_epoch(epoch)
        for batch in tqdm(train_loader, desc=f"finetune epoch {epoch}", disable=not accelerator.is_main_process,
                          leave=False):
            with accelerator.autocast():
                loss = F.cross_entropy(model(batch["image"][:, 0].to(accelerator.device)),
                                       batch["label"].to(accelerator.device))
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            scheduler.step_update(num_updates=step)
            if config.max_steps and step >= config.max_steps:
                break
        scheduler.step(epoch + 1)
        history.append(dict(epoch=epoch + 1, **_evaluate(model, test_loader, accelerator)))
        accelerator.print(f"epoch {epoch + 1}: test top-1 {history[-1]['top1']:.2f}%")
        if config.max_steps and step >= config.max_steps:
            break
    report = dict(source=str(source), model=info["model"], weights=weights, data=choice.data, split=choice.split,
                  train_split=choice.train_split, data_from=choice.source,
                  num_classes=num_classes, hyperparameters=config.to_dict(), history=history,
                  result=dict(last=history[-1]))
    if accelerator.is_main_process:
        out = Path(config.output_dir)
        unwrapped = accelerator.unwrap_model(model)
        # the exits are gone: timm reads 'classifier' to drop the heads when loaded with another num_classes
        classifier = (list(unwrapped.classifier_names()) if hasattr(unwrapped, "classifier_names")
                      else unwrapped.pretrained_cfg.get("classifier"))
        unwrapped.pretrained_cfg = {**unwrapped.pretrained_cfg, "label_names": names, "num_classes": num_classes,
                                    "classifier": classifier[0] if isinstance(classifier, list) and len(classifier) == 1
                                    else classifier, "tag": weights_tag("finetune", choice.data)}
        model_args = dict(getattr(unwrapped, "_model_args", None) or info.get("model_kwargs") or {},
                          num_classes=num_classes)
        if hasattr(unwrapped, "exit_stages"):
            model_args["exit_stages"] = ()
        with atomic_dir(out, replace=True) as tmp:  # all of it or nothing; an earlier output (overwrite=true) replaced
            save_for_hf(unwrapped, tmp, model_args=model_args, safe_serialization=True)
            write_json_atomic(tmp / FINETUNE_REPORT, report)
    return report


#: What marks a fine-tuning output (beside timm's ``config.json`` and ``model.safetensors``).
FINETUNE_REPORT = "report.json"


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse an ``output_dir`` holding files, with the ways on (the rule of ``train``): an earlier fine-tuning
    output unless ``overwrite``; a training run, or any other file, always (fine-tuning would mix its files with
    them, and replacing them would delete what is not its own)."""
    from .run_dir import previous_run_entries

    if not output_dir.exists() or (output_dir.is_dir() and not any(output_dir.iterdir())):
        return
    if not output_dir.is_dir():
        raise UserInputError(f"output_dir {str(output_dir)!r} exists and is not a folder")
    run_files = previous_run_entries(output_dir)
    if run_files:
        names = ", ".join(p.name for p in run_files[:6]) + (", ..." if len(run_files) > 6 else "")
        raise UserInputError(f"output_dir {str(output_dir)!r} holds a training run ({names}); fine-tuning into it "
                             "would mix its files with the run's: choose a new output_dir")
    if not ((output_dir / FINETUNE_REPORT).is_file() and (output_dir / "config.json").is_file()):
        raise UserInputError(f"output_dir {str(output_dir)!r} exists and is not an earlier fine-tuning output; "
                             "choose an empty or new folder")
    if not overwrite:
        raise UserInputError(f"output_dir {str(output_dir)!r} already holds a fine-tuning output ({FINETUNE_REPORT}, "
                             "config.json, model.safetensors); fine-tuning again would replace it. Use a new "
                             "output_dir, or overwrite=true to replace it")


@torch.no_grad()
def _evaluate(model: torch.nn.Module, loader, accelerator: Accelerator) -> dict[str, float]:
    model.eval()
    logits_all, labels_all = [], []
    for batch in loader:
        logits = model(batch["image"][:, 0])
        logits, labels = accelerator.gather_for_metrics((logits, batch["label"]))
        logits_all.append(logits.float().cpu())
        labels_all.append(labels.cpu())
    return topk(torch.cat(logits_all), torch.cat(labels_all))
