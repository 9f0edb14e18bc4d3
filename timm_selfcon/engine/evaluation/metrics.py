"""Accuracy as the reports give it: percent, rounded to 4 decimals, per head and for the ensemble."""
from __future__ import annotations

import torch

from .features import output_names


def percent(count: int, total: int) -> float:
    """``100 * count / total`` computed exactly and rounded to 4 decimals: what was measured, without float32
    artefacts (``42.6``, not ``42.59999990463257``); one image of 10,000 is 0.01."""
    return round(100.0 * count / total, 4)


def topk(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (percent) of ``logits`` ``[N, C]`` for each k (k above C counts as C)."""
    out = {}
    for k in ks:
        k_eff = min(k, logits.shape[-1])
        hits = int((logits.topk(k_eff, -1).indices == labels[:, None]).any(-1).sum())
        out[f"top{k}"] = percent(hits, len(labels))
    return out


def head_metrics(logits: list[torch.Tensor], labels: torch.Tensor) -> dict[str, dict[str, float]]:
    """Top-1/5 of every head (exits in depth order, backbone last) and of the ensemble (mean of the heads' logits)."""
    names = output_names(len(logits))
    metrics = {name: topk(lg, labels) for name, lg in zip(names, logits)}
    if len(logits) > 1:
        metrics["ensemble"] = topk(torch.stack(logits).mean(0), labels)
    return metrics
