"""One table of per-view augmentation specs feeds both data paths; asymmetric views need no code of their own."""
from collections.abc import Iterator

import pytest
import torch
from PIL import Image

from timm_selfcon.augmentations import AUGMENTATIONS, ViewSpec, register_augmentation, view_specs
from timm_selfcon.data import build_transform
from timm_selfcon.data.device import BatchAugment, device_pipelines
from timm_selfcon.errors import UserInputError

ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


@pytest.fixture
def asymmetric() -> Iterator[str]:
    """A two-view pipeline: view 0 always solarized, view 1 untouched (no flip, so a flat image stays flat)."""
    name = "test_asymmetric"
    register_augmentation(name, (ViewSpec(flip=False, solarize_p=1.0), ViewSpec(flip=False, blur_p=1.0)))
    yield name
    del AUGMENTATIONS[name]


def test_one_spec_serves_every_view_and_per_view_specs_must_match_the_views(asymmetric: str) -> None:
    assert view_specs("supcon", 3) == AUGMENTATIONS["supcon"] * 3
    assert view_specs(asymmetric, 2) == AUGMENTATIONS[asymmetric]
    with pytest.raises(ValueError, match=r"declares 2 views .* asked for 1"):
        view_specs(asymmetric, 1)
    with pytest.raises(ValueError, match="unknown augmentation pipeline 'nope'"):
        view_specs("nope", 1)


def test_specs_are_checked_and_registration_never_silently_replaces() -> None:
    with pytest.raises(ValueError, match=r"blur_p must be a probability in \[0, 1\], got 1.5"):
        ViewSpec(blur_p=1.5)
    with pytest.raises(ValueError, match="crop=False"):
        ViewSpec(crop=False)  # the evaluation view has no random op, and flip is one
    register_augmentation("supcon", AUGMENTATIONS["supcon"])  # the same specs again: a no-op
    with pytest.raises(ValueError, match="already registered"):
        register_augmentation("supcon", (ViewSpec(),))


def test_asymmetric_views_on_both_data_paths(asymmetric: str) -> None:
    flat = torch.full((2, 16, 16, 3), 200, dtype=torch.uint8)
    workers = build_transform(asymmetric, 16, ZERO, ONE, views=2)(Image.fromarray(flat[0].numpy()))
    device = BatchAugment(asymmetric, 16, ZERO, ONE, views=2)(flat, torch.arange(2), 0)
    assert workers.shape == (2, 3, 16, 16) and device.shape == (2, 2, 3, 16, 16)
    for views in (workers, device[0], device[1]):  # view 0 solarized (200 >= 128 -> 55), view 1 kept
        torch.testing.assert_close(views[0], torch.full_like(views[0], 55 / 255), atol=2e-3, rtol=0)
        torch.testing.assert_close(views[1], torch.full_like(views[1], 200 / 255), atol=2e-3, rtol=0)


def test_device_path_runs_every_training_pipeline_and_refuses_the_eval_view() -> None:
    assert set(device_pipelines()) == set(AUGMENTATIONS) - {"eval"}
    with pytest.raises(ValueError, match="'eval' has no data_pipeline=device version"):
        BatchAugment("eval", 16, ZERO, ONE)
    with pytest.raises(UserInputError, match="unknown augmentation pipeline 'nope'"):
        build_transform("nope", 16, ZERO, ONE)
