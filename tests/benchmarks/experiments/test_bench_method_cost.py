"""benchmarks/experiments/bench_method_cost.py: the per-step cost of each method at the experiments' settings."""
import json
from pathlib import Path

import pytest

from benchmarks.experiments import bench_method_cost


def test_method_cost_benchmark_measures_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    assert bench_method_cost.main(["--quick", "--only", "moco", "moco_mixco", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["per_method"]) == {"moco", "moco_mixco"}
    assert all(m["cpu_s_per_step"] > 0 and m["batch"] == 128 for m in result["per_method"].values())
    assert result["ratios_cpu"]["moco_mixco / moco"] > 0 and "equal_compute_epochs" not in result


def test_method_cost_benchmark_refuses_bad_arguments_before_work(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        bench_method_cost.main(["--steps", "3", "--skip", "3"])
    assert stop.value.code == 2 and "--skip must be in [1, --steps)" in capsys.readouterr().err
