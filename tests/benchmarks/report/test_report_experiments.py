"""docs/results.md says exactly what the experiments' JSON files say, and the MixCo decision rule reads them right."""
import json
from pathlib import Path

import pytest

from benchmarks.report import report_experiments


def test_results_page_matches_the_json() -> None:
    assert report_experiments.main(["--check"]) == 0


@pytest.mark.parametrize(("differences", "verdict"), [
    ([1.5, 0.8], "MixCo helps here"),
    ([0.4, 1.2], "no measurable effect"),
    ([-0.9, -1.0], "no measurable effect"),
    ([-2.0, -0.5], "hurts"),
    ([3.0, -0.2], "inconsistent (mean above 1 point, not positive on every seed)"),
])
def test_decision_rule(differences: list[float], verdict: str) -> None:
    assert report_experiments.decide(differences) == verdict


def _probe(value: float, knn: float | None = None) -> dict:
    result = {"results": {"backbone": {"last": {"top1": value}}}}
    return {"results": {"backbone": {"k20": knn}}} if knn is not None else result


def _run(method: str, seed: int, linear: float, encoder_hash: str = "a" * 64) -> dict:
    return {"kind": "train", "method": method, "seed": seed, "epochs": 20,
            "recipe": {"method": method, "epochs": 20, "lr": 0.06, "moco_momentum": 0.99},
            "pairing": {"initial_encoder_sha256": encoder_hash, "first_batches_sha256": f"{seed}" * 64},
            "run_info": {"torch_threads": 1}, "train_summary": {"train_seconds": 3600.0, "cpu_seconds": 7200.0},
            "test": {"linear": _probe(linear), "linear_fast": _probe(linear + 1), "knn": _probe(0, knn=linear - 1)},
            "validation_linear_fast_per_epoch": {"5": {"backbone": 40.0}, "20": {"backbone": linear}}}


def test_paired_table_differences_verdict_and_plot(tmp_path: Path) -> None:
    mixco, rank = tmp_path / "mixco", tmp_path / "rank"
    mixco.mkdir()
    rank.mkdir()
    runs = {"moco_seed0": _run("moco", 0, 50.0), "moco_mixco_seed0": _run("moco_mixco", 0, 52.0),
            "moco_seed1": _run("moco", 1, 49.0), "moco_mixco_seed1": _run("moco_mixco", 1, 49.5, encoder_hash="b" * 64),
            "floor_noexit_seed1": {"kind": "floor", "seed": 1, "test": {"linear": _probe(30.0)}},
            "trial_lr0.06_m0.99": {"kind": "trial", "epochs": 5, "recipe": {"lr": 0.06, "moco_momentum": 0.99},
                                   "validation": {"linear_fast": _probe(41.0)}}}
    for name, run in runs.items():
        (mixco / f"{name}.json").write_text(json.dumps(run))
    text = report_experiments.render_mixco(mixco, rank, tmp_path / "no_cost.json", tmp_path / "no_terms.json")
    assert "| trial_lr0.06_m0.99 | 0.06 | 0.99 | 41.00 | chosen |" in text
    # seed 1's floor is its own run; seed 0 has none here, so its gain is not shown
    assert "| moco_seed1 | moco | 1 | 49.00 | +19.00 | 50.00 | 48.00 | 1.00 | 2.00 | 1 | **NO** |" in text
    assert "| moco_seed0 | moco | 0 | 50.00 | - | 51.00 | 49.00 | 1.00 | 2.00 | 1 | yes |" in text
    # seed 1's arms started from different encoders: flagged on both of its rows
    assert text.count("| **NO** |") == 2
    assert "seed 0: +2.00, seed 1: +0.50 points; mean +1.25, spread (max - min) 1.50" in text
    assert "**inconsistent (mean above 1 point, not positive on every seed)**" not in text
    assert "**no measurable effect**" not in text and "**MixCo helps here**" in text
    assert report_experiments.draw_plots(mixco, tmp_path / "none", rank, tmp_path) == [
        tmp_path / "mixco_accuracy_vs_epoch.png"]


def test_one_seed_waits_for_the_decision(tmp_path: Path) -> None:
    (tmp_path / "moco_seed0.json").write_text(json.dumps(_run("moco", 0, 50.0)))
    (tmp_path / "moco_mixco_seed0.json").write_text(json.dumps(_run("moco_mixco", 0, 50.3)))
    text = report_experiments.render_mixco(tmp_path, tmp_path / "none", tmp_path / "none.json",
                                           tmp_path / "none_terms.json")
    assert "seed 0: +0.30 points; the decision waits for both seeds." in text


def test_loss_terms_of_a_pair_are_rendered_from_their_json(tmp_path: Path) -> None:
    from benchmarks.experiments.mixco_loss_terms import epoch_means

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in [
        {"step": 50, "epoch": 0, "loss": 9.0, "loss_moco": 5.0, "loss_mix": 4.0, "acc1": 0.25},
        {"step": 100, "epoch": 0, "loss": 8.0, "loss_moco": 4.0, "loss_mix": 4.0, "acc1": 0.5},
        {"step": 150, "epoch": 1, "loss": 9.0, "loss_moco": 3.0, "loss_mix": 6.0, "acc1": 0.5}]) + "\n")
    mixed = epoch_means(metrics)
    assert mixed == {"loss_moco": {1: 4.5, 2: 3.0}, "loss_mix": {1: 4.0, 2: 6.0}, "acc1": {1: 0.375, 2: 0.5}}
    alone = {"loss_moco": {"1": 4.0, "2": 2.5}, "acc1": {"1": 0.4, "2": 0.75}}
    terms = {"moco_seed0": {"method": "moco", "seed": 0, "per_epoch": alone},
             "moco_mixco_seed0": {"method": "moco_mixco", "seed": 0,
                                  "per_epoch": json.loads(json.dumps(mixed))},  # keys become strings, as on disk
             "moco_seed1": {"method": "moco", "seed": 1, "per_epoch": alone}}  # no partner: no line
    (tmp_path / "terms.json").write_text(json.dumps(terms))
    lines = [line for line in report_experiments.loss_terms_lines(tmp_path / "terms.json") if line]
    assert len(lines) == 1 and lines[0].startswith("Training-loss terms, seed 0 ")
    assert ("ends at 2.50 alone and 3.00 with MixCo, whose mix term (weight 1) ends at 6.00, 67% of the loss, after "
            "its lowest 4.00 at epoch 1") in lines[0]
    assert "top-1 among the queue ends at 0.75 alone and 0.50 with MixCo" in lines[0]
    assert report_experiments.loss_terms_lines(tmp_path / "absent.json") == []

    def checkpoint(own: float, refilled: float, mix: float | None = None) -> dict:
        extra = {} if mix is None else {"loss_mix": mix}
        return {"own_queue": {"loss_moco": own, "acc1": 0.5, **extra},
                "refilled_queue": {"loss_moco": refilled, "acc1": 0.25, **extra}}

    terms["moco_seed0"]["checkpoints"] = {"5": checkpoint(6.0, 6.0), "10": checkpoint(5.5, 5.5),
                                          "20": checkpoint(5.0, 5.0)}
    terms["moco_mixco_seed0"]["checkpoints"] = {"5": checkpoint(6.5, 7.5, 5.0), "10": checkpoint(6.4, 7.0, 6.0),
                                                "20": checkpoint(6.2, 6.2, 7.0)}
    (tmp_path / "terms.json").write_text(json.dumps(terms))
    [line] = [line for line in report_experiments.loss_terms_lines(tmp_path / "terms.json") if line]
    assert "MoCo v2 alone scores alike on both (epoch 5: MoCo term 6.00 / 6.00, top-1 0.50 / 0.25)" in line
    assert "with MixCo its own queue flatters it (MoCo term 6.50 / 7.50" in line
    assert "from epoch 10 to 20, MixCo's MoCo term goes 7.00 -> 6.20 and its mix term 6.00 -> 7.00" in line
    assert "above MoCo v2 alone's at every checkpoint (epoch 20: 6.20 against 5.00)" in line


def test_equal_compute_estimates_cpu_of_runs_without_it_and_names_each_runs_cpu(tmp_path: Path) -> None:
    """CPU seconds of different CPUs are not comparable (a step costs about twice as much without AVX-512): each run
    says which CPU it measured on, and compute is compared in SupCon epochs from the side-by-side cost benchmark."""
    rank, equal = tmp_path / "rank", tmp_path / "equal"
    rank.mkdir()
    equal.mkdir()
    old = {"phase": "main", "recipe": {"method": "supcon", "epochs": 20}, "train_summary": {"steps": 3600},
           "test": {"linear_fast": _probe(77.0), "knn": _probe(0, knn=76.0)}}
    (rank / "main_supcon.json").write_text(json.dumps(old))
    (rank / "linear_main_supcon.json").write_text(json.dumps({"phase": "linear", "test": {"linear": _probe(75.0)}}))
    new = dict(_run("selfcon", 0, 74.0), recipe={"method": "selfcon", "epochs": 41,
                                                   "method_kwargs": {"head_batchnorm": True}})
    new["train_summary"].update(sittings=2, sitting_log=[{"cpu_capability": "AVX2"}, {"cpu_capability": "AVX2"}])
    (equal / "selfcon_head_bn_e41.json").write_text(json.dumps(new))
    cost = {"rounds": 3, "steps": 30, "threads": 1, "equal_compute_epochs": 41,
            "ratios_cpu": {"selfcon_head_bn / supcon": 0.49},
            "per_method": {"supcon": {"batch": 256, "cpu_s_per_step": 1.0, "wall_s_per_step": 1.1},
                           "selfcon_head_bn": {"batch": 256, "cpu_s_per_step": 0.49, "wall_s_per_step": 0.5}}}
    (equal / "cost.json").write_text(json.dumps(cost))
    text = report_experiments.render_equal_compute(equal, rank)
    assert "| rank/main_supcon | supcon | no | 20 | 20.0 | ≈1.00 | not recorded | - | 77.00 | 75.00 | 76.00 |" in text
    cost["environment"] = {"cpu_capability": "AVX512"}  # an estimate is on the cost benchmark's CPU
    (equal / "cost.json").write_text(json.dumps(cost))
    text = report_experiments.render_equal_compute(equal, rank)
    assert "| rank/main_supcon | supcon | no | 20 | 20.0 | ≈1.00 | AVX512 (the cost benchmark's) | - | 77.00 |" in text
    assert "| equal_compute/selfcon_head_bn_e41 | selfcon | yes | 41 | 20.1 | 2.00 | AVX2 | 1 | 75.00 | 74.00 | 73.00 |" \
        in text
    assert "**41 epochs** of it cost what SupCon's 20 epochs cost" in text
    assert ("(`linear_fast`, seed 0: -2.00; compute 20.1 against 20.0 SupCon epochs; training CPU h 2.00 against "
            "≈1.00, not comparable: CPUs AVX2 and AVX512 (the cost benchmark's)).") in text
    # the cost benchmark repeated on another CPU: its costs beside cost.json's, and its own equal-compute epochs
    other = {"rounds": 3, "steps": 30, "load_average_before": [3.2, 3.0, 2.9], "equal_compute_epochs": 38,
             "environment": {"cpu_capability": "AVX2", "cpu_count": 2}, "ratios_cpu": {"selfcon_head_bn / supcon": 0.53},
             "per_method": {"supcon": {"cpu_s_per_step": 2.0}, "selfcon_head_bn": {"cpu_s_per_step": 1.06}}}
    (equal / "cost_avx2.json").write_text(json.dumps(other))
    text = report_experiments.render_equal_compute(equal, rank)
    assert ("The same benchmark on another CPU (`cost_avx2.json`: AVX2, 3 rounds of 30 steps, 1-minute load 3.2 at "
            "its start on 2 cores) against `cost.json`'s (AVX512):") in text
    assert "| supcon | 2.000 | 1.000 | 2.00 |" in text and "| selfcon_head_bn | 1.060 | 0.490 | 2.16 |" in text
    assert "equal compute would be 38 epochs, against the 41 the queue trains (set by `cost.json`)" in text
    # a run resumed on another CPU, or with sittings from before the log, names them all
    new["train_summary"].update(sittings=3, sitting_log=[{"cpu_capability": "AVX2"}, {"cpu_capability": "AVX512"}])
    assert report_experiments.cpu_of(new) == "AVX2+AVX512+unrecorded"
    # so do the thread counts of a run whose sittings used different ones, in the table too
    new["train_summary"].update(sittings=2, sitting_log=[{"cpu_capability": "AVX2", "torch_threads": 1},
                                                         {"cpu_capability": "AVX2", "torch_threads": 2}])
    (equal / "selfcon_head_bn_e41.json").write_text(json.dumps(new))
    assert report_experiments.threads_of(new) == "1+2"
    assert "| 2.00 | AVX2 | 1+2 | 75.00 |" in report_experiments.render_equal_compute(equal, rank)


def _equal_run(method: str, epochs: int, linear: float, head_bn: bool = True, seed: int = 0) -> dict:
    return dict(_run(method, seed, linear), recipe={"method": method, "epochs": epochs,
                                                    "method_kwargs": {"head_batchnorm": head_bn}})


def test_equal_compute_reading_answers_each_question_whose_runs_finished(tmp_path: Path) -> None:
    rank, equal = tmp_path / "rank", tmp_path / "equal"
    rank.mkdir()
    equal.mkdir()
    for name, linear in (("main_supcon", 76.0), ("main_selfcon_head_bn", 70.0)):
        (rank / f"{name}.json").write_text(json.dumps({"phase": "main", "recipe": {"method": "x", "epochs": 20},
                                                       "test": {"linear_fast": _probe(linear + 1)}}))
        (rank / f"linear_{name}.json").write_text(json.dumps({"test": {"linear": _probe(linear)}}))
    (equal / "cost.json").write_text(json.dumps({"rounds": 3, "steps": 30, "threads": 1, "equal_compute_epochs": 39,
                                                 "ratios_cpu": {"selfcon_head_bn / supcon": 0.51},
                                                 "per_method": {}}))
    (equal / "selfcon_head_bn_e39.json").write_text(json.dumps(_equal_run("selfcon", 39, 75.5)))
    (equal / "supcon_s_head_bn.json").write_text(json.dumps(_equal_run("supcon_s", 20, 72.0)))
    text = report_experiments.render_equal_compute(equal, rank)
    assert ("- At equal compute (39 epochs of SelfCon-S + head BatchNorm against SupCon's 20), does SelfCon-S match "
            "SupCon? `linear`: 75.50 (selfcon_head_bn_e39) against 76.00 (main_supcon), -0.50 points: "
            "**not distinguishable with one seed** (`linear_fast`, seed 0: -0.50).") in text
    assert ("- Does the exit add anything over SupCon-S (one view each, both + head BatchNorm, 20 epochs)? `linear`: "
            "70.00 (main_selfcon_head_bn) against 72.00 (supcon_s_head_bn), -2.00 points: **no, supcon_s_head_bn "
            "leads**") in text
    assert "Does head BatchNorm help SupCon" not in text  # its run has not finished: no line
    # a second seed of both arms: the mean decides, and differences of opposite signs are not distinguishable
    (equal / "selfcon_head_bn_e39_seed1.json").write_text(json.dumps(_equal_run("selfcon", 39, 77.0, seed=1)))
    (equal / "supcon_seed1.json").write_text(json.dumps(_equal_run("supcon", 20, 74.0, head_bn=False, seed=1)))
    text = report_experiments.render_equal_compute(equal, rank)
    assert "-0.50 points; seed 1: +3.00, mean +1.25: **not distinguishable with two seeds**" in text
    assert "with two, a mean under 1 point or differences of opposite signs):" in text  # the header says the rule
    # SupCon + head BN and its second seed: both comparisons it is an arm of take the two seeds' mean
    (equal / "supcon_head_bn.json").write_text(json.dumps(_equal_run("supcon", 20, 77.3)))
    (equal / "supcon_head_bn_seed1.json").write_text(json.dumps(_equal_run("supcon", 20, 75.0, seed=1)))
    text = report_experiments.render_equal_compute(equal, rank)
    assert ("does SelfCon-S match SupCon + head BatchNorm? `linear`: 75.50 (selfcon_head_bn_e39) against 77.30 "
            "(supcon_head_bn), -1.80 points; seed 1: +2.00, mean +0.10: **not distinguishable with two seeds**") in text
    assert ("Does head BatchNorm help SupCon (20 epochs each)? `linear`: 77.30 (supcon_head_bn) against 76.00 "
            "(main_supcon), +1.30 points; seed 1: +1.00, mean +1.15: **yes, supcon_head_bn leads**") in text
    assert report_experiments.draw_plots(tmp_path / "none", equal, rank, tmp_path) == [
        tmp_path / "equal_compute_accuracy_vs_cpu.png", tmp_path / "equal_compute_accuracy_vs_epoch.png"]


def test_readme_headline_of_the_experiments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_experiments, "ROOT", tmp_path)
    mixco, equal = tmp_path / "mixco", tmp_path / "equal"
    assert report_experiments.render_headline(mixco, equal) == "No experiment has finished yet."
    mixco.mkdir()
    equal.mkdir()
    for name, run in {"moco_seed0": _run("moco", 0, 50.0), "moco_mixco_seed0": _run("moco_mixco", 0, 47.0)}.items():
        (mixco / f"{name}.json").write_text(json.dumps(run))
    assert "| -3.00: the decision waits for both seeds | `mixco/` |" in report_experiments.render_headline(mixco, equal)
    for name, run in {"moco_seed1": _run("moco", 1, 50.0), "moco_mixco_seed1": _run("moco_mixco", 1, 48.0)}.items():
        (mixco / f"{name}.json").write_text(json.dumps(run))
    (equal / "supcon_head_bn.json").write_text(json.dumps(_equal_run("supcon", 20, 76.0)))
    (equal / "supcon_s_head_bn.json").write_text(json.dumps(_equal_run("supcon_s", 20, 70.0)))  # results page only
    (equal / "cost.json").write_text(json.dumps({"equal_compute_epochs": 39, "per_method": {
        "supcon": {"cpu_s_per_step": 1.0}, "supcon_head_bn": {"cpu_s_per_step": 0.99}}}))
    text = report_experiments.render_headline(mixco, equal)
    assert "SupCon-S" not in text
    for name, run in {"simclr_seed0": _run("simclr", 0, 45.0), "simclr_mixco_seed0": _run("simclr_mixco", 0, 43.5)}.items():
        (mixco / f"{name}.json").write_text(json.dumps(run))
    assert "| -1.50: lower with MixCo, one seed |" in report_experiments.render_headline(mixco, equal)
    assert ("| CIFAR-10, `selfcon_resnet10_w16_cifar` without exit, 20 epochs: MoCo v2 + MixCo minus MoCo v2, `linear` "
            "top-1, seeds 0, 1 | -3.00, -2.00, mean -2.50: hurts | `mixco/` |") in text
    assert ("| CIFAR-10, `selfcon_resnet10_w16_cifar`, SupCon + head BatchNorm, 20 epochs (the compute of 19.8 SupCon "
            "epochs), seed 0: `linear_fast` top-1 | 77.00 | `equal/supcon_head_bn.json` |") in text


def test_labels_of_nearby_points_are_spread_apart() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    points = [(20.0, 78.0, "a"), (20.1, 78.05, "b"), (5.0, 78.0, "far"), (12.0, 73.0, "low")]
    ax.scatter([x for x, _, _ in points], [y for _, y, _ in points])
    report_experiments.annotate_apart(ax, points, gap_pt=9.0, width_pt=100.0)
    per_pt = fig.dpi / 72
    label_y = {text.get_text(): ax.transData.transform(text.xy)[1] / per_pt + text.xyann[1] for text in ax.texts}
    lifted = {text.get_text() for text in ax.texts if text.xyann[1] != 3}
    plt.close(fig)
    assert lifted == {"b"}  # only the upper of the close pair moves; a distant point at the same height does not
    assert label_y["b"] - label_y["a"] >= 9.0 - 1e-6  # its label clears the lower one's by the gap
