"""The README's measured-results table is exactly what benchmarks/results/runs/*.json say."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _make_report():
    spec = importlib.util.spec_from_file_location("make_report", ROOT / "benchmarks" / "make_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_matches_the_run_json() -> None:
    assert _make_report().main(["--check"]) == 0


def test_render_reports_each_method_from_its_json(tmp_path: Path) -> None:
    report = _make_report()
    run = {"recipe": {"method": "selfcon", "model": "selfcon_resnet10_cifar"}, "train_seconds": 120.0,
           "data": {"train_images": 100, "epochs": 1},
           "early_exit": {"results": {h: {"last": {"top1": v}} for h, v in
                                      (("backbone", 40.0), ("exit_0", 30.0), ("ensemble", 42.5))}},
           "knn": {"results": {"backbone": {"k20": 35.0}}}}
    (tmp_path / "selfcon_seed0.json").write_text(json.dumps(run))
    table = report.render(tmp_path)
    assert "| selfcon | selfcon_resnet10_cifar | 1 | 100 x 1 | 2.00 | 40.00 | 30.00 | 42.50 | 35.00 |" in table
    run["early_exit"]["results"]["backbone"]["last"]["top1"] = 50.0
    (tmp_path / "selfcon_seed1.json").write_text(json.dumps(run))
    assert "| selfcon | selfcon_resnet10_cifar | 2 | 100 x 1 | 2.00 ± 0.00 | 45.00 ± 7.07 |" in report.render(tmp_path)
