"""Cut the class-balanced CIFAR-10 subset shipped in ``timm_selfcon/data/cifar10_subset``.

Takes the first ``--train-per-class`` images of each class (file order; the source files are shuffled) from
the source *train* split and the first ``--test-per-class`` of each class from the source *test* split, so the
two never mix. The JPEG bytes and the parquet schema (``img``: Image, ``label``: ClassLabel with the ten class
names, carried in the ``huggingface`` schema metadata) are kept as they are.

    python -m benchmarks.tools.make_cifar10_subset [--source ../shared/data/cifar10]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.harness import ROOT
from timm_selfcon.fileio import atomic_path, write_text_atomic

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "cifar10"
DEFAULT_OUT = ROOT / "timm_selfcon" / "data" / "cifar10_subset"
SIZE_LIMIT_BYTES = 6 * 1024 * 1024


def class_names_of(table: pa.Table) -> list[str]:
    """Names of the ``label`` ClassLabel from the ``huggingface`` schema metadata."""
    metadata = json.loads(table.schema.metadata[b"huggingface"])
    return list(metadata["info"]["features"]["label"]["names"])


def balanced_rows(labels: list[int], per_class: int, num_classes: int) -> list[int]:
    """Row numbers of the first ``per_class`` rows of every class, in file order."""
    taken: Counter[int] = Counter()
    rows = []
    for row, label in enumerate(labels):
        if taken[label] < per_class:
            taken[label] += 1
            rows.append(row)
    short = {c: taken[c] for c in range(num_classes) if taken[c] < per_class}
    if short:
        raise ValueError(f"classes with fewer than {per_class} images: {short}")
    return rows


def write_atomically(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def cut(source: Path, split: str, per_class: int) -> tuple[pa.Table, Counter[int]]:
    table = pq.read_table(source / f"{split}.parquet")
    labels = table.column("label").to_pylist()
    num_classes = len(class_names_of(table))
    subset = table.take(balanced_rows(labels, per_class, num_classes))
    return subset, Counter(subset.column("label").to_pylist())


def image_digests(table: pa.Table) -> set[str]:
    return {hashlib.sha256(cell["bytes"]).hexdigest() for cell in table.column("img").to_pylist()}


def readme_text(counts: dict[str, Counter[int]], names: list[str], sizes: dict[str, int]) -> str:
    rows = "\n".join(
        f"| {c} | {name} | {counts['train'][c]} | {counts['test'][c]} |" for c, name in enumerate(names)
    )
    return f"""# CIFAR-10 subset (shipped with timm-selfcon)

A small, class-balanced cut of CIFAR-10 for the quickstart, demos and smoke runs, so that they work
offline and without downloading the full dataset. It is **not** meant for reporting accuracy.

- Source: the CIFAR-10 parquet files (`train.parquet`, `test.parquet`) in the layout of the
  `uoft-cs/cifar10` Hub dataset (images re-encoded as JPEG before they reached the source folder).
- `train.parquet`: {sum(counts['train'].values())} images, the first {counts['train'][0]} of each class
  (file order) from the source **train** split ({sizes['train']:,} bytes).
- `test.parquet`: {sum(counts['test'].values())} images, the first {counts['test'][0]} of each class from
  the source **test** split ({sizes['test']:,} bytes). Test images come only from the test split.
- Columns: `img` (datasets `Image`, the original JPEG bytes, 32x32 RGB) and `label` (`ClassLabel`).
- Produced by `benchmarks/tools/make_cifar10_subset.py`.

| label | class | train | test |
| --- | --- | --- | --- |
{rows}

Load it:

    from timm_selfcon.data import CIFAR10_SUBSET, load_image_dataset
    train = load_image_dataset(CIFAR10_SUBSET, split="train")

or `datasets.load_dataset("parquet", data_files={{"train": ".../train.parquet", "test": ".../test.parquet"}})`.

CIFAR-10: Alex Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with train/test.parquet")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    args = parser.parse_args()

    train, train_counts = cut(args.source, "train", args.train_per_class)
    test, test_counts = cut(args.source, "test", args.test_per_class)
    names = class_names_of(train)
    if class_names_of(test) != names:
        raise ValueError("train and test class names differ in the source")
    overlap = image_digests(train) & image_digests(test)
    if overlap:
        raise ValueError(f"{len(overlap)} identical images in the train and test subsets")

    args.out.mkdir(parents=True, exist_ok=True)
    write_atomically(train, args.out / "train.parquet")
    write_atomically(test, args.out / "test.parquet")
    sizes = {split: (args.out / f"{split}.parquet").stat().st_size for split in ("train", "test")}
    readme = args.out / "README.md"
    write_text_atomic(readme, readme_text({"train": train_counts, "test": test_counts}, names, sizes))
    total = sum(sizes.values()) + readme.stat().st_size
    print(f"train: {train.num_rows} rows {dict(sorted(train_counts.items()))}")
    print(f"test:  {test.num_rows} rows {dict(sorted(test_counts.items()))}")
    print(f"wrote {args.out} ({total:,} bytes)")
    if total > SIZE_LIMIT_BYTES:
        raise SystemExit(f"subset is {total:,} bytes, over the {SIZE_LIMIT_BYTES:,}-byte budget")


if __name__ == "__main__":
    main()
