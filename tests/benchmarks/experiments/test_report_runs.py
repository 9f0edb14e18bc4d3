"""benchmarks/experiments/report_runs.py: the queue of the reproduction report's CPU-scale runs."""
from benchmarks.experiments import report_runs


def test_each_untrained_floor_is_built_like_the_runs_it_serves() -> None:
    specs = report_runs.run_specs((0,))
    for floor, served in (("random_init", ("selfcon",)), ("random_init_noexit", ("supcon",)),
                          ("random_init_mixco", ("moco", "moco_mixco", "simclr", "simclr_mixco"))):
        for method in served:
            trained = specs[f"{method}_seed0"]
            assert (specs[f"{floor}_seed0"]["model"], specs[f"{floor}_seed0"]["model_kwargs"]) == (
                trained["model"], trained["model_kwargs"]), (floor, method)
    specs["selfcon_seed0"]["model_kwargs"]["exit_stages"].append(3)  # runs must not share mutable settings
    assert specs["random_init_seed0"]["model_kwargs"]["exit_stages"] == [2]
