"""Learning-rate schedules: the official per-epoch cosine with warm-up, and the per-step variant."""
import itertools
import math

import pytest

from timm_selfcon.engine.schedule import lr_at


def test_official_cosine_is_set_per_epoch_counting_epochs_from_one() -> None:
    values = [lr_at(step, 10, epochs=4, lr=1.0, min_lr_ratio=0.0) for step in range(40)]
    per_epoch = [values[i * 10: (i + 1) * 10] for i in range(4)]
    assert all(len(set(epoch)) == 1 for epoch in per_epoch)
    assert [epoch[0] for epoch in per_epoch] == pytest.approx(
        [(1 + math.cos(math.pi * e / 4)) / 2 for e in (1, 2, 3, 4)])  # the last epoch sits at eta_min


def test_warmup_is_linear_per_step_up_to_the_cosine_value() -> None:
    first = [lr_at(step, 10, epochs=4, lr=1.0, min_lr_ratio=0.0, warmup_epochs=1, warmup_from=0.1)
             for step in range(10)]
    assert first[0] == pytest.approx(0.1)
    assert first[5] == pytest.approx(0.1 + 0.5 * ((1 + math.cos(math.pi / 4)) / 2 - 0.1))


def test_cosine_per_step_decays_every_step_to_eta_min_at_the_last_step() -> None:
    kwargs = dict(epochs=3, lr=0.2, schedule="cosine_per_step", min_lr_ratio=0.01, warmup_epochs=1,
                  warmup_from=0.002)
    values = [lr_at(step, 10, **kwargs) for step in range(30)]
    assert values[0] == pytest.approx(0.002) and values[10] == pytest.approx(0.2)
    assert all(a > b for a, b in itertools.pairwise(values[10:]))
    assert values[-1] == pytest.approx(0.002)
    assert values[20] > 0.05  # the last epoch still learns (the per-epoch form would be at eta_min)


def test_simclr_official_keeps_lr_for_ten_epochs() -> None:
    assert lr_at(99, 10, epochs=100, lr=0.5, schedule="simclr_official") == 0.5
    assert lr_at(100, 10, epochs=100, lr=0.5, schedule="simclr_official") < 0.5


def test_unknown_schedule_is_named() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        lr_at(0, 10, epochs=1, lr=0.1, schedule="step")
