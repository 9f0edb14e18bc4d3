"""benchmarks/experiments/mixco_loss_terms.py on a tiny MoCo v2 + MixCo run trained here."""
from pathlib import Path

import pytest
from conftest import tiny_image_dataset

from benchmarks.experiments.mixco_loss_terms import epoch_means, main, terms_with_both_queues
from timm_selfcon.config import resolve_config
from timm_selfcon.engine.train import train


def test_checkpoints_are_measured_with_their_own_and_a_refilled_queue(tmp_path: Path) -> None:
    data = tiny_image_dataset(tmp_path / "data", {"train": 48})
    run_dir = tmp_path / "run"
    config = resolve_config(None, dict(
        data=str(data), method="moco_mixco", model="mixco_resnet18_cifar", model_kwargs={"layers": [1, 1, 1, 1]},
        method_kwargs={"queue_size": 16}, image_size=16, batch_size=8, num_workers=0, epochs=2, lr=0.5,
        warmup_epochs=0, save_every_steps=6, log_every_steps=1, output_dir=str(run_dir), seed=0, log_with="none"))
    train(config)
    assert set(epoch_means(run_dir / "metrics.jsonl")) == {"loss_moco", "loss_mix", "acc1"}

    measured = terms_with_both_queues(run_dir, [6, 12], refill=2, measured_batches=2)  # 2 x 8 keys fill the queue
    again = terms_with_both_queues(run_dir, [12], refill=2, measured_batches=2)
    assert again[12] == measured[12]  # reproducible: fixed batches, the mixing draws seeded
    for step in (6, 12):
        own, refilled = measured[step]["own_queue"], measured[step]["refilled_queue"]
        assert set(own) == set(refilled) == {"loss_moco", "loss_mix", "acc1"}
        assert own != refilled  # the saved queue holds keys of older key encoders (and the random initial ones)
    with pytest.raises(SystemExit, match=r"lacks the checkpoints of steps \[18\]"):
        terms_with_both_queues(run_dir, [12, 18], refill=2, measured_batches=2)


def test_a_work_dir_without_the_queue_runs_is_refused_before_any_work(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--work-dir", str(tmp_path / "nowhere")])
    assert stopped.value.code == 2 and "has no mixco/ folder" in capsys.readouterr().err
