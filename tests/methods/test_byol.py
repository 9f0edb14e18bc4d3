"""BYOL as one method file: asymmetric views from the augmentation table, a cosine target momentum from the run's
progress, and a loss that trains."""
from pathlib import Path

import pytest
import timm
import torch
from conftest import tiny_image_dataset

from timm_selfcon.augmentations import AUGMENTATIONS
from timm_selfcon.config import resolve_config
from timm_selfcon.engine.train import train
from timm_selfcon.methods import build_method
from timm_selfcon.methods.byol import byol_momentum


def small_byol() -> torch.nn.Module:
    model = timm.create_model("selfcon_resnet10_w16_cifar", num_classes=0, exit_stages=())
    return build_method("byol", model, out_dim=16, hidden_dim=32, base_momentum=0.9)


def test_views_are_asymmetric() -> None:
    first, second = AUGMENTATIONS["byol"]
    assert (first.blur_p, first.solarize_p, second.blur_p, second.solarize_p) == (1.0, 0.0, 0.1, 0.2)


def test_target_momentum_follows_the_cosine_schedule() -> None:
    assert byol_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert byol_momentum(50, 100, 0.996) == pytest.approx(0.998)
    assert byol_momentum(100, 100, 0.996) == pytest.approx(1.0)
    method = small_byol()
    online = [p.detach().clone() for p in method.online.parameters()]
    with torch.no_grad():
        for p in method.online.parameters():
            p.add_(1.0)
    target = [p.detach().clone() for p in method.target.parameters()]
    method.after_optimizer_step(1, 2)  # halfway: momentum 0.95
    for new, old, query in zip(method.target.parameters(), target, online, strict=True):
        torch.testing.assert_close(new, 0.95 * old + 0.05 * (query + 1.0))


def test_loss_is_symmetric_bounded_and_trains_only_the_online_network() -> None:
    torch.manual_seed(0)
    method = small_byol()
    loss, logs = method(torch.randn(8, 2, 3, 32, 32))
    assert 0.0 <= float(loss.detach()) <= 8.0 and set(logs) == {"loss_byol", "target_momentum"}
    loss.backward()
    assert all(p.grad is None for p in method.target.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.predictor.parameters())


def test_a_short_run_on_the_asymmetric_views(tmp_path: Path) -> None:
    data = tiny_image_dataset(tmp_path / "data", {"train": 24, "test": 8}, image_size=16, num_classes=2)
    config = resolve_config(None, dict(
        data=str(data), method="byol", model="selfcon_resnet10_w16_cifar", model_kwargs={"exit_stages": []},
        method_kwargs={"out_dim": 16, "hidden_dim": 32}, image_size=16, batch_size=8, num_workers=0, max_steps=3,
        epochs=1, lr=0.05, warmup_epochs=0, log_every_steps=1, output_dir=str(tmp_path / "run")))
    assert config.augmentation == "byol"
    summary = train(config)
    assert summary["steps"] == 3 and torch.isfinite(torch.tensor(summary["final_loss"]))
