"""Augmentation pipelines: shapes, views, validation, and the eval pipeline's exactness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from timm_selfcon.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    PIPELINES,
    blur_kernel_size,
    build_transform,
    isolated_rng,
)


def random_image(height: int = 40, width: int = 48, seed: int = 0, mode: str = "RGB") -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("views", [1, 2])
def test_every_pipeline_returns_views_channels_height_width(pipeline: str, views: int) -> None:
    if len(PIPELINES[pipeline]) > 1:  # a pipeline with one spec per view (BYOL's) has its own number of views
        views = len(PIPELINES[pipeline])
    transform = build_transform(pipeline, 32, CIFAR10_MEAN, CIFAR10_STD, views=views)
    out = transform(random_image())
    assert out.shape == (views, 3, 32, 32)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_two_views_are_independent_draws() -> None:
    transform = build_transform("supcon", 32, CIFAR10_MEAN, CIFAR10_STD, views=2)
    with isolated_rng(3):
        out = transform(random_image())
    assert out.shape == (2, 3, 32, 32)
    assert not torch.equal(out[0], out[1])


def test_same_seed_same_views() -> None:
    transform = build_transform("simclr", 32, CIFAR10_MEAN, CIFAR10_STD, views=2)
    image = random_image()
    with isolated_rng(11):
        first = transform(image)
    with isolated_rng(11):
        second = transform(image)
    assert torch.equal(first, second)


def test_grayscale_input_becomes_three_channels() -> None:
    transform = build_transform("moco_v2", 32, CIFAR10_MEAN, CIFAR10_STD)
    assert transform(random_image(mode="L")).shape == (1, 3, 32, 32)


def test_eval_at_native_size_is_to_tensor_and_normalize() -> None:
    image = random_image(32, 32)
    transform = build_transform("eval", 32, CIFAR10_MEAN, CIFAR10_STD, crop_pct=1.0)
    expected = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0
    expected = (expected - torch.tensor(CIFAR10_MEAN)[:, None, None]) / torch.tensor(CIFAR10_STD)[:, None, None]
    torch.testing.assert_close(transform(image)[0], expected, rtol=0, atol=1e-6)


def test_eval_resize_then_center_crop() -> None:
    # 0.875 at 224: shorter side to 256, center 224 — a 256x512 image keeps its middle 224x224
    image = random_image(256, 512)
    out = build_transform("eval", 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), crop_pct=0.875)(image)[0]
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0
    torch.testing.assert_close(out, pixels[:, 16:240, 144:368], rtol=0, atol=1e-6)


def test_ce_pipeline_only_crops_and_flips() -> None:
    # a uniform image stays uniform under crop+flip, but colour jitter (supcon) changes its colour
    image = Image.new("RGB", (32, 32), (200, 30, 90))
    ce = build_transform("ce", 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    supcon = build_transform("supcon", 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    colour = torch.tensor([200, 30, 90]).float()[:, None, None] / 255.0
    changed = 0
    for seed in range(10):
        with isolated_rng(seed):
            torch.testing.assert_close(ce(image)[0], colour.expand(3, 32, 32), rtol=0, atol=1e-6)
        with isolated_rng(seed):
            changed += not torch.allclose(supcon(image)[0], colour.expand(3, 32, 32), atol=1e-3)
    assert changed >= 5


@pytest.mark.parametrize(("size", "kernel"), [(224, 23), (64, 7), (32, 3), (96, 9)])
def test_blur_kernel_is_odd_tenth_of_size(size: int, kernel: int) -> None:
    assert blur_kernel_size(size) == kernel


def test_simclr_blur_kernel_at_224() -> None:
    transform = build_transform("simclr", 224, CIFAR10_MEAN, CIFAR10_STD)
    assert "kernel_size=(23, 23)" in repr(transform)


def test_unknown_pipeline_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown augmentation pipeline 'not_a_pipeline'") as info:
        build_transform("not_a_pipeline", 32, CIFAR10_MEAN, CIFAR10_STD)
    for name in PIPELINES:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 0}, "image_size"),
        ({"views": 0}, "views"),
        ({"mean": (0.5, 0.5)}, "mean must have 3 values"),
        ({"std": (0.2, 0.0, 0.2)}, "std must be positive"),
        ({"crop_pct": 1.5}, "crop_pct"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    arguments = {"image_size": 32, "mean": CIFAR10_MEAN, "std": CIFAR10_STD, **kwargs}
    views = arguments.pop("views", 1)
    crop_pct = arguments.pop("crop_pct", 1.0)
    with pytest.raises(ValueError, match=message):
        build_transform("supcon", views=views, crop_pct=crop_pct, **arguments)
