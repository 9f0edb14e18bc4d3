"""``data_pipeline=device``: the split decoded once to uint8 on the accelerator, each batch augmented there.

The fastest CIFAR trainers keep the whole dataset on the GPU and augment whole batches with tensor ops; this
module does that for every training pipeline of :mod:`timm_selfcon.augmentations` (the same per-view specs as
the ``workers`` path; each view of a sample follows its own spec), with **per-sample** random parameters
(torchvision's v2 transforms applied to a batch tensor draw one set for the whole batch) and torchvision's
sampling rules:

- RandomResizedCrop(scale 0.2-1, ratio 3/4-4/3): 10 tries of (area, log-ratio), the first that fits, else the
  centre-crop fallback; top/left uniform. Resampled bilinearly with ``affine_grid`` / ``grid_sample``, the sampling
  points clamped to the box, which equals PIL's crop-then-resize with its edge renormalisation when upscaling
  (crops never exceed the stored image, so the path never downscales).
- Horizontal flip p=0.5, folded into the crop's affine map (exact: every later op is flip-symmetric).
- RandomApply(ColorJitter, p=0.8): brightness, contrast, saturation, hue factors and an order of the four
  ops drawn per sample, with torchvision's formulas (contrast and saturation blend with the ITU-R 601-2 grey,
  clamping to [0, 1] after each op; hue rotates in HSV).
- RandomGrayscale, Gaussian blur with sigma ~ U(0.1, 2) and the pipelines' kernel size (reflect padding) and
  solarize (pixels >= 128/255 inverted), each with its spec's probability; normalisation. Outputs stay float32
  between ops (PIL rounds to uint8 after each op).

Randomness: every parameter of a sample comes from a counter-based hash of ``(seed, epoch, index, view, draw)``
(lowbias32 applied twice, exact in int64 arithmetic on any device), so, as on the ``workers`` path, a sample's
augmentation depends only on ``(seed, epoch, index)``: not on the batch it falls in, the process, the number of
processes, or where a run was resumed. The order is :class:`ResumableDistributedSampler`'s shared permutation,
each process taking its contiguous slice of every global batch (``drop_last``).

Storage: images whose size is not ``image_size`` are resized (shorter side, antialiased) and centre-cropped to
``image_size`` once, at decoding; RandomResizedCrop then samples from that square (the ``workers`` path crops
from the full image, which differs for large non-square images such as ImageNet's). The decoded split is cached
as safetensors in ``$TIMM_SELFCON_DEVICE_CACHE`` or else ``<datasets cache>/timm_selfcon_device``
(``datasets.config.HF_DATASETS_CACHE``), named by the dataset's fingerprint, columns and image size, written
to a temporary name and renamed into place.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torchvision.transforms.v2 import functional as TF

from timm_selfcon.augmentations import AUGMENTATIONS, ViewSpec, view_specs
from timm_selfcon.data.datasets import CorruptImageWarning, _decode_rgb, strict_data_message, undecodable_description
from timm_selfcon.data.sampler import ResumableDistributedSampler, derive_seed
from timm_selfcon.data.transforms import blur_kernel_size
from timm_selfcon.errors import UserInputError

__all__ = [
    "BatchAugment",
    "DeviceBatches",
    "DeviceData",
    "check_device_memory",
    "counter_uniforms",
    "decode_split",
    "device_cache_dir",
    "device_pipelines",
    "epoch_key",
]

#: Uniform draws reserved per sample and view (the layout is in :class:`BatchAugment`).
DRAWS_PER_VIEW = 40
_CROP_SCALE = (0.2, 1.0)
_CROP_RATIO = (3 / 4, 4 / 3)
_GREY = (0.299, 0.587, 0.114)  # ITU-R 601-2, what PIL's convert("L") and torchvision use


_SOLARIZE_THRESHOLD = 128 / 255  # PIL's RandomSolarize(threshold=128) on uint8


def device_pipelines() -> list[str]:
    """The pipelines of :mod:`timm_selfcon.augmentations` this path runs: every one whose views all crop (the
    deterministic ``eval`` view is not a training pipeline)."""
    return [name for name, specs in AUGMENTATIONS.items() if all(spec.crop for spec in specs)]


# --------------------------------------------------------------------------------------------- randomness

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``x * constant mod 2**32`` for int64 ``x`` in [0, 2**32) without int64 overflow (16-bit halves)."""
    low = x * (constant & 0xFFFF)
    high = ((x * (constant >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 (C. Wellons): a bijection of [0, 2**32) with good avalanche, on int64 tensors."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def epoch_key(seed: int, epoch: int) -> tuple[int, int]:
    """The two 32-bit words that key ``(seed, epoch)``'s draws."""
    key = derive_seed("device-augment", seed, epoch)
    return key & _MASK32, (key >> 32) & _MASK32


def _uniforms(index: torch.Tensor, w0: int | torch.Tensor, w1: int | torch.Tensor, views: int, draws: int) -> torch.Tensor:
    per_sample = _hash32((index.long() & _MASK32) ^ w0)
    counter = torch.arange(views * draws, device=index.device, dtype=torch.long)
    bits = _hash32(_hash32((per_sample[:, None] + counter[None, :]) & _MASK32) ^ w1)
    return ((bits >> 8).float() * 2.0**-24).view(-1, views, draws)


def counter_uniforms(seed: int, epoch: int, index: torch.Tensor, views: int, draws: int = DRAWS_PER_VIEW) -> torch.Tensor:
    """Uniforms in [0, 1) that depend only on ``(seed, epoch, index, view, draw)``: float32 ``[B, views, draws]``.

    ``index`` is int64 ``[B]`` (dataset rows, on any device). 24 bits of each hash are used.
    """
    return _uniforms(index, *epoch_key(seed, epoch), views, draws)


# --------------------------------------------------------------------------------------------- augmentation


def _grey(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` -> luma ``[B, 1, H, W]``."""
    r, g, b = x.unbind(1)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend``: ``factor * x + (1 - factor) * other`` clamped to [0, 1]; ``factor`` ``[B]``."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0.0, 1.0)


def _adjust(x: torch.Tensor, op: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per sample, brightness (``op`` 0), contrast (1) or saturation (2) of ``x`` ``[B, 3, H, W]`` by ``factor``
    ``[B]`` (1: the identity): each is a blend towards black, the mean grey level or the grey image."""
    grey = _grey(x)
    op = op.view(-1, 1, 1, 1)
    target = torch.where(op == 0, torch.zeros_like(grey),
                         torch.where(op == 1, grey.mean(dim=(1, 2, 3), keepdim=True), grey))
    return _blend(x, target, factor)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of ``x`` ``[B, 3, H, W]`` in [0, 1] by ``shift`` ``[B]`` turns (value and saturation kept).

    HSV -> RGB uses the closed form ``c_n = v - v s clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6 h) mod 6``,
    ``n = 5, 3, 1`` for R, G, B.
    """
    maxc, argmax = x.max(dim=1)
    minc = x.min(dim=1).values
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    r, g, b = x.unbind(1)
    sector = torch.stack([(g - b) / safe, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe], dim=1)
    hue6 = sector.gather(1, argmax.unsqueeze(1)).squeeze(1)
    hue6 = torch.where(chroma > 0, hue6, torch.zeros_like(hue6)) + 6.0 * shift.view(-1, 1, 1)
    n = (5.0 - 2.0 * torch.arange(3, device=x.device, dtype=x.dtype)).view(1, 3, 1, 1)  # no host-to-device copy
    k = torch.remainder(n + hue6.unsqueeze(1), 6.0)
    return maxc.unsqueeze(1) - chroma.unsqueeze(1) * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def _blur(x: torch.Tensor, sigma: torch.Tensor, apply: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` ``[B]`` where ``apply`` ``[B]`` (reflect padding)."""
    batch, channels, height, width = x.shape
    offsets = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - (kernel_size - 1) / 2
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).to(x.dtype).expand_as(kernel)
    kernel = torch.where(apply[:, None], kernel, identity).repeat_interleave(channels, dim=0)  # [B*C, k]
    pad = (kernel_size - 1) // 2
    flat = x.reshape(1, batch * channels, height, width)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernel.view(-1, 1, 1, kernel_size),
                    groups=batch * channels)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), kernel.view(-1, 1, kernel_size, 1),
                    groups=batch * channels)
    return flat.view(batch, channels, height, width)


def crop_boxes(u_scale: torch.Tensor, u_ratio: torch.Tensor, u_top: torch.Tensor, u_left: torch.Tensor,
               height: int, width: int) -> torch.Tensor:
    """torchvision's RandomResizedCrop.get_params, vectorised: float64 ``[B, 4]`` boxes ``(top, left, h, w)``.

    ``u_scale``, ``u_ratio``: ``[B, 10]`` uniforms for the 10 tries; ``u_top``, ``u_left``: ``[B]``.
    """
    area = height * width
    target = area * (_CROP_SCALE[0] + u_scale.double() * (_CROP_SCALE[1] - _CROP_SCALE[0]))
    log_lo, log_hi = math.log(_CROP_RATIO[0]), math.log(_CROP_RATIO[1])
    aspect = torch.exp(log_lo + u_ratio.double() * (log_hi - log_lo))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)  # the first try that fits
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    in_ratio = width / height
    if in_ratio < _CROP_RATIO[0]:
        fallback_w, fallback_h = width, round(width / _CROP_RATIO[0])
    elif in_ratio > _CROP_RATIO[1]:
        fallback_w, fallback_h = round(height * _CROP_RATIO[1]), height
    else:
        fallback_w, fallback_h = width, height
    found = fits.any(dim=1)
    w = torch.where(found, w, torch.full_like(w, fallback_w))
    h = torch.where(found, h, torch.full_like(h, fallback_h))
    top = torch.where(found, torch.floor(u_top.double() * (height - h + 1)), torch.floor((height - h) / 2))
    left = torch.where(found, torch.floor(u_left.double() * (width - w + 1)), torch.floor((width - w) / 2))
    return torch.stack([top, left, h, w], dim=1)


def resample_boxes(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``boxes`` ``[N, 4]`` ``(top, left, h, w)`` of ``x`` ``[N, C, H, W]``, flip where ``flip`` ``[N]``, and
    resize to ``[N, C, size, size]`` bilinearly (``affine_grid`` / ``grid_sample``, align_corners=False)."""
    height, width = x.shape[-2:]
    top, left, h, w = boxes.double().unbind(1)
    sign = torch.where(flip, -1.0, 1.0).double()
    # output pixel centre x_o in [-1, 1] maps to the box's columns left .. left + w
    theta = torch.zeros(x.shape[0], 2, 3, dtype=torch.float64, device=x.device)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta.float(), [x.shape[0], x.shape[1], size, size], align_corners=False)
    # PIL crops, then resizes: taps never reach outside the box (the centres of its first and last pixels)
    low = torch.stack([(2 * left + 1) / width - 1, (2 * top + 1) / height - 1], dim=1).float().view(-1, 1, 1, 2)
    high = torch.stack([(2 * (left + w) - 1) / width - 1, (2 * (top + h) - 1) / height - 1], dim=1)
    grid = torch.maximum(torch.minimum(grid, high.float().view(-1, 1, 1, 2)), low)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class BatchAugment:
    """A pipeline of :mod:`timm_selfcon.augmentations` applied to a batch with per-sample parameters, on the batch's
    device; view ``v`` of every sample follows the pipeline's spec of view ``v``.

    Call with uint8 images ``[B, H, W, 3]``, their dataset rows ``index`` int64 ``[B]`` and the ``epoch``;
    returns normalised float32 views ``[B, V, 3, S, S]`` (``S = image_size``).

    Draws per view (of :data:`DRAWS_PER_VIEW`): 0-9 crop area, 10-19 crop log-ratio, 20 top, 21 left,
    22 flip, 23 jitter applied, 24-27 brightness, contrast, saturation, hue factors, 28-31 keys whose order
    is the order of the four jitter ops, 32 grayscale, 33 blur applied, 34 blur sigma, 35 solarize.
    """

    def __init__(self, pipeline: str, image_size: int, mean: tuple[float, ...], std: tuple[float, ...], *,
                 views: int = 1, seed: int = 0, compile: bool = False) -> None:
        if pipeline not in device_pipelines():
            raise ValueError(f"augmentation {pipeline!r} has no data_pipeline=device version; expected one of "
                             f"{sorted(device_pipelines())} (or data_pipeline=workers)")
        if isinstance(views, bool) or not isinstance(views, int) or views < 1:
            raise ValueError(f"views must be a positive int, got {views!r}")
        self.pipeline, self.image_size, self.views, self.seed = pipeline, image_size, views, seed
        self.specs = view_specs(pipeline, views)
        self.mean, self.std = tuple(mean), tuple(std)
        self.kernel_size = blur_kernel_size(image_size)
        # compile=True fuses the ~100 small element-wise kernels of a batch (shapes are static with drop_last)
        self._augment = torch.compile(self._views, dynamic=False) if compile else self._views
        self._constants: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"BatchAugment(pipeline={self.pipeline!r}, image_size={self.image_size}, views={self.views})"

    def parameters(self, index: torch.Tensor, epoch: int) -> torch.Tensor:
        """The uniforms of every sample and view, float32 ``[B * V, DRAWS_PER_VIEW]`` (sample-major)."""
        return counter_uniforms(self.seed, epoch, index, self.views).flatten(0, 1)

    def __call__(self, images: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images [B, H, W, 3], got {images.dtype} {tuple(images.shape)}")
        if (epoch, images.device) not in self._constants:
            # once per epoch and device: a host-to-device copy of a pageable tensor on every step would synchronise
            self._constants = {(epoch, images.device): (
                torch.tensor(epoch_key(self.seed, epoch), device=images.device),
                torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1),
                torch.tensor(self.std, device=images.device).view(1, 3, 1, 1))}
        key, mean, std = self._constants[(epoch, images.device)]
        return self._augment(images, index, key, mean, std)

    def _views(self, images: torch.Tensor, index: torch.Tensor, key: torch.Tensor, mean: torch.Tensor,
               std: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = images.shape
        size = self.image_size
        u = _uniforms(index, key[0], key[1], self.views, DRAWS_PER_VIEW).flatten(0, 1)
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        if self.views > 1:
            x = x.repeat_interleave(self.views, dim=0)
        x = self.resized_crop(x, u, height, width, self._flip_p(u, batch))
        if len(set(self.specs)) == 1:  # the same spec for every view (all but asymmetric pipelines): one pass
            x = self.colour_ops(x, u, self.specs[0])
        else:  # rows are sample-major (row = sample * V + view): each view's rows with its own spec
            x = x.view(batch, self.views, 3, size, size)
            u = u.view(batch, self.views, -1)
            x = torch.stack([self.colour_ops(x[:, v], u[:, v], spec) for v, spec in enumerate(self.specs)], dim=1)
        return ((x.reshape(-1, 3, size, size) - mean) / std).view(batch, self.views, 3, size, size)

    def _flip_p(self, u: torch.Tensor, batch: int) -> torch.Tensor | float:
        """The flip probability of every row: one float when all views agree, else ``[B * V]``."""
        probabilities = [0.5 if spec.flip else 0.0 for spec in self.specs]
        if len(set(probabilities)) == 1:
            return probabilities[0]
        per_view = torch.stack([u.new_full((), p) for p in probabilities])  # filled on u's device: no copy
        return per_view.repeat(batch)

    def colour_ops(self, x: torch.Tensor, u: torch.Tensor, spec: ViewSpec) -> torch.Tensor:
        """The spec's colour jitter, grayscale, blur and solarize of ``x`` ``[N, 3, S, S]`` with draws ``u``."""
        if spec.jitter is not None:
            x = self.color_jitter(x, u, *spec.jitter)
        if spec.grayscale_p:
            x = torch.where((u[:, 32] < spec.grayscale_p).view(-1, 1, 1, 1), _grey(x).expand_as(x), x)
        if spec.blur_p:
            sigma = 0.1 + u[:, 34] * (2.0 - 0.1)
            x = _blur(x, sigma, u[:, 33] < spec.blur_p, self.kernel_size)
        if spec.solarize_p:
            solarize = (u[:, 35] < spec.solarize_p).view(-1, 1, 1, 1) & (x >= _SOLARIZE_THRESHOLD)
            x = torch.where(solarize, 1.0 - x, x)
        return x

    def resized_crop(self, x: torch.Tensor, u: torch.Tensor, height: int, width: int,
                     flip_p: torch.Tensor | float = 0.5) -> torch.Tensor:
        """RandomResizedCrop + horizontal flip (with probability ``flip_p``, a float or ``[N]``) of ``x``
        ``[N, 3, H, W]`` to ``[N, 3, S, S]``."""
        boxes = crop_boxes(u[:, 0:10], u[:, 10:20], u[:, 20], u[:, 21], height, width)
        return resample_boxes(x, boxes, u[:, 22] < flip_p, self.image_size)

    @staticmethod
    def color_jitter(x: torch.Tensor, u: torch.Tensor, strength: float, hue: float) -> torch.Tensor:
        """RandomApply(ColorJitter(strength, strength, strength, hue), p=0.8) with a per-sample order."""
        applied = u[:, 23] < 0.8
        low = max(0.0, 1.0 - strength)
        factors = low + u[:, 24:27] * (1.0 + strength - low)  # [N, 3]: brightness, contrast, saturation
        factors = torch.where(applied[:, None], factors, torch.ones_like(factors))
        shift = hue * (2.0 * u[:, 27] - 1.0)
        order = u[:, 28:32].argsort(dim=1)  # [N, 4]: the op at each slot (3 = hue)
        hue_slot = order.argsort(dim=1)[:, 3]
        with_one = torch.cat([factors, torch.ones_like(factors[:, :1])], dim=1)  # hue's slot: no blend
        # blends before the hue shift, in their order; then the hue (computed once); then the blends after it
        for slots, before in ((range(3), True), (range(1, 4), False)):
            for slot in slots:
                op = order[:, slot]
                active = (slot < hue_slot) == before
                factor = torch.where(active, with_one.gather(1, op[:, None]).squeeze(1), with_one[:, 3])
                x = _adjust(x, op, factor)
            if before:
                x = torch.where(applied.view(-1, 1, 1, 1), _shift_hue(x, shift), x)
        return x


# --------------------------------------------------------------------------------------------- storage


def device_cache_dir() -> Path:
    """Where decoded splits are cached: ``$TIMM_SELFCON_DEVICE_CACHE``, else ``<datasets cache>/timm_selfcon_device``."""
    override = os.environ.get("TIMM_SELFCON_DEVICE_CACHE")
    return Path(override) if override else Path(datasets.config.HF_DATASETS_CACHE) / "timm_selfcon_device"


def check_device_memory(num_images: int, image_size: int, max_gib: float, split: str = "train") -> float:
    """GiB the split takes as uint8 ``[N, S, S, 3]``; a ValueError when above ``max_gib``."""
    gib = num_images * image_size * image_size * 3 / 2**30
    if gib > max_gib:
        raise ValueError(
            f"the {split!r} split ({num_images} images at {image_size}x{image_size}) takes {gib:.2f} GiB as uint8, "
            f"above device_data_max_gib={max_gib}; use data_pipeline=workers, or raise device_data_max_gib if "
            "each process's accelerator has the room")
    return gib


def _to_square(image: Image.Image, size: int) -> np.ndarray:
    if image.size != (size, size):
        image = TF.center_crop(TF.resize(image, size, antialias=True), [size, size])
    return np.asarray(image, dtype=np.uint8)


@dataclass
class DeviceData:
    """A decoded split: ``images`` uint8 ``[N, S, S, 3]``, ``labels`` int64 ``[N]`` (-1: no label) and the rows
    whose image could not be decoded (replaced by mid-grey, as on the ``workers`` path)."""

    images: torch.Tensor
    labels: torch.Tensor
    substituted_indices: list[int]
    hf_dataset: Any = None
    label_column: str | None = None
    image_column: str | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> DeviceData:
        return DeviceData(self.images.to(device), self.labels.to(device), self.substituted_indices,
                          self.hf_dataset, self.label_column, self.image_column)


def warn_substituted(index: int, error: Exception) -> None:
    """The :class:`CorruptImageWarning` for row ``index`` of a decoded split, replaced by a mid-grey image."""
    warnings.warn(f"sample {index}: cannot decode image ({type(error).__name__}: {error}); using a mid-grey "
                  "substitute with the original label (strict_data=True to fail)", CorruptImageWarning, stacklevel=3)


def decode_split(hf_dataset: datasets.Dataset, image_column: str, label_column: str | None, image_size: int, *,
                 strict_data: bool = False, cache: bool = True, chunk: int = 1000,
                 where: str = "the split") -> DeviceData:
    """Decode every image of ``hf_dataset`` once to uint8 ``[N, S, S, 3]``, or read it from the cache.

    ``strict_data``: an undecodable image is a :class:`UserInputError` naming every such image (of ``where``, e.g.
    ``"'data' [train]"``) instead of a mid-grey substitute; otherwise each substitute is a
    :class:`CorruptImageWarning`, raised again on every cache hit.

    The cache file is named by ``hf_dataset._fingerprint`` (which changes with the data files and with any
    filter / map), the columns and ``image_size``; see :func:`device_cache_dir`.
    """
    if not isinstance(hf_dataset, datasets.Dataset):
        raise TypeError(f"data_pipeline=device needs a map-style datasets.Dataset, got {type(hf_dataset).__name__}")
    name = f"{hf_dataset._fingerprint}-{image_column}-{label_column}-{image_size}px.safetensors"
    path = device_cache_dir() / name
    # the rows undecoded: the data holds their bytes or paths (a corrupt image is then named, never decoded again)
    plain = hf_dataset
    if isinstance(hf_dataset.features[image_column], datasets.Image):
        plain = hf_dataset.cast_column(image_column, datasets.Image(decode=False))
    if cache and path.is_file():
        tensors = load_file(str(path))
        substituted = tensors["substituted"].tolist()
        found = ValueError(f"found when the split was decoded into {path}")
        if substituted and strict_data:
            problems = [undecodable_description(index, plain[index][image_column], found) for index in substituted]
            raise UserInputError(strict_data_message(problems, where))
        for index in substituted:  # the same warnings as when decoding: a cache hit (another process's) hides none
            warn_substituted(index, found)
        return DeviceData(tensors["images"], tensors["labels"], substituted, plain, label_column, image_column)
    count = len(plain)
    images = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    labels = np.full(count, -1, dtype=np.int64)
    substituted: list[int] = []
    problems: list[str] = []  # strict_data: every undecodable image, named together once the split is read
    for start in range(0, count, chunk):
        rows = plain[start:start + chunk]
        for offset, cell in enumerate(rows[image_column]):
            index = start + offset
            try:
                images[index] = _to_square(_decode_rgb(cell), image_size)
            except Exception as error:  # any decoder failure of this one cell, as on the workers path
                if strict_data:
                    problems.append(undecodable_description(index, cell, error))
                    continue
                images[index] = 128
                substituted.append(index)
                warn_substituted(index, error)
        if label_column is not None:
            labels[start:start + len(rows[label_column])] = [-1 if v is None else int(v) for v in rows[label_column]]
    if problems:
        raise UserInputError(strict_data_message(problems, where))
    data = DeviceData(torch.from_numpy(images), torch.from_numpy(labels), substituted, plain, label_column,
                      image_column)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        save_file({"images": data.images, "labels": data.labels,
                   "substituted": torch.tensor(substituted, dtype=torch.long)}, str(tmp))
        os.replace(tmp, path)
    return data


# --------------------------------------------------------------------------------------------- batches


class DeviceBatches:
    """This process's batches of an epoch, produced on the data's device: a drop-in for the train DataLoader.

    Follows ``sampler`` (call ``set_epoch`` / ``set_start_step`` on it as for the loader): the epoch's shared
    permutation is moved to the device once, and step ``s`` takes rows ``perm[s*G + r*L : s*G + (r+1)*L]``
    for rank ``r`` (``G`` global, ``L`` per-process batch), so no host synchronisation happens per step.
    Yields ``{"image": float32 [L, V, 3, S, S], "label": int64 [L], "index": int64 [L]}``.
    """

    def __init__(self, data: DeviceData, augment: BatchAugment, sampler: ResumableDistributedSampler) -> None:
        if not sampler.drop_last:
            raise ValueError("data_pipeline=device needs a sampler with drop_last=True (full, equal batches)")
        if sampler.num_samples != len(data):
            raise ValueError(f"sampler covers {sampler.num_samples} samples but the data has {len(data)}")
        self.data, self.augment, self.batch_sampler = data, augment, sampler

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        sampler = self.batch_sampler
        epoch, first = sampler.epoch, sampler.start_step
        perm = sampler.permutation().to(self.data.images.device, non_blocking=True)
        size, local = sampler.global_batch_size, sampler.per_replica_batch_size
        for step in range(first, sampler.steps_per_epoch):
            start = step * size + sampler.rank * local
            index = perm[start:start + local]
            yield {"image": self.augment(self.data.images[index], index, epoch), "label": self.data.labels[index],
                   "index": index}
