"""ContrastiveImageDataset + loader: augmentation fixed by (seed, epoch, index) regardless of workers,
resume and ranks; corrupt images; untouched global RNG; streaming counterpart."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import encode_image, noise_image, tiny_image_dataset

from timm_selfcon.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    ContrastiveImageDataset,
    CorruptImageWarning,
    ResumableDistributedSampler,
    StreamingContrastiveDataset,
    build_eval_loader,
    build_train_loader,
    build_transform,
    derive_seed,
    isolated_rng,
    load_image_dataset,
)

NUM_ROWS = 24
CORRUPT_ROW = 3


def jpeg_bytes(seed: int, size: int = 12) -> bytes:
    return encode_image(noise_image(np.random.default_rng(seed), 0, size), "JPEG")


def write_parquet(path: Path, *, corrupt_rows: tuple[int, ...] = (), labels: bool = True) -> Path:
    """One parquet file at ``path``: ``NUM_ROWS`` 12x12 noise JPEGs, labels ``ClassLabel(a, b, c, d)`` unless
    ``labels=False``, ``corrupt_rows`` undecodable."""
    tiny_image_dataset(path.parent, {"split": NUM_ROWS}, layout=path.name, image_size=12, class_names=["a", "b", "c", "d"],
                       content="noise", image_format="JPEG", corrupt_rows=corrupt_rows,
                       label_column="label" if labels else None)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("contrastive")
    write_parquet(root / "train.parquet")
    write_parquet(root / "corrupt.parquet", corrupt_rows=(CORRUPT_ROW,))
    write_parquet(root / "unlabelled.parquet", labels=False)
    return root


def make_dataset(data_dir: Path, name: str = "train", *, seed: int = 0, views: int = 2, **kwargs) -> ContrastiveImageDataset:
    hf = load_image_dataset(data_dir / f"{name}.parquet", cache_dir=data_dir / "cache")
    transform = build_transform("supcon", 8, CIFAR10_MEAN, CIFAR10_STD, views=views)
    return ContrastiveImageDataset(hf, transform, seed=seed, **kwargs)


def run_loader(dataset: ContrastiveImageDataset, sampler: ResumableDistributedSampler, num_workers: int,
               epochs: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
    """Batches of several (epoch, start_step) passes through one loader (persistent workers if any)."""
    loader = build_train_loader(dataset, sampler, sampler.per_replica_batch_size, num_workers)
    batches = []
    for epoch, start_step in epochs:
        sampler.set_epoch(epoch)
        sampler.set_start_step(start_step)
        batches.extend(loader)
    return batches


def assert_same_batches(first: list[dict[str, torch.Tensor]], second: list[dict[str, torch.Tensor]]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_sample_format(data_dir: Path) -> None:
    sample = make_dataset(data_dir)[5]
    assert sample["image"].shape == (2, 3, 8, 8) and sample["image"].dtype == torch.float32
    assert (sample["label"], sample["index"], sample["substituted"]) == (1, 5, False)


def test_same_seed_epoch_index_same_views_and_others_differ(data_dir: Path) -> None:
    dataset = make_dataset(data_dir, seed=1)
    again = make_dataset(data_dir, seed=1)
    assert torch.equal(dataset[(7, 2)]["image"], again[(7, 2)]["image"])
    assert not torch.equal(dataset[(7, 2)]["image"], dataset[(7, 3)]["image"])
    assert not torch.equal(dataset[(7, 2)]["image"], make_dataset(data_dir, seed=2)[(7, 2)]["image"])
    dataset.set_epoch(2)
    assert torch.equal(dataset[7]["image"], again[(7, 2)]["image"])  # int keys use set_epoch


def test_getitem_leaves_global_rng_untouched_and_ignores_it(data_dir: Path) -> None:
    dataset = make_dataset(data_dir)
    torch.manual_seed(123)
    random.seed(123)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    first = dataset[(4, 1)]["image"]
    batch = dataset.__getitems__([(4, 1), (5, 1)])
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == python_state
    torch.rand(10)
    random.random()
    assert torch.equal(dataset[(4, 1)]["image"], first)
    assert torch.equal(batch[0]["image"], first)


def test_workers_do_not_change_the_data_across_epochs(data_dir: Path) -> None:
    dataset = make_dataset(data_dir, seed=7)
    passes = [(0, 0), (1, 0), (2, 0)]
    in_process = run_loader(dataset, ResumableDistributedSampler(NUM_ROWS, 6, seed=3), 0, passes)
    with_workers = run_loader(dataset, ResumableDistributedSampler(NUM_ROWS, 6, seed=3), 2, passes)
    assert_same_batches(in_process, with_workers)
    assert not torch.equal(in_process[0]["image"], in_process[4]["image"])  # epochs differ
    # the contract itself: views = transform(image) under an RNG seeded by (seed, epoch, index)
    hf = load_image_dataset(data_dir / "train.parquet", cache_dir=data_dir / "cache")
    for batch, epoch in ((in_process[0], 0), (in_process[4], 1), (in_process[8], 2)):
        for position, index in enumerate(batch["index"].tolist()[:2]):
            with isolated_rng(derive_seed("augment", 7, epoch, index)):
                expected = dataset.transform(hf[index]["img"].convert("RGB"))
            assert torch.equal(batch["image"][position], expected)


def test_resume_mid_epoch_gives_the_remaining_batches(data_dir: Path) -> None:
    dataset = make_dataset(data_dir, seed=7)
    unbroken = run_loader(dataset, ResumableDistributedSampler(NUM_ROWS, 4, seed=3), 0, [(1, 0), (2, 0)])
    resumed = run_loader(dataset, ResumableDistributedSampler(NUM_ROWS, 4, seed=3), 2, [(1, 4), (2, 0)])
    assert_same_batches(unbroken[4:], resumed)


def test_ranks_together_load_the_single_process_batch(data_dir: Path) -> None:
    dataset = make_dataset(data_dir, seed=5)
    single = run_loader(dataset, ResumableDistributedSampler(NUM_ROWS, 8, seed=1), 0, [(3, 0)])
    ranks = [
        run_loader(dataset, ResumableDistributedSampler(NUM_ROWS, 8, num_replicas=2, rank=r, seed=1), 0, [(3, 0)])
        for r in range(2)
    ]
    for step, batch in enumerate(single):
        for key in batch:
            assert torch.equal(batch[key], torch.cat([ranks[0][step][key], ranks[1][step][key]])), key


def test_corrupt_image_is_substituted_named_and_flagged(data_dir: Path) -> None:
    dataset = make_dataset(data_dir, "corrupt")
    with pytest.warns(CorruptImageWarning, match=f"sample {CORRUPT_ROW}: cannot decode image"):
        sample = dataset[(CORRUPT_ROW, 0)]
    assert sample["substituted"] and sample["label"] == CORRUPT_ROW % 4
    assert sample["image"].shape == (2, 3, 8, 8)
    assert dataset.substituted_indices == {CORRUPT_ROW}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per image: a second read substitutes silently
        again = dataset[(CORRUPT_ROW, 0)]
    assert again["substituted"] and torch.equal(again["image"], sample["image"])  # deterministic substitute
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not dataset[(CORRUPT_ROW + 1, 0)]["substituted"]


def test_corrupt_image_flag_survives_worker_processes(data_dir: Path) -> None:
    dataset = make_dataset(data_dir, "corrupt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptImageWarning)
        batches = run_loader(dataset, ResumableDistributedSampler(NUM_ROWS, 6, seed=0), 2, [(0, 0)])
    flagged = [int(i) for b in batches for i, bad in zip(b["index"], b["substituted"]) if bad]
    assert flagged == [CORRUPT_ROW]
    assert sum(len(b["index"]) for b in batches) == NUM_ROWS  # batch sizes intact


def test_strict_data_raises_naming_the_index(data_dir: Path) -> None:
    dataset = make_dataset(data_dir, "corrupt", strict_data=True)
    with pytest.raises(ValueError, match=f"sample {CORRUPT_ROW}: cannot decode image .*UnidentifiedImageError"):
        dataset[CORRUPT_ROW]


def test_unlabelled_rows_get_label_minus_one(data_dir: Path) -> None:
    dataset = make_dataset(data_dir, "unlabelled")
    assert dataset.label_column is None and dataset.num_classes is None
    assert dataset[0]["label"] == -1


def test_label_outside_num_classes_is_rejected(data_dir: Path) -> None:
    dataset = make_dataset(data_dir, num_classes=2)
    with pytest.raises(ValueError, match="sample 3 has label 3, outside"):
        dataset[3]


def test_loader_rejects_a_batch_size_that_disagrees_with_the_sampler(data_dir: Path) -> None:
    dataset = make_dataset(data_dir)
    with pytest.raises(ValueError, match=r"per_process_batch_size=8 does not match .* = 4"):
        build_train_loader(dataset, ResumableDistributedSampler(NUM_ROWS, 8, num_replicas=2), 8, 0)
    with pytest.raises(ValueError, match="sampler covers 30 samples but the dataset has 24"):
        build_train_loader(dataset, ResumableDistributedSampler(30, 6), 6, 0)


def test_iterating_the_loader_leaves_global_rng_untouched(data_dir: Path) -> None:
    dataset = make_dataset(data_dir)
    sampler = ResumableDistributedSampler(NUM_ROWS, 6)
    state = torch.get_rng_state()
    run_loader(dataset, sampler, 0, [(0, 0)])
    assert torch.equal(torch.get_rng_state(), state)


def test_streaming_matches_map_style_in_process(data_dir: Path) -> None:
    stream = load_image_dataset(data_dir / "train.parquet", streaming=True)
    transform = build_transform("supcon", 8, CIFAR10_MEAN, CIFAR10_STD, views=2)
    streaming = StreamingContrastiveDataset(stream, transform, seed=4)
    streaming.set_epoch(2)
    batches = list(build_eval_loader(streaming, 10, 0))
    assert [len(b["index"]) for b in batches] == [10, 10, 4]
    mapped = make_dataset(data_dir, seed=4)
    mapped.set_epoch(2)
    assert_same_batches(batches, list(build_eval_loader(mapped, 10, 0)))


def test_truncated_jpeg_is_substituted_too() -> None:
    whole = jpeg_bytes(0, size=64)
    hf = datasets.Dataset.from_dict(
        {"img": [{"bytes": whole, "path": None}, {"bytes": whole[: len(whole) // 2], "path": None}]},
        features=datasets.Features({"img": datasets.Image()}),
    )
    dataset = ContrastiveImageDataset(hf, build_transform("eval", 64, CIFAR10_MEAN, CIFAR10_STD), seed=0)
    with pytest.warns(CorruptImageWarning, match="sample 1: .*truncated.*mid-grey 64x64 substitute"):
        sample = dataset[1]
    assert sample["substituted"] and sample["image"].shape == (1, 3, 64, 64)
    grey = (128 / 255 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    torch.testing.assert_close(sample["image"][0, :, 5, 7], grey)
