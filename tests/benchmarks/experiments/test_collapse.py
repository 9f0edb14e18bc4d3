"""benchmarks/experiments/collapse.py's measures on constructed inputs."""
import math

import pytest
import torch
import torch.nn.functional as F

from benchmarks.experiments import collapse
from timm_selfcon.losses import SelfConLoss


def test_identical_projections_give_cosine_one_and_the_plateau_loss() -> None:
    point = F.normalize(torch.randn(128), dim=0)
    features = point.expand(64, 2, 128).clone()  # [B, K+1, D]: every output the same point
    labels = torch.randint(0, 10, (64,))
    cosines = collapse.projection_cosines(features)
    assert cosines.keys() == {"backbone", "exit_0", "exit_0_vs_backbone"}
    assert all(math.isclose(v, 1.0, abs_tol=1e-12) for v in cosines.values())
    loss = float(SelfConLoss(0.1, 0.07)(features, labels))
    plateau = collapse.plateau_loss(128, 0.1, 0.07)
    assert math.isclose(plateau, math.log(127) * 0.1 / 0.07)
    assert loss == pytest.approx(plateau, abs=1e-5)
    assert collapse.on_plateau(loss, plateau, cosines)


def test_orthogonal_heads_and_spread_projections() -> None:
    basis = torch.eye(64)
    exit_part, backbone_part = basis[:32], basis[32:]  # exit and backbone in orthogonal subspaces, rows orthogonal
    features = torch.stack([exit_part, backbone_part], dim=1)  # [32, 2, 64]
    cosines = collapse.projection_cosines(features)
    assert cosines["exit_0_vs_backbone"] == pytest.approx(0.0, abs=1e-12)
    assert cosines["backbone"] == pytest.approx(0.0, abs=1e-12) and cosines["exit_0"] == pytest.approx(0.0, abs=1e-12)
    assert not collapse.on_plateau(13.0, collapse.plateau_loss(64), cosines)


def test_within_head_cosine_of_two_points() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.6, 0.8])
    features = torch.stack([a, a, b, b]).unsqueeze(1)  # [4, 1, 2]: pairs (a,a) cos 1, (a,b) cos 0.6
    # off-diagonal pairs: 2 x (a,a)+(b,b) = 4 with cos 1, 8 with cos 0.6 -> (4 + 4.8) / 12
    assert collapse.projection_cosines(features)["backbone"] == pytest.approx(8.8 / 12)


def test_summary_counts_steps_on_the_plateau() -> None:
    trace = [dict(on_plateau=f, loss=1.0) for f in (False, True, True, False, True, False, False)]
    assert collapse.summarize(trace) == dict(reached_plateau_at=2, steps_on_plateau=3, left_plateau_at=6,
                                             final_loss=1.0)
    assert collapse.summarize(trace[:5])["left_plateau_at"] is None
