"""benchmarks/device/device_check.py --smoke runs every part (with --compare) on a CPU at tiny sizes, so it cannot rot."""
import json
import tempfile
from pathlib import Path

import pytest

from benchmarks.device import device_check


@pytest.mark.slow
def test_device_check_smoke_runs_every_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            make_tiny_image_dataset) -> None:
    monkeypatch.setenv("TIMM_SELFCON_DEVICE_CACHE", str(tmp_path / "cache"))
    # CIFAR-10's columns (img, label), 10 classes of 16x16 PNGs
    data = make_tiny_image_dataset({"train": 64, "test": 20}, root=tmp_path / "cifar", num_classes=10, content="noise")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the default --work and smoke JSON go
    (tmp_path / "tmp").mkdir()
    device_results = device_check.ROOT / "benchmarks" / "results" / "device"
    published = sorted(device_results.iterdir()) if device_results.is_dir() else []
    results = device_check.main(["--smoke", "--data", str(data), "--compare", "1"])
    # no --out: a smoke run's JSON goes to a temporary folder, never beside the GPU results the README renders
    # (issue 24, item 20); the temporary work folder is gone once the check completes
    assert (sorted(device_results.iterdir()) if device_results.is_dir() else []) == published
    [smoke_folder] = list((tmp_path / "tmp").iterdir())
    [out] = list(smoke_folder.glob("device_check-*.json"))
    assert smoke_folder.name.startswith("device_check-smoke-")
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert results["complete"] is True and results["environment"]["datasets"]
    assert results["parts"] == ["pipelines", "resnet50", "train", "compare"]
    assert results["pipelines"]["SupCon"]["train_images"] == 64
    assert results["environment"]["device"] == "cpu" and results["environment"]["torch"]
    for row in results["pipelines"].values():
        assert row["device_images_per_s"] > 0 and row["workers_images_per_s"] > 0 and row["augment_share"] > 0
    assert results["resnet50"]["ratio"]["time"] > 0
    assert results["train"]["steps"] == 3 and results["train"]["finite_losses"] and results["train"]["eval_exit_status"] == 0
    assert set(results["train"]["linear_fast_top1"]) == {"exit_0", "backbone", "ensemble"}
    assert set(results["compare"]) == {"ce", "supcon", "selfcon", "selfcon_head_bn (ours)", "untrained (with exit)",
                                       "untrained (no exit)"}
    assert "ensemble" in results["compare"]["selfcon"]["linear_fast_top1"]
    assert "ensemble" in results["compare"]["untrained (with exit)"]["linear_fast_top1"]
    assert set(results["compare"]["untrained (no exit)"]["linear_fast_top1"]) == {"backbone"}


def test_results_go_to_the_published_folder_only_from_a_real_run(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stamp = "20260101-000000"
    assert device_check.results_path(None, smoke=False, stamp=stamp) == (
        device_check.ROOT / "benchmarks" / "results" / "device" / f"device_check-{stamp}.json")
    smoke = device_check.results_path(None, smoke=True, stamp=stamp)
    assert smoke.parent.parent == tmp_path and smoke.parent.name.startswith("device_check-smoke-")
    assert device_check.results_path(tmp_path / "mine.json", smoke=True, stamp=stamp) == tmp_path / "mine.json"


def test_compare_budget_picks_the_epochs_that_fit_part_1s_rates() -> None:
    pipelines = {"SelfCon (fc exit)": {"train_images": 50_000, "device_images_per_s": 50_000.0},
                 "SupCon": {"train_images": 50_000, "device_images_per_s": 25_000.0}}
    # one epoch of the four runs: 3 x 1 s (CE, SelfCon, SelfCon + head BN) + 2 s (SupCon) = 5 s
    assert device_check.epochs_for_budget(100, pipelines, margin=1.0) == 20
    assert device_check.epochs_for_budget(100, pipelines) == 14  # 70 s of the 100 for the steps
    assert device_check.epochs_for_budget(1, pipelines) == 1  # never zero epochs


def test_device_check_refuses_bad_data_and_arguments_before_any_work(tmp_path: Path, capsys,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the default --work would go
    (tmp_path / "tmp").mkdir()
    (tmp_path / "train.parquet").write_bytes(b"")
    for argv, expected in ((["--data", str(tmp_path / "nope")], "no such folder"),
                           (["--data", str(tmp_path)], "no split 'test'"),
                           (["--data", str(tmp_path), "--compare", "-1"], "must be >= 0"),
                           (["--data", str(tmp_path), "--compare", "2", "--compare-budget", "9"], "not allowed with")):
        with pytest.raises(SystemExit):
            device_check.main(argv)
        assert expected in capsys.readouterr().err
    assert not list((tmp_path / "tmp").iterdir())  # no work folder was made
