"""``data_pipeline=device``: the batched augmentation against torchvision's PIL pipeline, per-sample randomness,
determinism, the decoded-split cache and the memory cap.

Distribution tolerances (n = number of draws; one binomial standard error is at most 0.5 / sqrt(n)):
histogram bins of crop area and aspect ratio within 0.02 absolute frequency (n = 8000 each side: about 5 standard
errors of a difference), flip and grayscale rates within 0.03 of torchvision's (n = 4000 / 2000), per-channel
output mean within 0.05 and std within 5% (normalised units, 2000 real CIFAR-10 images per side).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from timm_selfcon.augmentations import AUGMENTATIONS
from timm_selfcon.data import CIFAR10_SUBSET, NORMALIZATION, build_transform, isolated_rng, load_image_dataset
from timm_selfcon.data.device import (
    BatchAugment,
    DeviceBatches,
    check_device_memory,
    counter_uniforms,
    crop_boxes,
    decode_split,
    device_cache_dir,
    resample_boxes,
)
from timm_selfcon.data.sampler import ResumableDistributedSampler

MEAN, STD = NORMALIZATION["cifar10"]
SIDE = 32


@pytest.fixture(scope="module")
def cifar_images() -> torch.Tensor:
    """2000 real CIFAR-10 images of the shipped subset, uint8 [N, 32, 32, 3]."""
    hf = load_image_dataset(CIFAR10_SUBSET, "train").select(range(2000))
    return decode_split(hf, "img", "label", SIDE, cache=False).images


def pil_views(pipeline: str, images: torch.Tensor) -> torch.Tensor:
    """torchvision's PIL pipeline on each image: float32 [N, 3, S, S]."""
    transform = build_transform(pipeline, SIDE, MEAN, STD)
    with isolated_rng(0):
        return torch.stack([transform(Image.fromarray(image.numpy()))[0] for image in images])


def device_views(pipeline: str, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return BatchAugment(pipeline, SIDE, MEAN, STD, seed=seed)(images, torch.arange(len(images)), 0)[:, 0]


def ramp_image() -> torch.Tensor:
    """Red rises with the column, green with the row: a crop's box can be read back from its output."""
    ramp = torch.arange(SIDE, dtype=torch.float64) * 255 / (SIDE - 1)
    image = torch.zeros(SIDE, SIDE, 3, dtype=torch.uint8)
    image[..., 0] = ramp.round().to(torch.uint8)[None, :]
    image[..., 1] = ramp.round().to(torch.uint8)[:, None]
    return image


def boxes_from_ramps(views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(area fraction, aspect ratio w/h, flipped) of ``ce`` views ``[N, 3, S, S]`` of :func:`ramp_image`."""
    pixels = views * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    per_pixel = 255 / (SIDE - 1) / 255  # one input column of the ramp in [0, 1] units
    # the centres of the first and last output pixels are w (1 - 1/S) input pixels apart
    width_span = (pixels[:, 0, :, -1] - pixels[:, 0, :, 0]).mean(1) / per_pixel / (1 - 1 / SIDE)
    height = (pixels[:, 1, -1, :] - pixels[:, 1, 0, :]).mean(1) / per_pixel / (1 - 1 / SIDE)
    width = width_span.abs()
    return width * height / SIDE**2, width / height, width_span < 0


def histogram(values: torch.Tensor, edges: list[float]) -> np.ndarray:
    counts, _ = np.histogram(values.numpy(), bins=edges)
    return counts / len(values)


# ------------------------------------------------------------------------------------------ against torchvision


def test_crop_area_ratio_and_flip_match_torchvision_end_to_end() -> None:
    n = 8000
    images = ramp_image().expand(n, -1, -1, -1).contiguous()
    ours = boxes_from_ramps(device_views("ce", images))
    transform = build_transform("ce", SIDE, MEAN, STD)
    pil = Image.fromarray(ramp_image().numpy())
    with isolated_rng(1):
        theirs = boxes_from_ramps(torch.stack([transform(pil)[0] for _ in range(n)]))
    area_edges = [0.15, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.05]
    ratio_edges = [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4]
    assert np.abs(histogram(ours[0], area_edges) - histogram(theirs[0], area_edges)).max() < 0.02
    assert np.abs(histogram(ours[1], ratio_edges) - histogram(theirs[1], ratio_edges)).max() < 0.02
    # scale (0.2, 1): the smallest and largest crops agree (the read-back underestimates small crops a little)
    assert abs(ours[0].min() - theirs[0].min()) < 0.02 and abs(ours[0].max() - theirs[0].max()) < 0.02
    assert abs(ours[2].float().mean() - theirs[2].float().mean()) < 0.03
    assert abs(ours[2].float().mean() - 0.5) < 0.03


@pytest.mark.parametrize("flip", [False, True])
def test_crop_resampling_matches_pil_resized_crop_within_one_grey_level(flip: bool) -> None:
    image = torch.randint(0, 256, (SIDE, SIDE, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    boxes = [(5, 3, 17, 20), (0, 0, SIDE, SIDE), (10, 10, 7, 9), (0, 25, 30, 7)]
    ours = resample_boxes(image.permute(2, 0, 1).float().expand(len(boxes), -1, -1, -1), torch.tensor(boxes),
                          torch.tensor([flip] * len(boxes)), SIDE)
    for out, box in zip(ours, boxes, strict=True):
        expected = v2.functional.resized_crop(Image.fromarray(image.numpy()), *box, [SIDE, SIDE], antialias=True)
        expected = torch.from_numpy(np.array(expected)).permute(2, 0, 1).float()
        torch.testing.assert_close(out, expected.flip(2) if flip else expected, atol=1.0, rtol=0)


def test_crop_sampling_is_torchvisions_get_params() -> None:
    """The same rule on 64x48 images: 10 tries, centre-crop fallback; compared as distributions of (h, w)."""
    n = 8000
    boxes = crop_boxes(*counter_uniforms(0, 0, torch.arange(n), 1)[:, 0, :22].split([10, 10, 1, 1], dim=1)[:2],
                       *counter_uniforms(0, 0, torch.arange(n), 1)[:, 0, 20:22].unbind(1), 48, 64)
    crop = v2.RandomResizedCrop(SIDE, scale=(0.2, 1.0))
    image = torch.zeros(3, 48, 64)
    with isolated_rng(2):
        theirs = torch.tensor([[p["top"], p["left"], p["height"], p["width"]]
                               for p in (crop.make_params([image]) for _ in range(n))], dtype=torch.float64)
    for column, edges in ((2, [0, 10, 20, 30, 40, 49]), (3, [0, 15, 25, 35, 45, 55, 65]), (0, [0, 5, 10, 20, 40])):
        assert np.abs(histogram(boxes[:, column], edges) - histogram(theirs[:, column], edges)).max() < 0.02
    assert (boxes[:, 0] + boxes[:, 2] <= 48).all() and (boxes[:, 1] + boxes[:, 3] <= 64).all()


@pytest.mark.parametrize("pipeline", ["supcon", "simclr", "moco_v2"])
def test_output_statistics_and_grayscale_rate_match_torchvision_on_real_images(pipeline: str,
                                                                               cifar_images: torch.Tensor) -> None:
    ours, theirs = device_views(pipeline, cifar_images), pil_views(pipeline, cifar_images)
    for name, mine, ref in (("mean", ours.mean((0, 2, 3)), theirs.mean((0, 2, 3))),
                            ("std", ours.std((0, 2, 3)), theirs.std((0, 2, 3)))):
        tolerance = 0.05 if name == "mean" else 0.05 * ref
        assert ((mine - ref).abs() <= tolerance).all(), f"{pipeline} per-channel {name}: {mine} vs {ref}"

    def grey_rate(views: torch.Tensor) -> float:
        pixels = views * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
        return float(((pixels.max(1).values - pixels.min(1).values).amax((1, 2)) < 1.5 / 255).float().mean())

    assert abs(grey_rate(ours) - grey_rate(theirs)) < 0.03 and abs(grey_rate(ours) - 0.2) < 0.03


@pytest.mark.parametrize(("pipeline", "strength"), [("supcon", 0.4), ("simclr", 0.8)])
def test_brightness_factors_span_torchvisions_range(pipeline: str, strength: float) -> None:
    """On a mid-grey image only brightness acts (contrast, saturation and hue leave grey alone): output / input
    is the factor, 1 where the jitter was not applied (p = 0.2) and uniform on [1 - s, 1 + s] otherwise."""
    n = 4000
    grey = torch.full((n, SIDE, SIDE, 3), 100, dtype=torch.uint8)
    [spec] = AUGMENTATIONS[pipeline]
    assert spec.jitter == (strength, v2.ColorJitter(hue=spec.jitter[1]).hue[1])
    augment = BatchAugment(pipeline, SIDE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    factors = augment(grey, torch.arange(n), 0)[:, 0, 0, 0, 0] * 255 / 100
    transform = build_transform(pipeline, SIDE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    with isolated_rng(3):
        theirs = torch.stack([transform(Image.fromarray(grey[0].numpy()))[0, 0, 0, 0] for _ in range(n)]) * 255 / 100
    low, high = 1 - strength, 1 + strength
    edges = [low - 0.01, *np.linspace(low + 0.01, high - 0.01, 8).tolist(), high + 0.02]
    edges = sorted({*edges, 0.995, 1.005})
    assert np.abs(histogram(factors, edges) - histogram(theirs, edges)).max() < 0.03
    assert factors.min() >= low - 1e-4 and factors.max() <= high + 1e-4
    assert factors.min() < low + 0.02 and factors.max() > high - 0.02
    assert abs(float((factors - 1).abs().lt(1e-6).float().mean()) - 0.2) < 0.03


def test_jitter_ops_match_torchvision_functional_for_a_given_order() -> None:
    """With the order and factors a sample drew, the result is torchvision's functional ops in that order."""
    from torchvision.transforms.v2 import functional as F

    images = torch.randint(0, 256, (64, 12, 12, 3), dtype=torch.uint8)
    u = counter_uniforms(5, 0, torch.arange(64), 1)[:, 0]
    x = images.permute(0, 3, 1, 2).float() / 255
    ours = BatchAugment.color_jitter(x.clone(), u, 0.4, 0.1)
    low = 0.6
    for i in range(64):
        expected = x[i]
        if u[i, 23] < 0.8:
            factors = [*(low + u[i, 24:27] * 0.8).tolist(), 0.1 * (2 * float(u[i, 27]) - 1)]
            ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
            for op in u[i, 28:32].argsort().tolist():
                expected = ops[op](expected, factors[op])
        torch.testing.assert_close(ours[i], expected, atol=3e-4, rtol=0)  # float32 HSV round trips


def test_blur_matches_torchvision_gaussian_blur() -> None:
    from timm_selfcon.data.device import _blur

    x = torch.rand(4, 3, 20, 20)
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    ours = _blur(x, sigma, torch.tensor([True, True, True, False]), 7)
    for i in range(3):
        expected = v2.functional.gaussian_blur(x[i], [7, 7], [float(sigma[i])] * 2)
        torch.testing.assert_close(ours[i], expected, atol=1e-5, rtol=0)
    assert torch.equal(ours[3], x[3])


# ------------------------------------------------------------------------------------------ per-sample randomness


def test_samples_of_a_batch_get_their_own_crop_flip_and_jitter() -> None:
    n = 64
    area, _ratio, flipped = boxes_from_ramps(device_views("ce", ramp_image().expand(n, -1, -1, -1).contiguous()))
    assert len(set(area.round(decimals=2).tolist())) > n // 2, "the batch shares one crop"
    assert 0 < int(flipped.sum()) < n, "the batch shares one flip"
    grey = torch.full((n, 8, 8, 3), 100, dtype=torch.uint8)
    brightness = BatchAugment("supcon", 8, (0.0,) * 3, (1.0,) * 3)(grey, torch.arange(n), 0)[:, 0, 0, 0, 0]
    assert len(set(brightness.round(decimals=4).tolist())) > n // 2, "the batch shares one jitter"
    orders = {tuple(row) for row in counter_uniforms(0, 0, torch.arange(2400), 1)[:, 0, 28:32].argsort(1).tolist()}
    assert len(orders) == math.factorial(4), "every order of the four jitter ops occurs"


def test_a_samples_views_depend_only_on_seed_epoch_and_index(cifar_images: torch.Tensor) -> None:
    augment = BatchAugment("simclr", SIDE, MEAN, STD, views=2, seed=7)
    batch = augment(cifar_images[:6], torch.arange(6), epoch=3)
    alone = augment(cifar_images[4:5], torch.tensor([4]), epoch=3)
    assert torch.equal(batch[4], alone[0])  # neither batch composition nor position matters
    assert not torch.equal(batch[4, 0], batch[4, 1])  # two independent views
    assert not torch.equal(augment(cifar_images[4:5], torch.tensor([4]), epoch=4), alone)
    assert not torch.equal(BatchAugment("simclr", SIDE, MEAN, STD, views=2, seed=8)(
        cifar_images[4:5], torch.tensor([4]), epoch=3), alone)


def test_device_batches_follow_the_samplers_shards() -> None:
    data = decode_split(load_image_dataset(CIFAR10_SUBSET, "test").select(range(40)), "img", "label", SIDE, cache=False)
    augment = BatchAugment("supcon", SIDE, MEAN, STD)
    batches = []
    for rank in range(2):
        sampler = ResumableDistributedSampler(40, 8, num_replicas=2, rank=rank, seed=3)
        sampler.set_epoch(1)
        sampler.set_start_step(2)
        batches.append(list(DeviceBatches(data, augment, sampler)))
    reference = ResumableDistributedSampler(40, 8, seed=3)
    for step, (first, second) in enumerate(zip(*batches, strict=True), start=2):
        assert torch.cat([first["index"], second["index"]]).tolist() == reference.global_batch(step, epoch=1)
        assert torch.equal(first["label"], data.labels[first["index"]])
        assert first["image"].shape == (4, 1, 3, SIDE, SIDE)
    assert len(batches[0]) == 5 - 2


# ------------------------------------------------------------------------------------------ storage and bad input


def test_decoded_split_is_cached_and_reused(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMM_SELFCON_DEVICE_CACHE", str(tmp_path))
    hf = load_image_dataset(CIFAR10_SUBSET, "test").select(range(10))
    first = decode_split(hf, "img", "label", 16)
    [cached] = list(tmp_path.iterdir())  # written to a temporary name and renamed: nothing else is left
    assert cached.name.endswith("-img-label-16px.safetensors") and hf._fingerprint in cached.name
    assert first.images.shape == (10, 16, 16, 3) and first.images.dtype == torch.uint8
    again = decode_split(hf, "img", "label", 16)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, torch.tensor(hf["label"]))
    expected = v2.functional.center_crop(v2.functional.resize(hf[3]["img"], 16, antialias=True), [16, 16])
    assert torch.equal(first.images[3], torch.from_numpy(np.array(expected)))


def test_an_undecodable_image_is_warned_about_also_when_read_from_the_cache(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache hit warns as the decoding did: under torchrun every process decodes, and the main process (the one
    whose warnings are shown) may find the file another process has just written (a CI failure, session 9)."""
    from conftest import tiny_image_dataset

    from timm_selfcon.data import CorruptImageWarning

    monkeypatch.setenv("TIMM_SELFCON_DEVICE_CACHE", str(tmp_path / "cache"))
    hf = load_image_dataset(str(tiny_image_dataset(tmp_path / "data", {"train": 6}, corrupt_rows=[4])), "train")
    for reading in ("decoding", "cache hit"):
        with pytest.warns(CorruptImageWarning) as caught:
            decoded = decode_split(hf, "img", "label", 16)
        messages = [str(w.message) for w in caught]
        assert len(messages) == 1 and messages[0].startswith("sample 4: cannot decode image ("), (reading, messages)
        assert decoded.substituted_indices == [4] and int(decoded.images[4].float().mean()) == 128, reading
    assert "found when the split was decoded into" in messages[0]  # the cache hit says where it was found


def test_the_cache_lives_in_the_datasets_cache_unless_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.delenv("TIMM_SELFCON_DEVICE_CACHE", raising=False)
    assert device_cache_dir() == Path(datasets.config.HF_DATASETS_CACHE) / "timm_selfcon_device"
    monkeypatch.setenv("TIMM_SELFCON_DEVICE_CACHE", "/somewhere/else")
    assert device_cache_dir() == Path("/somewhere/else")


def test_a_split_above_the_memory_cap_is_refused_naming_size_cap_and_the_alternative() -> None:
    assert check_device_memory(50_000, 32, 1.0) == pytest.approx(50_000 * 32 * 32 * 3 / 2**30)
    with pytest.raises(ValueError, match=r"'train' split \(1281167 images at 224x224\) takes 179\.\d\d GiB as uint8, "
                                         r"above device_data_max_gib=24\.0; use data_pipeline=workers"):
        check_device_memory(1_281_167, 224, 24.0)


def test_pipelines_without_a_device_version_are_refused() -> None:
    with pytest.raises(ValueError, match=r"augmentation 'eval' has no data_pipeline=device version"):
        BatchAugment("eval", SIDE, MEAN, STD)
