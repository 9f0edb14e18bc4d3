"""The background queue runs what the issues require before what they ask for only if the budget allows."""
import json
from pathlib import Path

from benchmarks.experiments import experiments_queue


def _linear(top1: float) -> dict:
    return {"test": {"linear": {"results": {"backbone": {"last": {"top1": top1}}}}}}


def _names(results: Path) -> list[str]:
    return [f"{run.folder}/{run.name}" for run in experiments_queue.queue(results)]


def test_a_close_equal_compute_result_queues_its_second_seed_before_selfcon_m(tmp_path: Path) -> None:
    (tmp_path / "mixco").mkdir()
    (tmp_path / "equal_compute").mkdir()
    (tmp_path / "rank").mkdir()
    for name in experiments_queue.MOCO_TRIALS:  # any validation scores: the trials only have to be finished
        validation = {"validation": {"linear_fast": {"results": {"backbone": {"last": {"top1": len(name)}}}}}}
        (tmp_path / "mixco" / f"{name}.json").write_text(json.dumps(validation))
    (tmp_path / "equal_compute" / "cost.json").write_text(json.dumps({"equal_compute_epochs": 39}))
    names = _names(tmp_path)
    assert "equal_compute/selfcon_head_bn_e39_seed1" not in names  # no result yet: no second seed
    (tmp_path / "equal_compute" / "selfcon_head_bn_e39.json").write_text(json.dumps(_linear(77.3)))
    (tmp_path / "rank" / "linear_main_supcon.json").write_text(json.dumps(_linear(76.6)))
    names = _names(tmp_path)
    assert names.index("equal_compute/supcon_s_head_bn") < names.index("equal_compute/selfcon_head_bn_e39_seed1") \
        < names.index("equal_compute/supcon_seed1") < names.index("equal_compute/selfcon_m_head_bn") \
        < names.index("mixco/simclr_seed0")
    assert "equal_compute/supcon_head_bn_seed1" not in names  # SupCon + head BN has not finished
    (tmp_path / "rank" / "linear_main_supcon.json").write_text(json.dumps(_linear(74.0)))  # 3.3 points apart
    assert "equal_compute/supcon_seed1" not in _names(tmp_path)
    assert "equal_compute/selfcon_head_bn_e39_seed1" not in _names(tmp_path)
    # SupCon + head BN (the same stabilizer) lands within 1.5 points: its comparison gets the second seed instead
    (tmp_path / "equal_compute" / "supcon_head_bn.json").write_text(json.dumps(_linear(77.9)))
    names = _names(tmp_path)
    assert "equal_compute/supcon_seed1" not in names
    assert names.index("equal_compute/selfcon_head_bn_e39_seed1") < names.index("equal_compute/supcon_head_bn_seed1") \
        < names.index("equal_compute/selfcon_m_head_bn")
    (tmp_path / "rank" / "linear_main_supcon.json").write_text(json.dumps(_linear(76.6)))  # both close: all three
    names = _names(tmp_path)
    assert names.index("equal_compute/selfcon_head_bn_e39_seed1") < names.index("equal_compute/supcon_seed1") \
        < names.index("equal_compute/supcon_head_bn_seed1") < names.index("equal_compute/selfcon_m_head_bn")
