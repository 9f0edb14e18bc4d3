"""``knn``: weighted cosine kNN on L2-normalised backbone features (k = 20 and 200, votes exp(sim / 0.07))."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .features import EvalInputs
from .metrics import percent
from .registry import register_protocol
from .report import EvalReport


def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 ks: tuple[int, ...] = (20, 200), temperature: float = 0.07, chunk: int = 1024) -> dict[str, float]:
    """Weighted cosine kNN top-1 (percent) for each k: votes ``exp(sim / temperature)`` per neighbour's class."""
    train_n = F.normalize(train_x, dim=1)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    correct = dict.fromkeys(ks, 0)
    for start in range(0, len(test_x), chunk):
        sims = F.normalize(test_x[start:start + chunk], dim=1) @ train_n.T
        for k in ks:
            top_sim, top_idx = sims.topk(min(k, len(train_x)), dim=1)
            votes = torch.zeros(len(top_sim), num_classes)
            votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
            correct[k] += (votes.argmax(1) == test_y[start:start + chunk]).sum().item()
    return {f"k{k}": percent(correct[k], len(test_x)) for k in ks}


@register_protocol(
    "knn", title="kNN", trains_classifiers=False, result_shape="top-1 per k", all_rank=1,
    standing_deviation="knn: a kNN classifier on backbone features, not the papers' linear classifiers",
    card_text="Weighted cosine k-nearest-neighbour classification on L2-normalised backbone features.",
)
def run(inputs: EvalInputs, report: EvalReport) -> None:
    """Fill ``report`` with the backbone's kNN accuracy; no classifiers are trained (returns None)."""
    config = inputs.config
    train_feats, train_y = inputs.features(inputs.train, "train features")
    test_feats, test_y = inputs.features(inputs.test_loader, "test features")
    report.hyperparameters = dict(k=list(config.knn_k), temperature=config.knn_temperature,
                                     feature="backbone pooled, L2-normalised, cosine")
    report.results = dict(backbone=knn_accuracy(train_feats[-1], train_y, test_feats[-1], test_y,
                                                    config.knn_k, config.knn_temperature))
