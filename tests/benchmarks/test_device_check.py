"""benchmarks/device_check.py --smoke runs every part (with --compare) on a CPU at tiny sizes, so it cannot rot."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_device_check_smoke_runs_every_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            make_tiny_image_dataset) -> None:
    monkeypatch.setenv("TIMM_SELFCON_DEVICE_CACHE", str(tmp_path / "cache"))
    # CIFAR-10's columns (img, label), 10 classes of 16x16 PNGs
    data = make_tiny_image_dataset({"train": 64, "test": 20}, root=tmp_path / "cifar", num_classes=10, content="noise")
    spec = importlib.util.spec_from_file_location("device_check", ROOT / "benchmarks" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module
    spec.loader.exec_module(module)
    out = tmp_path / "result.json"
    results = module.main(["--smoke", "--data", str(data), "--compare", "1", "--work", str(tmp_path / "work"),
                           "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
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
