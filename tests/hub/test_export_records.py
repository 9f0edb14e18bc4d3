"""``ExportInfo`` and ``EvaluationReport``: exports written before the records load, and write back the same JSON.

The fixtures (``fixtures/old_exports``) were written by the export code before the records existed; writing what
they load must give the same JSON object, so exports made now stay readable by the older code.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from timm_selfcon.errors import UserInputError
from timm_selfcon.hub.records import (
    EXPORT_FORMAT,
    EXPORT_INFO,
    Accuracy,
    EvaluationReport,
    ExitsInfo,
    ExportInfo,
    ExportSource,
)

OLD_EXPORTS = Path(__file__).parent / "fixtures" / "old_exports"
WRITTEN_BY_EXPORT = ["finetune", "mixco_encoder_only", "selfcon_early_exit", "selfcon_no_exits"]


def old_info(name: str) -> dict:
    return json.loads((OLD_EXPORTS / name / EXPORT_INFO).read_text())


@pytest.mark.parametrize("name", WRITTEN_BY_EXPORT)
def test_old_export_info_loads_and_writes_back_unchanged(name: str, tmp_path: Path) -> None:
    old = old_info(name)
    info = ExportInfo.read(OLD_EXPORTS / name)
    assert info.to_dict() == old
    info.write(tmp_path)
    assert json.loads((tmp_path / EXPORT_INFO).read_text()) == old
    assert ExportInfo.read(tmp_path) == info
    assert info.format == EXPORT_FORMAT


def test_training_export_is_typed() -> None:
    info = ExportInfo.read(OLD_EXPORTS / "selfcon_early_exit")
    assert info.method == "selfcon" and info.num_classes == 4 and info.with_exits and not info.encoder_only
    assert info.exits == ExitsInfo(stages=[1, 2], sub_network="fc")
    assert info.source == ExportSource(kind="training", checkpoint="ckpt-3", step=3, run="run", method="selfcon")
    assert info.preprocessing.input_size == [3, 16, 16] and info.preprocessing.interpolation == "bilinear"
    assert list(info.evaluations) == ["knn", "early_exit"]
    early = info.evaluations["early_exit"]
    assert early.dataset.data == "/runs/demo/data" and early.dataset.eval_split == "test"
    assert early.dataset.train_split == "train" and early.dataset.class_names == ["red", "green", "blue", "grey"]
    assert early.checkpoint == "/runs/demo/run/ckpt-3"
    assert list(early.results) == ["exit_0", "exit_1", "backbone", "ensemble"]
    assert early.results["backbone"].last == Accuracy(top1=100.0, top5=100.0)
    assert early.results["backbone"].best_val.epoch == 1
    assert early.early_exit[0].threshold == 0.0 and early.early_exit[0].exit_fraction == [1.0, 0.0, 0.0]
    assert early.final is None
    knn = info.evaluations["knn"]
    assert set(knn.results["backbone"].knn) == {"k20", "k200"} and knn.results["backbone"].last is None


def test_finetune_export_reads_its_report_shape() -> None:
    info = ExportInfo.read(OLD_EXPORTS / "finetune")
    assert info.method == "finetune" and info.exits is None and info.classifiers_protocol == "finetune"
    assert info.source == ExportSource(kind="finetune", checkpoint="finetuned", base="local-dir:/runs/demo/base")
    report = info.evaluations["finetune"]
    assert report.final == Accuracy(top1=75.0, top5=100.0, epoch=1) and report.results == {}
    assert report.dataset.data == "/runs/demo/data2" and report.dataset.eval_split == "test"
    assert report.dataset.num_classes == 4


def test_finetune_report_without_dataset_block_reads_its_top_level_keys() -> None:
    raw = {"data": "uoft-cs/cifar10", "split": "test", "num_classes": 10, "result": {"last": {"top1": 90.0}}}
    for report in (EvaluationReport.from_dict("finetune", raw), EvaluationReport.from_finetune_report(raw)):
        assert report.dataset.data == "uoft-cs/cifar10" and report.dataset.eval_split == "test"
        assert report.dataset.num_classes == 10 and report.final == Accuracy(top1=90.0)
    assert EvaluationReport.from_finetune_report(raw).to_dict()["dataset"] == dict(
        data="uoft-cs/cifar10", eval_split="test", num_classes=10)


def test_minimal_export_info_takes_the_defaults() -> None:
    info = ExportInfo.read(OLD_EXPORTS / "minimal")
    assert info.architecture == "selfcon_resnet18_cifar" and info.encoder_only and info.num_classes == 0
    assert info.source is None and info.exits is None and info.evaluations == {} and info.recipe == {}
    assert info.method is None and info.num_params == 0 and info.num_features is None


def test_unreadable_export_info_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="is not a timm-selfcon export"):
        ExportInfo.read(tmp_path)
    (tmp_path / EXPORT_INFO).write_text("{not json")
    with pytest.raises(UserInputError, match="is not valid JSON"):
        ExportInfo.read(tmp_path)
    (tmp_path / EXPORT_INFO).write_text(json.dumps({"num_classes": 3}))
    with pytest.raises(UserInputError, match="at least 'architecture'"):
        ExportInfo.read(tmp_path)
    (tmp_path / EXPORT_INFO).write_text(json.dumps({"architecture": "a", "format": "timm-selfcon-export/2"}))
    with pytest.raises(UserInputError, match="format 'timm-selfcon-export/2'"):
        ExportInfo.read(tmp_path)
