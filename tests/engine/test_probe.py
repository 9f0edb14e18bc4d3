"""The quickstart's probe after training (``probe.enabled``) reads the run's data as training did (issue 24, item 7):
its ``image_column``, ``label_column`` and ``class_list``, not the dataset's auto-detected columns and all classes."""
from __future__ import annotations

import warnings
from pathlib import Path

import datasets
import torch
import torch.nn as nn
from conftest import tiny_image_dataset

from timm_selfcon.engine.evaluate import EvalConfig
from timm_selfcon.engine.evaluation.classifiers import fit_heads
from timm_selfcon.engine.evaluation.features import EvalInputs
from timm_selfcon.engine.evaluation.report import EvalReport
from timm_selfcon.engine.probe import train_linear_probe
from timm_selfcon.engine.train import train

from .test_train import tiny_config

CLASSES = ["class2", "class0"]  # two of the four, in another order than the dataset's
TRAIN_ROWS, TEST_ROWS = 48, 16


def data_with_a_decoy_label(root: Path) -> Path:
    """``train``/``test`` parquet: ``img``, the real labels in ``fine`` (4 classes, row ``i`` has class ``i % 4``),
    and a decoy ``label`` column (2 classes, unrelated) that column auto-detection would pick."""
    tiny_image_dataset(root, {"train": TRAIN_ROWS, "test": TEST_ROWS}, label_column="fine")
    for split in ("train", "test"):
        path = root / f"{split}.parquet"
        ds = datasets.Dataset.from_parquet(str(path))
        decoy = datasets.ClassLabel(names=["odd", "even"])
        ds = ds.add_column("label", [(i // 3) % 2 for i in range(len(ds))], feature=decoy)
        path.unlink()
        ds.to_parquet(str(path))
    return root


def test_the_probe_reads_the_runs_columns_and_classes(tmp_path: Path) -> None:
    data = data_with_a_decoy_label(tmp_path / "data")
    config = tiny_config(data, tmp_path / "run", "supcon_s", label_column="fine", class_list=CLASSES,
                         probe={"enabled": True, "epochs": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train(config)
    probe = summary["probe"]
    assert probe["label_column"] == "fine" and probe["image_column"] == "img"
    assert probe["class_list"] == CLASSES and probe["num_classes"] == len(CLASSES)
    assert (probe["train_rows"], probe["test_rows"]) == (TRAIN_ROWS // 2, TEST_ROWS // 2)  # 2 of the 4 classes
    assert set(probe["top1"]) == {"trained", "random_init"}


def test_the_probe_trains_as_the_evaluations_linear_fast() -> None:
    """One ``linear_fast`` trainer: on the same cached features, the quickstart's probe and the evaluation protocol
    (one head: a model without exits) train the same classifier and report the same last-epoch top-1."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=generator) * 2
    train_y, test_y = torch.arange(60) % 3, torch.arange(30) % 3
    train_x = centres[train_y] + torch.randn(60, 8, generator=generator) * 3 + 5  # not standardised
    test_x = centres[test_y] + torch.randn(30, 8, generator=generator) * 3 + 5
    config = EvalConfig(batch_size=16, seed=3)
    inputs = EvalInputs(encoder=nn.Identity(), config=config, train=None, val=None, test_loader=None, loader=None,
                        columns=("img", "label"), num_classes=3, image_size=8, mean=(0.0,), std=(1.0,))
    report = EvalReport(protocol="linear_fast")
    (evaluated,) = fit_heads(inputs, report, ([test_x], test_y), None, train=([train_x], train_y), epochs=4, lr=0.1,
                             hyperparameters={})
    probe = train_linear_probe(train_x, train_y, test_x, test_y, epochs=4, lr=0.1, batch_size=16, seed=3)
    torch.testing.assert_close(probe.classifier.weight, evaluated.weight)
    torch.testing.assert_close(probe.classifier.bias, evaluated.bias)
    (result,) = report.results.values()
    assert probe.top1 == result["last"]["top1"]
