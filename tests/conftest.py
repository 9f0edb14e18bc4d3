"""Suite-wide settings shared by every test package, and the one builder of tiny image datasets.

Test modules import the builder as ``from conftest import tiny_image_dataset`` (pytest puts ``tests/`` on the path
for this file); tests may use the ``make_tiny_image_dataset`` fixture instead.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    # The suite's models and batches are tiny: a second intra-op thread gains little, and on a busy 2-core machine
    # two OpenMP threads spin-wait for each other (about 5-10x the CPU time). Subprocesses set their own.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def datasets_cache_in_the_session_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # `datasets` converts every local parquet / image folder the tests write into an Arrow cache, by default under
    # ~/.cache, where it would pile up run after run: keep it in the session's temporary folder, which pytest
    # removes after a passing run (tmp_path_retention_policy = "failed"). Subprocesses read the variable.
    cache = str(tmp_path_factory.mktemp("hf_datasets_cache"))
    before = datasets.config.HF_DATASETS_CACHE, os.environ.get("HF_DATASETS_CACHE")
    datasets.config.HF_DATASETS_CACHE = cache
    os.environ["HF_DATASETS_CACHE"] = cache
    yield
    datasets.config.HF_DATASETS_CACHE = before[0]
    if before[1] is None:
        os.environ.pop("HF_DATASETS_CACHE", None)
    else:
        os.environ["HF_DATASETS_CACHE"] = before[1]


# ---- tiny image datasets -------------------------------------------------------------------------------------------

#: a mean colour per class (grey, red, green, blue, ...), so that ``class_colour`` images are learnable
PALETTE = [(60, 60, 60), (200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60), (200, 60, 200),
           (60, 200, 200), (230, 230, 230), (20, 20, 20), (200, 130, 60)]
#: what an undecodable row holds, per image format: the format's first bytes, then junk
CORRUPT_BYTES = {"PNG": b"\x89PNG\r\n not really a png", "JPEG": b"\xff\xd8 definitely not a jpeg"}
#: row ``r`` of the ``k``-th split draws from ``np.random.default_rng(seed + SPLIT_SEED_STEP * k + r)``
SPLIT_SEED_STEP = 10_000

#: ``content(rng, label, image_size) -> [S, S, 3] uint8``, drawing from ``rng``
Content = Callable[[np.random.Generator, int, int], np.ndarray]


def class_colour_image(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """The class's :data:`PALETTE` colour plus uniform noise in [-50, 50] per pixel and channel."""
    base = np.array(PALETTE[label % len(PALETTE)], dtype=np.int16)
    return np.clip(base + rng.integers(-50, 51, size=(size, size, 3)), 0, 255).astype(np.uint8)


def noise_image(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Uniform noise, whatever the class."""
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


CONTENTS: dict[str, Content] = {"class_colour": class_colour_image, "noise": noise_image}


def encode_image(pixels: np.ndarray, image_format: str = "PNG") -> bytes:
    """``pixels`` (``[H, W, 3]`` uint8) as PNG or JPEG (quality 90) bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def tiny_image_dataset(root: str | os.PathLike[str], splits: Mapping[str, int] | None = None, *,
                       image_size: int = 16, num_classes: int = 4, class_names: Sequence[str] | None = None,
                       content: str | Content = "class_colour", image_format: str = "PNG",
                       image_column: str = "img", label_column: str | None = "label",
                       corrupt_rows: Mapping[str, Iterable[int]] | Iterable[int] = (),
                       layout: str = "{split}.parquet", seed: int = 0, rng_per_row: bool = True) -> Path:
    """Write a tiny labelled image dataset under ``root`` and return ``root``.

    ``splits``: split name -> rows (default ``{"train": 40, "test": 16}``); row ``i`` has label ``i % num_classes``.
    ``class_names``: the label's ``ClassLabel`` names (default ``class0``, ``class1``, ...; their number sets
    ``num_classes``). ``content``: ``"class_colour"`` (learnable: :func:`class_colour_image`), ``"noise"`` or a
    :data:`Content` function, given row ``r`` of the ``k``-th split its own generator,
    ``np.random.default_rng(seed + 10_000 * k + r)``, or with ``rng_per_row=False`` one ``default_rng(seed)`` drawn
    from split after split, row after row. ``label_column=None``: images only. ``corrupt_rows``: rows written as
    undecodable bytes (:data:`CORRUPT_BYTES`), either ``{split: rows}`` or rows of the first split.

    ``layout``: where the rows go, relative to ``root``, with ``{split}`` filled in. A ``.parquet`` name gets one
    parquet file per split (``"{split}.parquet"``, ``"{split}/part-0.parquet"``, or a fixed name for a single
    split); any other name is an image folder, one file per row, with ``{label}`` (the class name) and ``{index}``
    (the row) filled in too, e.g. ``"{split}/{label}/{index:02d}.png"`` (the format from the file's suffix).
    """
    root = Path(root)
    splits = dict(splits or {"train": 40, "test": 16})
    names = list(class_names) if class_names is not None else [f"class{c}" for c in range(num_classes)]
    draw = CONTENTS[content] if isinstance(content, str) else content
    if not isinstance(corrupt_rows, Mapping):
        corrupt_rows = {next(iter(splits)): corrupt_rows}
    corrupt = {split: set(rows) for split, rows in corrupt_rows.items()}
    if set(corrupt) - set(splits):
        raise ValueError(f"corrupt_rows names splits {sorted(set(corrupt) - set(splits))} not in {list(splits)}")
    shared_rng = np.random.default_rng(seed)

    def image_bytes(split_number: int, split: str, index: int, label: int, file_format: str) -> bytes:
        if index in corrupt.get(split, ()):
            return CORRUPT_BYTES[file_format]
        rng = np.random.default_rng(seed + SPLIT_SEED_STEP * split_number + index) if rng_per_row else shared_rng
        return encode_image(draw(rng, label, image_size), file_format)

    for split_number, (split, rows) in enumerate(splits.items()):
        labels = [i % len(names) for i in range(rows)]
        if not layout.endswith(".parquet"):  # an image folder
            for index, label in enumerate(labels):
                path = root / layout.format(split=split, label=names[label], index=index)
                path.parent.mkdir(parents=True, exist_ok=True)
                file_format = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
                path.write_bytes(image_bytes(split_number, split, index, label, file_format))
            continue
        columns: dict[str, list] = {image_column: [{"bytes": image_bytes(split_number, split, index, label, image_format),
                                                    "path": None} for index, label in enumerate(labels)]}
        features: dict[str, datasets.features.features.FeatureType] = {image_column: datasets.Image()}
        if label_column is not None:
            columns[label_column] = labels
            features[label_column] = datasets.ClassLabel(names=names)
        path = root / layout.format(split=split)
        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(columns, features=datasets.Features(features)).to_parquet(str(path))
    return root


@pytest.fixture
def make_tiny_image_dataset(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """:func:`tiny_image_dataset` as a factory: ``make_tiny_image_dataset(splits=None, root=None, **options)`` writes
    into ``root`` or else a new temporary folder, and returns the folder."""

    def make(splits: Mapping[str, int] | None = None, root: str | os.PathLike[str] | None = None, **options) -> Path:
        return tiny_image_dataset(root if root is not None else tmp_path_factory.mktemp("tiny_images"), splits,
                                  **options)

    return make
