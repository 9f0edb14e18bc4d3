"""The training loop: a recipe, one method, Hugging Face Accelerate (one CPU to many GPUs / nodes).

Short and linear on purpose, like Accelerate's examples: build data, model and method; then for each
step set the lr, ask the method for a loss, backward, optimizer step,
``method.after_optimizer_step(step, total_steps)`` (the MoCo momentum update; a method's schedule reads the run's
progress from it), log and checkpoint. The engine knows nothing of any one method.

Reproducibility: the data order depends only on (seed, epoch) and each sample's augmentation only on
(seed, epoch, index) (``timm_selfcon.data``); the rest of the randomness comes from the RNG states that
Accelerate saves with every checkpoint. A run killed after any checkpoint and resumed with
``resume=true`` therefore ends with the same weights as an unbroken run (CPU, fp32).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from timm.optim import create_optimizer_v2
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..constants import training_normalization
from ..data import (
    ContrastiveImageDataset,
    ResumableDistributedSampler,
    build_train_loader,
    build_transform,
    class_names,
    find_undecodable,
    load_image_dataset,
    report_substitutions,
    resolve_columns,
    resolve_num_workers,
    select_classes,
    strict_data_message,
    substituted_sources,
)
from ..data.device import BatchAugment, DeviceBatches, DeviceData, check_device_memory, decode_split
from ..errors import UserInputError
from ..fileio import append_line, write_json_atomic, write_text_atomic
from ..methods import TrainingMethod, build_method, method_class, options_from_recipe
from ..models.factory import create_model
from .accelerator import launcher_mismatch, make_accelerator, tracker_config
from .checkpoint import TimmEncoder, accelerate_state_dir, read_trainer_state, save_checkpoint, weights_tag
from .clock import (
    RunClock,
    busy_note,
    load_average_1m,
    machine_load,
)
from .evaluation import linear_fast
from .probe import probe_trained_vs_random
from .run_dir import RunDirPlan, plan_run_dir, prepare_run_dir
from .run_records import drop_metrics_after, ending_lines, logged_loss, pairing_hashes, run_info
from .schedule import lr_at


def timm_optimizer_name(optimizer: str) -> str:
    """The ``create_optimizer_v2`` name of a recipe's ``optimizer``.

    timm's ``sgd`` is Nesterov SGD; the official SelfCon / SupCon / MoCo code uses plain momentum SGD
    (``torch.optim.SGD(momentum=0.9)``), which timm calls ``momentum``. ``nesterov`` stays available by name.
    """
    return "momentum" if optimizer.lower() == "sgd" else optimizer


def check_batch_layout(config: TrainConfig, num_processes: int) -> int:
    """The per-process batch size, or a ValueError before any training happens."""
    method = method_class(config.method)
    accum = config.gradient_accumulation_steps
    if accum > 1 and not method.allows_gradient_accumulation:
        raise UserInputError(f"gradient_accumulation_steps={accum} is refused for method {config.method!r}: it would "
                             "silently change the negatives each loss sees; lower batch_size instead")
    if config.batch_size % (num_processes * accum) != 0:
        raise UserInputError(f"batch_size={config.batch_size} must divide by processes x accumulation steps "
                             f"= {num_processes} x {accum}")
    per_process = config.batch_size // (num_processes * accum)
    multiple = method.per_process_batch_multiple
    if per_process % multiple:
        raise UserInputError(f"method {config.method!r} needs a per-process batch that is a multiple of {multiple}, "
                             f"got batch_size={config.batch_size} over {num_processes} processes = {per_process}")
    return per_process


@dataclasses.dataclass
class TrainData:
    """This process's training data, from either pipeline: what the loop needs, with no pipeline check left to do."""

    hf_dataset: Any  # the ``datasets.Dataset`` of the training split (``class_list`` applied)
    dataset: ContrastiveImageDataset | DeviceData
    sampler: ResumableDistributedSampler  # the loop sets its epoch and start step
    loader: Iterable[dict[str, torch.Tensor]]  # batches: ``image [B, V, C, H, W]``, ``label [B]`` (+ ``substituted``)
    class_names: list[str] | None
    #: rows already replaced by substitutes when the loop starts: the device pipeline decodes every image up front;
    #: the workers' batches report theirs as they come (``batch["substituted"]``)
    substituted: set[int]


@dataclasses.dataclass
class Training:
    """What :func:`build_training` returns; ``method`` and ``optimizer`` are Accelerate's wrappers."""

    data: TrainData
    method: torch.nn.Module  # ``accelerator.unwrap_model(method)`` is the :class:`TrainingMethod`
    optimizer: torch.optim.Optimizer


def build_data(config: TrainConfig, views: int, num_processes: int, rank: int,
               device: torch.device | None = None) -> TrainData:
    """The dataset, sampler and loader of this process (the one place that reads ``data_pipeline``).

    ``data_pipeline=workers``: a DataLoader of PIL-augmented samples. ``data_pipeline=device``: the split decoded
    once (cached on disk, see :mod:`timm_selfcon.data.device`) and moved to ``device``, batches augmented there.
    """
    hf = load_image_dataset(config.data, config.train_split, image_column=config.image_column,
                            label_column=config.label_column, streaming=False)
    image_column, label_column = resolve_columns(hf, config.image_column, config.label_column, data=config.data)
    if config.class_list:
        hf = select_classes(hf, label_column, config.class_list)
    mean, std = training_normalization(config.data)

    def sampler_of(rows: int) -> ResumableDistributedSampler:
        return ResumableDistributedSampler(rows, config.batch_size, num_replicas=num_processes, rank=rank,
                                           seed=config.seed, drop_last=True)

    if config.data_pipeline == "device":
        check_device_memory(len(hf), config.image_size, config.device_data_max_gib, config.train_split)
        augment = BatchAugment(config.augmentation, config.image_size, mean, std, views=views, seed=config.seed,
                               compile=config.compile)
        dataset = decode_split(hf, image_column, label_column, config.image_size, strict_data=config.strict_data,
                               where=f"{config.data!r} [{config.train_split}]").to(device or "cpu")
        sampler = sampler_of(len(dataset))
        loader = DeviceBatches(dataset, augment, sampler)
        substituted = set(dataset.substituted_indices)
    else:
        transform = build_transform(config.augmentation, config.image_size, mean, std, views=views)
        dataset = ContrastiveImageDataset(hf, transform, image_column, label_column, seed=config.seed,
                                          strict_data=config.strict_data)
        if config.strict_data:
            check_images_decode(config, dataset, num_processes, rank)
        sampler = sampler_of(len(dataset))
        loader = build_train_loader(dataset, sampler, sampler.per_replica_batch_size,
                                    resolve_num_workers(config.num_workers))
        substituted = set()
    return TrainData(hf, dataset, sampler, loader, class_names(hf, label_column), substituted)


def check_images_decode(config: TrainConfig, dataset: ContrastiveImageDataset, num_processes: int, rank: int) -> None:
    """``strict_data=true``: every image of the training split decodes, else one UserInputError naming them.

    Checked before any work (nothing is written yet), not when a DataLoader worker first reads the image some steps
    in: each process decodes its share of the rows once in its loader workers, and all refuse together.
    """
    problems = find_undecodable(dataset, resolve_num_workers(config.num_workers), rank=rank,
                                num_replicas=num_processes)
    if num_processes > 1:
        problems = sorted(p for part in gather_object([problems]) for p in part)  # every process's, on every process
    if problems:
        raise UserInputError(strict_data_message([text for _, text in problems],
                                                 f"{config.data!r} [{config.train_split}]"))


def train(config: TrainConfig, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train ``config.model`` with ``config.method``; returns the run summary (also written to ``summary.json``).

    ``callbacks``: objects with an optional ``on_step_begin(step)`` method (called when the step's batch is in
    hand) and an ``on_step_end(step, logs)`` method, called after every optimizer step with the
    1-based ``step`` and ``logs = {"loss": tensor, "lr": float, "epoch": int}``. The loss is the step's detached
    loss on the device, not yet synchronised: reading it (``float(...)``) waits for the step, which is what a
    benchmark timing steps wants and what the loop itself does only every ``log_every_steps``.
    """
    started, load_at_start = time.perf_counter(), load_average_1m()  # before this run adds to the load
    plan = plan_run_dir(config)  # reads only: an occupied output_dir is refused before any work
    accelerator = make_accelerator(config)
    mismatch = launcher_mismatch(accelerator.num_processes, os.environ)
    if mismatch:  # about the launch, not the caller's code: attributed to this line
        warnings.warn(mismatch, UserWarning, stacklevel=1)
    check_batch_layout(config, accelerator.num_processes)
    output_dir = Path(config.output_dir)
    # deterministic=true: torch.use_deterministic_algorithms, without which two separate multi-threaded CPU runs of
    # the same recipe already differ by ~1e-6 after one step (measured with 2 threads; see recipes/README.md)
    set_seed(config.seed, deterministic=config.deterministic)
    if accelerator.device.type == "cuda" and not config.deterministic:
        torch.backends.cudnn.benchmark = True  # static shapes (drop_last): the autotuned kernels are reused

    training = build_training(config, accelerator)
    data, method, optimizer = training.data, training.method, training.optimizer
    sampler = data.sampler
    steps_per_epoch = sampler.steps_per_epoch
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    finished = finished_run_summary(config, accelerator, plan, total_steps, steps_per_epoch)
    if finished is not None:
        return finished
    pairing = pairing_hashes(accelerator.unwrap_model(method), sampler)
    # everything is validated (data, model, method, optimizer): only now is the output_dir created or changed
    trainer_state = open_run_dir(config, accelerator, plan, pairing)
    step = trainer_state["step"]
    clock = RunClock(trainer_state)  # wall and CPU time over every sitting of the run

    substituted = set(data.substituted)
    metrics_path = output_dir / "metrics.jsonl"
    progress = tqdm(total=total_steps, initial=step, disable=not accelerator.is_local_main_process, desc="train")
    method.train()
    last_loss = logged_loss(metrics_path, step) if step else math.nan  # resumed: the loss logged at its checkpoint
    # no host synchronisation per step: the first non-finite step is kept on the device and read (with the loss and
    # the images/s of the window) only every log_every_steps and before every checkpoint
    first_bad = torch.zeros(1, dtype=torch.long, device=accelerator.device)
    window_step, window_tick = step, time.perf_counter()
    while step < total_steps:
        epoch, start = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        sampler.set_start_step(start)
        for batch in data.loader:
            for callback in callbacks:
                if hasattr(callback, "on_step_begin"):
                    callback.on_step_begin(step + 1)  # the 1-based step about to run, its batch in hand
            lr = set_lr(optimizer, config, step, steps_per_epoch)
            views = batch["image"].to(accelerator.device, non_blocking=True)
            labels = batch["label"].to(accelerator.device, non_blocking=True)
            if "substituted" in batch:  # CPU tensors from the workers
                report_substitutions(data.dataset, batch, substituted)
            loss, logs = _forward_backward(accelerator, method, views, labels, config.gradient_accumulation_steps)
            if config.clip_grad_norm is not None:
                logs["grad_norm"] = accelerator.clip_grad_norm_(method.parameters(), config.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            accelerator.unwrap_model(method).after_optimizer_step(step, total_steps)
            first_bad = torch.where((first_bad == 0) & ~torch.isfinite(loss), step, first_bad)
            for callback in callbacks:
                callback.on_step_end(step, dict(loss=loss, lr=lr, epoch=epoch))
            progress.update(1)
            log_now = step % config.log_every_steps == 0 or step == total_steps
            save_now = step % config.save_every_steps == 0 or step == total_steps
            if log_now or save_now:
                _stop_if_not_finite(accelerator, first_bad)
                last_loss = float(loss)
            if log_now:
                now = time.perf_counter()
                images_per_s = config.batch_size * (step - window_step) / max(now - window_tick, 1e-9)
                window_step, window_tick = step, now
                progress.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.4g}", img_s=f"{images_per_s:.0f}")
                # epoch: the 0-based epoch this step belongs to; epochs_done: finished epochs, as trainer_state.json
                # counts them; train_seconds: wall time of training so far, over every sitting of the run
                record = dict(step=step, epoch=epoch, epochs_done=step // steps_per_epoch,
                              train_seconds=clock.train_seconds(), loss=last_loss, lr=lr, images_per_s=images_per_s,
                              **{k: float(v) for k, v in logs.items()})
                accelerator.log(record, step=step)
                if accelerator.is_main_process:
                    append_line(metrics_path, json.dumps(record))
            if save_now:
                save_checkpoint(accelerator, output_dir, step, dict(epoch=step // steps_per_epoch, **clock.totals()),
                                timm_encoder=timm_encoder(config, accelerator.unwrap_model(method).encoder),
                                total_limit=config.save_total_limit, recipe=config.to_dict())
                window_tick = time.perf_counter()  # images/s measures training, not checkpoint writing
            if step >= total_steps:
                break
    progress.close()
    return finish_run(config, accelerator, accelerator.unwrap_model(method), data.dataset, substituted, step, last_loss,
                      clock, started=started, load_at_start=load_at_start)


def finished_run_summary(config: TrainConfig, accelerator: Accelerator, plan: RunDirPlan, total_steps: int,
                         steps_per_epoch: int) -> dict[str, Any] | None:
    """The saved summary of a resumed run that has nothing left to train, after saying so; None otherwise.

    A finished run is left exactly as it is (checkpoints, metrics, ``run_info.json``, ``summary.json``); a run
    whose last checkpoint is the final step but that stopped before writing ``summary.json`` goes on to finish
    (the probe and the summary).
    """
    if plan.resume_from is None:
        return None
    done = int(read_trainer_state(plan.resume_from)["step"])
    summary_path = Path(config.output_dir) / "summary.json"
    if done < total_steps or not summary_path.is_file():
        return None
    accelerator.print(
        f"{config.output_dir} is already complete: step {done} of {total_steps} ({done // steps_per_epoch} of "
        f"{config.epochs} epochs done); nothing trained, nothing written; its summary is {summary_path}. To train "
        "further, resume with a larger max_steps= or epochs= (epochs changes the schedule: add allow_config_change=true)")
    accelerator.end_training()
    return json.loads(summary_path.read_text())


def build_training(config: TrainConfig, accelerator: Accelerator) -> Training:
    """Data, model, method and optimizer of the run, prepared by Accelerate; nothing is written yet."""
    method_cls = method_class(config.method)
    with main_process_warnings(accelerator):  # every process builds the same model (and decodes the same split)
        data = build_data(config, method_cls.views_required, accelerator.num_processes, accelerator.process_index,
                          accelerator.device)
        num_classes = 0
        if method_cls.trains_classifier:
            num_classes = (len(data.class_names) if data.class_names
                           else int(max(data.dataset.hf_dataset[data.dataset.label_column])) + 1)
        model = create_model(config.model, num_classes=num_classes, **config.model_kwargs)
        method_cls.check_model(model)  # resolve_config checked it already, unless the config was built in Python
        method = build_method(config.method, model, **method_kwargs(config))
    if config.sync_bn:
        # BatchNorm statistics stay per process by default, as in the official DataParallel runs
        if not torch.cuda.is_available():
            raise UserInputError("sync_bn=true needs GPUs (SyncBatchNorm is a GPU-only option); use sync_bn=false on a CPU")
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    if config.channels_last:
        method = method.to(memory_format=torch.channels_last)
    optimizer = create_optimizer_v2(parameter_groups(method, config.head_lr_warmup_steps),
                                    opt=timm_optimizer_name(config.optimizer),
                                    lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.compile:
        method.compile()  # in place: forward and loss compiled, parameter names (and checkpoints) unchanged
    method, optimizer = accelerator.prepare(method, optimizer)
    return Training(data, method, optimizer)


def open_run_dir(config: TrainConfig, accelerator: Accelerator, plan: RunDirPlan,
                 pairing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create (or resume) the run folder planned by ``plan_run_dir``; returns the trainer state training starts
    from (``step``, and on resume the checkpoint's ``train_seconds``, ``cpu_seconds`` and ``sittings``).

    On resume, Accelerate restores the model, optimizer and RNG states and the metrics of steps after the
    checkpoint are dropped. Writes ``config.yaml`` and ``run_info.json`` and starts the trackers.
    """
    output_dir = Path(config.output_dir)
    accelerator.wait_for_everyone()  # every process planned before the main one changes the folder
    trainer_state = read_trainer_state(plan.resume_from) if plan.resume_from is not None else {"step": 0}
    step = trainer_state["step"]
    if plan.note:
        accelerator.print(plan.note)
    if accelerator.is_main_process:
        prepare_run_dir(plan, step)
    accelerator.wait_for_everyone()
    if plan.resume_from is not None:
        accelerator.load_state(str(accelerate_state_dir(plan.resume_from)))
        accelerator.print(f"resumed from {plan.resume_from} at step {step}")
        if accelerator.is_main_process:
            drop_metrics_after(output_dir / "metrics.jsonl", step)
    if accelerator.is_main_process:
        write_text_atomic(output_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        write_json_atomic(output_dir / "run_info.json", run_info(config, accelerator, pairing))
    if accelerator.trackers == [] and accelerator.log_with:
        accelerator.init_trackers("train", config=tracker_config(config))
    return trainer_state


def set_lr(optimizer: torch.optim.Optimizer, config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Set the lr of 0-based ``step`` on every parameter group (the heads' group scaled by their own warm-up);
    returns the schedule's lr."""
    lr = lr_at(step, steps_per_epoch, epochs=config.epochs, lr=config.lr, schedule=config.schedule,
               min_lr_ratio=config.min_lr_ratio, warmup_epochs=config.warmup_epochs, warmup_from=config.warmup_from)
    for group in optimizer.param_groups:
        group["lr"] = lr * (head_lr_factor(step, config.head_lr_warmup_steps) if group.get("heads") else 1.0)
    return lr


def finish_run(config: TrainConfig, accelerator: Accelerator, method: TrainingMethod, dataset: Any,
               substituted: set[int], step: int, last_loss: float, clock: RunClock, started: float | None = None,
               load_at_start: float = math.nan) -> dict[str, Any]:
    """End training (trackers, process group), warn about substituted images, run the optional probe, write
    ``summary.json`` (with the wall and CPU seconds of training over every sitting) and say where the run is and
    how long it took (``started``: ``time.perf_counter()`` when :func:`train` began; with ``load_at_start``, the
    1-minute load average then, a note when the machine was busy); returns the summary."""
    own_cores = clock.sitting_cores()  # of the training loop, before the probe
    output_dir = Path(config.output_dir)
    if accelerator.num_processes > 1:  # each process only saw its own shards' substitutions
        substituted = {index for part in gather_object([sorted(substituted)]) for index in part}
    accelerator.end_training()  # also destroys the process group: no collective after this
    sources = substituted_sources(dataset, substituted)
    summary = dict(steps=step, final_loss=last_loss, **clock.totals(), **machine_load(),
                   substituted_images=sorted(substituted),
                   substituted_files=sources, output_dir=str(output_dir), last=str(output_dir / "last"))
    if substituted and accelerator.is_main_process:  # gathered above: the same list on every process
        warnings.warn(f"{len(substituted)} undecodable image(s) of {config.data!r} [{config.train_split}] were "
                      f"replaced by substitutes: {', '.join(sources)}", UserWarning, stacklevel=1)
    if config.probe.enabled and accelerator.is_main_process:
        summary["probe"] = run_probe(config, method.encoder)
    if accelerator.is_main_process:
        write_json_atomic(output_dir / "summary.json", summary)
        elapsed = time.perf_counter() - started if started is not None else None
        for line in ending_lines(summary, elapsed, busy_note(load_at_start, load_average_1m(), os.cpu_count(),
                                                             own_cores)):
            print(line)
    return summary


@contextlib.contextmanager
def main_process_warnings(accelerator: Accelerator) -> Iterator[None]:
    """Warnings raised inside reach the user from the main process only: for work every process repeats identically
    (building the model and method, decoding the whole split), the other processes' copies would only repeat them."""
    with warnings.catch_warnings():
        if not accelerator.is_main_process:
            warnings.simplefilter("ignore")
        yield


def timm_encoder(config: TrainConfig, encoder: torch.nn.Module) -> TimmEncoder:
    """The encoder's timm files for each checkpoint: the run's model kwargs, its preprocessing and its tag."""
    mean, std = training_normalization(config.data)
    size = config.image_size
    return TimmEncoder(encoder, model_args={**config.model_kwargs, "num_classes": int(encoder.num_classes)},
                       data_config=dict(input_size=(3, size, size), mean=tuple(mean), std=tuple(std), crop_pct=1.0,
                                        interpolation="bilinear"),
                       tag=weights_tag(config.method, config.data))


def parameter_groups(method: TrainingMethod, head_lr_warmup_steps: int = 0) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: one, or with ``head_lr_warmup_steps`` the encoder's and the heads'
    (``method.head_parameters()``, marked ``heads=True``) so the heads' lr can be warmed up on its own."""
    if not head_lr_warmup_steps:
        return [dict(params=method.trainable_parameters())]
    heads = {id(p) for p in method.head_parameters()}
    if not heads:
        raise UserInputError(f"head_lr_warmup_steps={head_lr_warmup_steps} needs a method with projection heads; "
                             f"{method.name!r} has none (use head_lr_warmup_steps=0)")
    params = method.trainable_parameters()
    return [dict(params=[p for p in params if id(p) not in heads]),
            dict(params=[p for p in params if id(p) in heads], heads=True)]


def head_lr_factor(step: int, warmup_steps: int) -> float:
    """The projection heads' lr multiplier at ``step`` (0-based): ``(step + 1) / warmup_steps`` up to 1.

    Ours, a collapse stabilizer (recipes/README.md): at initialisation nearly all of SelfCon's gradient norm sits
    in the projection heads, and full-lr steps on them map every image to one point before the encoder learns.
    """
    return 1.0 if step >= warmup_steps else (step + 1) / warmup_steps


def run_probe(config: TrainConfig, encoder: torch.nn.Module) -> dict[str, Any]:
    """The quickstart's ending: ``linear_fast`` probe of the trained encoder beside a random one, printed."""
    mean, std = training_normalization(config.data)
    # the probe reads the data as training did: the run's columns and classes
    top1, read = probe_trained_vs_random(
        encoder, config.model, config.model_kwargs, config.data, train_split=config.train_split,
        eval_split=config.eval_split, image_size=config.image_size, mean=mean, std=std,
        epochs=config.probe.epochs, seed=config.seed, image_column=config.image_column,
        label_column=config.label_column, class_list=config.class_list)
    classes = f"{read['num_classes']} classes" + (" of class_list" if config.class_list else "")
    print(f"linear_fast probe (frozen features, no augmentation; not the papers' protocol), "
          f"trained on '{config.train_split}' ({read['train_rows']} rows, {classes}), top-1 on held-out "
          f"'{config.eval_split}' ({read['test_rows']} rows):")
    print(f"  trained encoder ({config.method}): {top1['trained']:.2f}%")
    print(f"  randomly initialised encoder:      {top1['random_init']:.2f}%")
    return dict(protocol=linear_fast.NAME, split=config.eval_split, top1=top1, **read)


def _forward_backward(accelerator: Accelerator, method: torch.nn.Module, views: torch.Tensor, labels: torch.Tensor,
                      accumulation_steps: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward and backward of one optimizer step's per-process batch ``views [B, V, C, H, W]``, ``labels [B]``.

    With ``accumulation_steps = A > 1`` (CE only) the batch is cut into ``A`` micro-batches of ``B / A``
    images; ``accelerator.backward`` divides each loss by ``A`` and DDP synchronises only on the last one, so
    the gradient is that of the mean loss over the micro-batches. Returns the mean loss and mean logs (device
    tensors; nothing is read back to the host here).
    """
    losses, summed_logs = [], {}
    micro_views, micro_labels = views.chunk(accumulation_steps), labels.chunk(accumulation_steps)
    for index, (micro_view, micro_label) in enumerate(zip(micro_views, micro_labels, strict=True)):
        last = index == accumulation_steps - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(method):
            with accelerator.autocast():
                loss, logs = method(micro_view, micro_label)
            accelerator.backward(loss)
        losses.append(loss.detach())
        for key, value in logs.items():
            summed_logs[key] = summed_logs.get(key, 0.0) + value.detach().float() / accumulation_steps
    return torch.stack(losses).float().mean(), summed_logs


def _stop_if_not_finite(accelerator: Accelerator, first_bad: torch.Tensor) -> None:
    """Stop every process together when any saw a non-finite loss since the start (``first_bad`` ``[1]``: the
    first such 1-based step, 0 for none); called before every checkpoint, so ``last`` keeps the last good one."""
    steps = accelerator.gather(first_bad)
    bad = steps[steps > 0]
    if bad.numel():
        raise FloatingPointError(f"non-finite loss at step {int(bad.min())} (on at least one process); "
                                 "'last' still points at the last good checkpoint")


def method_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The method's constructor options from the recipe (the keys its class declares, then ``method_kwargs``)."""
    return options_from_recipe(config.method, config.to_dict())
