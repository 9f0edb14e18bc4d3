"""``early_exit``: the ``linear_fast`` classifiers plugged into the model, ``forward_early_exit`` over a threshold
sweep: accuracy and mean FLOPs per image (the model's :meth:`~timm_selfcon.models.exits.MultiExitMixin.exit_flops`)."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from . import linear_fast
from .classifiers import attach_classifiers, report_classifiers
from .features import EvalInputs
from .metrics import percent
from .registry import register_protocol
from .report import EvalReport

EARLY_EXIT_THRESHOLDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)


@torch.no_grad()
def early_exit_sweep(model: nn.Module, loader: DataLoader, thresholds: tuple[float, ...] = EARLY_EXIT_THRESHOLDS,
                     input_size: tuple[int, int, int] | None = None) -> list[dict[str, float]]:
    """Accuracy and mean FLOPs per image of ``forward_early_exit`` at each threshold."""
    model.eval()
    device = next(model.parameters()).device
    costs = None
    rows = []
    for threshold in thresholds:
        correct, total, flops, exits = 0, 0, 0.0, torch.zeros(model.num_exits + 1)
        for batch in loader:
            images = batch["image"][:, 0].to(device)
            if costs is None:
                costs = torch.tensor(model.exit_flops(input_size or tuple(images.shape[1:])))
            logits, index = model.forward_early_exit(images, threshold)
            correct += (logits.argmax(-1).cpu() == batch["label"]).sum().item()
            total += len(images)
            flops += costs[index.cpu()].sum().item()
            exits += torch.bincount(index.cpu(), minlength=model.num_exits + 1)
        rows.append(dict(threshold=threshold, top1=percent(correct, total), mean_flops=round(flops / total, 1),
                         full_flops=float(costs[-1]), exit_fraction=[round(int(n) / total, 6) for n in exits]))
    return rows


@register_protocol(
    "early_exit", trains_classifiers=True, result_shape="epochs per head", all_rank=2, export_rank=1, needs_exits=True,
    card_text=(f"Linear classifiers trained as in `{linear_fast.NAME}`, plugged into the model, then early-exit "
               "inference over a sweep of confidence thresholds (accuracy and FLOPs per image)."),
)
def run(inputs: EvalInputs, report: EvalReport) -> dict[str, torch.Tensor]:
    """The ``linear_fast`` classifiers and the sweep in ``report``; returns the classifiers' state dict."""
    heads = linear_fast.fit(inputs, report)
    model = attach_classifiers(inputs.encoder, heads, inputs.num_classes)
    report.early_exit = early_exit_sweep(model, inputs.test_loader)
    return report_classifiers(inputs.encoder, heads, report)
