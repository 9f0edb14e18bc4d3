"""Shared data and checkpoint for the evaluation and fine-tuning tests (not a conftest: imported explicitly).

The dataset (written by the suite's ``tiny_image_dataset`` with this module's image content) is built so that a
trained encoder and a random one differ clearly. Each 16x16 image shows a 5x5 square in the top half (class 0)
or the bottom half (class 1), at a random column, in a random colour on a random background colour, plus pixel
noise. The two classes have the same content, only its position
differs, and a random convolutional network with global average pooling is nearly translation invariant,
so a linear probe on its pooled features stays well below a trained one: 53-80% (mean 64%) over 5 data
seeds x 3 initialisations, against 92-98% for networks trained with cross-entropy (5 data / training
seeds). The class is unchanged by a horizontal flip, so the faithful probe's flip keeps the labels right.

The trained checkpoint comes from the real training loop (``engine.train.train``), so evaluation and
fine-tuning are tested on the real layout (``config.yaml``, ``ckpt-<step>/``, ``last``). Both are cached in
pytest's session temporary folder, so that ``test_evaluate.py`` and ``test_finetune.py`` train only once.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from conftest import tiny_image_dataset

IMAGE_SIDE = 16
SQUARE = 5
NUM_CLASSES = 2
TRAIN_ROWS = 192
TEST_ROWS = 64
MODEL = "selfcon_resnet18_cifar"
MODEL_KWARGS: dict[str, Any] = {"exit_stages": [2], "sub_network": "fc", "layers": [1, 1, 1, 1]}
TRAIN_EPOCHS = 6  # 12 steps each: 72 steps, checkpoints at 36 and 72


def position_image(rng: np.random.Generator, label: int) -> np.ndarray:
    """``[16, 16, 3]`` uint8: a square of random colour in the top (label 0) or bottom (label 1) half."""
    background, foreground = rng.integers(0, 256, size=3), rng.integers(0, 256, size=3)
    pixels = np.broadcast_to(background, (IMAGE_SIDE, IMAGE_SIDE, 3)).astype(np.int64).copy()
    row = int(rng.integers(1, 4)) if label == 0 else int(rng.integers(9, 12))
    column = int(rng.integers(1, IMAGE_SIDE - SQUARE))
    pixels[row:row + SQUARE, column:column + SQUARE] = foreground
    pixels += rng.integers(-30, 31, size=pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_position_dataset(root: Path, *, seed: int = 0, train_rows: int = TRAIN_ROWS,
                           test_rows: int = TEST_ROWS, with_labels: bool = True) -> Path:
    """``root/train.parquet`` and ``root/test.parquet``: columns ``img`` (Image) and ``label`` (ClassLabel(2)).

    ``with_labels=False`` writes the images only (a dataset without any label column).
    """
    return tiny_image_dataset(root, {"train": train_rows, "test": test_rows}, image_size=IMAGE_SIDE,
                              class_names=["top", "bottom"], content=lambda rng, label, size: position_image(rng, label),
                              label_column="label" if with_labels else None, seed=seed, rng_per_row=False)


def train_settings(data: Path, output_dir: Path, **overrides: Any) -> dict[str, Any]:
    """Recipe keys of the small supervised (``ce``) run: 16 px, batch 16, no augmentation, AdamW, cosine, fp32."""
    settings: dict[str, Any] = dict(
        data=str(data), method="ce", model=MODEL, model_kwargs=dict(MODEL_KWARGS), image_size=16, batch_size=16,
        num_workers=0, epochs=TRAIN_EPOCHS, optimizer="adamw", lr=1e-3, weight_decay=0.0, warmup_epochs=0,
        augmentation="eval", precision="fp32", save_every_steps=36, log_every_steps=12,
        output_dir=str(output_dir), seed=0,
    )
    settings.update(overrides)
    return settings


def train_run(data: Path, output_dir: Path, **overrides: Any) -> Path:
    """Train through ``engine.train.train`` and return the run's ``output_dir`` (holding ``last``)."""
    from timm_selfcon.config import resolve_config
    from timm_selfcon.engine.train import train

    with warnings.catch_warnings():
        # 'ce' leaves the exit untrained on purpose: the probes train their own exit classifiers
        warnings.filterwarnings("ignore", message="method 'ce' trains only the backbone")
        train(resolve_config(None, train_settings(data, output_dir, **overrides)))
    return output_dir


def cached_position_data(base: Path) -> Path:
    """The labelled position dataset under ``base`` (written once per pytest session)."""
    root = base / "eval_position_data"
    if not (root / "test.parquet").is_file():
        write_position_dataset(root)
    return root


def cached_trained_run(base: Path) -> Path:
    """The trained run under ``base`` (trained once per pytest session)."""
    run = base / "eval_trained_run"
    if not (run / "last").exists():
        train_run(cached_position_data(base), run)
    return run


def eval_settings(data: Path, **overrides: Any) -> dict[str, Any]:
    """``EvalConfig`` keys for the tiny data: 16 px, no workers, 30 probe epochs, a quarter held out for validation."""
    settings: dict[str, Any] = dict(data=str(data), image_size=16, num_workers=0, batch_size=64, epochs=30,
                                    val_fraction=0.25, seed=0)
    settings.update(overrides)
    return settings


def tree_digest(root: Path, skip: str | None = None) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (symlinks -> their target), ``skip`` subtree left out."""
    digest = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if skip is not None and (relative == skip or relative.startswith(skip + "/")):
            continue
        if path.is_symlink():
            digest[relative] = "link -> " + str(path.readlink())
        elif path.is_file():
            digest[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest
