"""The README's measured-results table is exactly what benchmarks/results/runs/*.json say."""
import json
from pathlib import Path

from benchmarks.report import make_report

ROOT = Path(__file__).resolve().parents[3]


def test_readme_table_matches_the_run_json() -> None:
    assert make_report.main(["--check"]) == 0


def test_render_reports_each_method_from_its_json(tmp_path: Path) -> None:
    run = {"recipe": {"method": "selfcon", "model": "selfcon_resnet10_cifar"}, "train_seconds": 120.0,
           "data": {"train_images": 100, "epochs": 1},
           "early_exit": {"results": {h: {"last": {"top1": v}} for h, v in
                                      (("backbone", 40.0), ("exit_0", 30.0), ("ensemble", 42.5))}},
           "knn": {"results": {"backbone": {"k20": 35.0}}}}
    (tmp_path / "selfcon_seed0.json").write_text(json.dumps(run))
    table = make_report.render(tmp_path)
    assert "| selfcon | selfcon_resnet10_cifar | 1 | 100 x 1 | 2.00 | 40.00 | 30.00 | 42.50 | 35.00 |" in table
    run["early_exit"]["results"]["backbone"]["last"]["top1"] = 50.0
    (tmp_path / "selfcon_seed1.json").write_text(json.dumps(run))
    assert "| selfcon | selfcon_resnet10_cifar | 2 | 100 x 1 | 2.00 ± 0.00 | 45.00 ± 7.07 |" in make_report.render(tmp_path)


def test_early_exit_per_epoch_and_cost_tables_and_plots(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    sweep = [{"threshold": t, "top1": a, "mean_flops": f, "exit_fraction": [e, 1 - e]}
             for t, a, f, e in ((0.0, 40.0, 2e8, 1.0), (1.01, 44.0, 5e8, 0.0))]
    run = {"recipe": {"method": "selfcon", "model": "m"}, "train_seconds": 60.0,
           "data": {"train_images": 100, "epochs": 2},
           "early_exit": {"results": {"backbone": {"last": {"top1": 1.0}}}, "early_exit": sweep},
           "knn": {"results": {"backbone": {"k20": 1.0}}},
           "linear_fast_per_epoch": {"2": {"backbone": 33.0}, "1": {"backbone": 30.0}}}
    (runs / "selfcon_seed0.json").write_text(json.dumps(run))
    step = {"views": 1, "wall_ms": 50.0, "wall_vs_supcon": 0.5, "peak_added_mb": 100.0, "memory_vs_supcon": 0.55}
    cost = {"model": "selfcon_resnet18_cifar", "precision_label": "fp32", "cpu_count": 2, "threads": 2, "rounds": 1,
            "repeats": 2, "method_steps": {"64": {"SupCon": {**step, "views": 2, "wall_vs_supcon": 1.0,
                                                             "memory_vs_supcon": 1.0}, "SelfCon (fc exit)": step}}}
    (tmp_path / "cost.json").write_text(json.dumps(cost))
    text = make_report.render(runs, tmp_path / "cost.json")
    assert "| 0 | 40.00 | 200 | 1.00 |" in text and "| 1.01 | 44.00 | 500 | 0.00 |" in text
    assert "| selfcon | backbone | - | 30.00 | 33.00 |" in text  # epochs in numeric order, epoch 0 not measured
    assert "| 64 | SelfCon (fc exit) | 1 | 50 | 0.50 | 100 | 0.55 |" in text
    written = make_report.draw_plots(runs, tmp_path / "cost.json", tmp_path)
    assert [p.name for p in written] == ["accuracy_vs_epoch.png", "cost.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_committed_report_model_loads_with_local_dir() -> None:
    """The report's exported SelfCon model (benchmarks/results) is a complete timm Hub folder under 20 MB."""
    import timm
    import torch

    import timm_selfcon  # noqa: F401

    exported = json.loads((ROOT / "benchmarks" / "results" / "exported_models.json").read_text())["selfcon"]
    folder = ROOT / exported["folder"]
    assert (folder / "model.safetensors").stat().st_size < 20_000_000
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert model.num_classes == 10 and model.num_exits == 1
    with torch.no_grad():
        logits = model.forward_exit_logits(torch.randn(2, 3, 32, 32))
        ensemble = model(torch.randn(2, 3, 32, 32))
    assert [t.shape for t in logits] == [torch.Size([2, 10])] * 2 and ensemble.shape == (2, 10)


def test_committed_mixco_model_loads_with_local_dir_and_matches_its_run() -> None:
    """The exported MoCo v2 + MixCo encoder (issue 22): a timm Hub folder under 5 MB, no exits, its card naming the
    method and the paper, and ``exported_models.json`` recording the reload check of the run's own accuracy."""
    import timm
    import torch

    import timm_selfcon  # noqa: F401

    exported = json.loads((ROOT / "benchmarks" / "results" / "exported_models.json").read_text())["mixco"]
    folder = ROOT / exported["folder"]
    assert exported["run"] == "moco_mixco_seed0" and (folder / "model.safetensors").stat().st_size < 5_000_000
    assert exported["max_difference_points"] <= 0.1 and exported["against_untrained"]["gain_points"] >= 15
    card = (folder / "README.md").read_text()
    assert "moco_mixco" in card and "arXiv 2010.06300" in card and "/work/" not in card
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert model.num_classes == 10 and model.num_exits == 0
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_epoch_zero_is_the_untrained_run_with_the_same_initial_encoder(tmp_path: Path) -> None:

    def run(name: str, method: str, model_kwargs: dict, top1: float, per_epoch: bool = True) -> None:
        body = {"name": name, "recipe": {"method": method, "model": "m", "model_kwargs": model_kwargs, "seed": 0},
                "train_seconds": 0.0, "data": {"train_images": 100, "epochs": 1},
                "linear_fast": {"results": {"backbone": {"last": {"top1": top1}}}},
                "knn": {"results": {"backbone": {"k20": 1.0}}}}
        if per_epoch:
            body["linear_fast_per_epoch"] = {"1": {"backbone": top1 + 1}}
        (tmp_path / f"{name}.json").write_text(json.dumps(body))

    run("random_init_seed0", "random_init", {"exit_stages": [2]}, 20.0, per_epoch=False)
    run("random_init_noexit_seed0", "random_init", {"exit_stages": []}, 21.0, per_epoch=False)
    run("selfcon_seed0", "selfcon", {"exit_stages": [2]}, 30.0)
    run("supcon_seed0", "supcon", {"exit_stages": []}, 40.0)
    run("ce_seed0", "ce", {"exit_stages": []}, 50.0)  # a classifier: another initial draw, not measured untrained
    text = make_report.render(tmp_path)
    assert "| selfcon | backbone | 20.00 | 31.00 |" in text
    assert "| supcon | backbone | 21.00 | 41.00 |" in text
    assert "| ce | backbone | - | 51.00 |" in text
    assert "| random_init | m | 1 | none (untrained) |" in text
    assert "| random_init_noexit | m | 1 | none (untrained) |" in text


def test_rank_table_reads_gains_against_the_runs_own_floor(tmp_path: Path) -> None:

    def probe(backbone, exit_0=None):
        heads = {"backbone": backbone} | ({"exit_0": exit_0, "ensemble": exit_0 + 1} if exit_0 else {})
        return {"linear_fast": {"results": {h: {"last": {"top1": v}} for h, v in heads.items()}},
                "knn": {"results": {"backbone": {"k20": backbone - 2}}}}

    floor = {"phase": "floor", "recipe": {"method": "untrained", "model_kwargs": {"exit_stages": [2]}},
             "test": probe(38.0, 36.0)}
    main = {"phase": "main", "recipe": {"method": "selfcon", "model_kwargs": {"exit_stages": [2]}, "epochs": 20,
                                        "method_kwargs": {"head_batchnorm": True}, "optimizer": "sgd"},
            "train_seconds_this_sitting": 600.0, "test": probe(60.5, 55.0),
            "linear_fast_per_epoch": {"10": {"backbone": 50.0}, "20": {"backbone": 60.5}}}
    (tmp_path / "floor_selfcon.json").write_text(json.dumps(floor))
    (tmp_path / "main_selfcon_head_bn.json").write_text(json.dumps(main))
    text = make_report.render_rank(tmp_path)
    assert "| main_selfcon_head_bn | selfcon | head_batchnorm | 20 | 10.0 | 60.50 | +22.50 | 55.00 | 56.00 | 58.50 |" in text
    assert "| floor_selfcon | untrained | - | 0 | 0.0 | 38.00 | - | 36.00 | 37.00 | 36.00 |" in text
    assert "| main_selfcon_head_bn | 38.00 | 50.00 | 60.50 |" in text


def test_rank_linear_table_and_resumed_run_time(tmp_path: Path) -> None:

    def linear(run, backbone):
        return {"phase": "linear", "name": f"linear_{run}", "run": run, "epochs": 10,
                "test": {"linear": {"results": {"backbone": {"last": {"top1": backbone}}}}}}

    def probe(backbone):
        return {"linear_fast": {"results": {"backbone": {"last": {"top1": backbone}}}},
                "knn": {"results": {"backbone": {"k20": backbone - 2}}}}

    floor = {"phase": "floor", "name": "floor_noexit", "recipe": {"method": "untrained", "model_kwargs": {}},
             "test": probe(37.0)}
    # resumed: 60 s in its last sitting, but 1000 steps x 100 images at 1000 images/s took 100 s
    main = {"phase": "main", "name": "main_supcon", "test": probe(70.0), "train_seconds_this_sitting": 60.0,
            "recipe": {"method": "supcon", "model_kwargs": {}, "epochs": 20, "batch_size": 100, "optimizer": "sgd"},
            "train_summary": {"steps": 1000}, "train_images_per_s": [900.0, 1100.0]}
    for name, run in {"floor_noexit": floor, "main_supcon": main, "linear_main_supcon": linear("main_supcon", 72.5),
                      "linear_floor_noexit": linear("floor_noexit", 40.0)}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(run))
    text = make_report.render_rank(tmp_path)
    assert "| main_supcon | supcon | none | 20 | ≈1.7 | 70.00 | +33.00 | - | - | 68.00 |" in text
    assert "≈: a run resumed across sessions" in text
    assert "for 10 epochs on the final checkpoints" in text
    assert "| main_supcon | supcon | 10 | 72.50 | +32.50 | - | - | 70.00 | - |" in text
    assert "| floor_noexit | untrained | 10 | 40.00 | - | - | - | 37.00 | - |" in text


def _device_run(**changes) -> dict:
    """A device_check.py result in its schema, with round numbers."""
    pipeline = {"global_batch": 1024, "views": 1, "precision": "bf16", "channels_last": True,
                "device_images_per_s": 45_000.0, "workers_images_per_s": 9_000.0,
                "premade_images_per_s": 50_000.0, "device_vs_premade": 0.9, "augment_share": 0.04, "train_images": 50_000}
    run = {"environment": {"device": "NVIDIA H200", "torch": "2.11.0", "cuda": "13.0", "timm": "1.0.31",
                           "git_commit": "0123456789abcdef", "cpu_count": 16},
           "started_utc": "20261201-100000", "smoke": False, "arguments": ["--compare-budget", "240"],
           "parts": ["pipelines", "resnet50", "train", "compare"], "complete": True, "seconds": 400.0,
           "compare_budget_s": 240.0,
           "pipelines": {"SelfCon (fc exit)": pipeline,
                         "SupCon": {**pipeline, "views": 2, "device_images_per_s": 18_000.0, "augment_share": 0.07}},
           "resnet50": {"SelfCon (same exit)": {"step_s": 0.05, "peak_gib": 6.0, "images_per_view": 256, "image_size": 224},
                        "SupCon": {"step_s": 0.1, "peak_gib": 10.0, "images_per_view": 256, "image_size": 224},
                        "ratio": {"time": 0.5, "memory": 0.6, "paper": {"time": 0.48, "memory": 0.59},
                                  "model": "selfcon_resnet50"}},
           "train": {"steps": 200, "finite_losses": True, "losses": [5.0], "images_per_s": [40_000.0],
                     "eval_exit_status": 0, "linear_fast_top1": {"backbone": 30.0}},
           "compare": {"ce": {"epochs": 12, "train_s": 20.0, "final_loss": 0.5, "linear_fast_top1": {"backbone": 80.0}},
                       "selfcon": {"epochs": 12, "train_s": 25.0, "final_loss": 4.1,
                                   "linear_fast_top1": {"backbone": 85.0, "exit_0": 70.0, "ensemble": 86.0}},
                       "untrained (with exit)": {"epochs": 0, "train_s": 0.0,
                                                 "linear_fast_top1": {"backbone": 30.0, "exit_0": 28.0, "ensemble": 31.0}},
                       "untrained (no exit)": {"epochs": 0, "train_s": 0.0, "linear_fast_top1": {"backbone": 29.0}}}}
    return {**run, **changes}


def test_device_table_reads_the_latest_gpu_run_against_the_goals_and_the_paper(tmp_path: Path) -> None:
    assert make_report.render_device(tmp_path).startswith("No GPU measurement yet")
    (tmp_path / "smoke.json").write_text(json.dumps(_device_run(smoke=True, started_utc="20991231-000000")))
    (tmp_path / "old.json").write_text(json.dumps(_device_run(started_utc="20261130-000000", compare_budget_s=None)))
    (tmp_path / "new.json").write_text(json.dumps(_device_run()))
    text = make_report.render_device(tmp_path)
    assert text.startswith("Measured on one NVIDIA H200 (ours): "
                           "`python -m benchmarks.device.device_check --compare-budget 240` "
                           "at commit 0123456789ab, torch 2.11.0, CUDA 13.0")
    assert "`benchmarks/results/device/new.json`" in text and "Incomplete" not in text  # smoke runs never count
    assert "| SelfCon (fc exit) | 1024 | 1 | 45,000 (met) | 40,000 | 9,000 | 50,000 | 0.900 | 4.0% (met) |" in text
    assert "| SupCon | 1024 | 2 | 18,000 (**not met**) | 20,000 | 9,000 | 50,000 | 0.900 | 7.0% (**not met**) |" in text
    assert "| step time | 50.0 ms | 100.0 ms | 0.50 | 0.48 |" in text
    assert "| peak memory | 6.00 GiB | 10.00 GiB | 0.60 | 0.59 |" in text
    assert "200 SelfCon steps with `data_pipeline=device`, losses finite" in text
    assert "SGD step (bf16, channels-last)" in text
    assert "on 50,000 training images for 12 epoch(s) (the most that fit a 240 s budget at the measured step rates)" in text
    # ranked by backbone top-1; each gain is over the untrained encoder with the same exits
    assert "| 1 | selfcon | 12 | 25 | 4.100 | 85.00 | +55.00 | 70.00 | 86.00 |" in text
    assert "| 2 | ce | 12 | 20 | 0.500 | 80.00 | +51.00 | - | - |" in text
    assert "| - | untrained (no exit) | 0 | - | - | 29.00 | - | - | - |" in text


def test_device_table_says_what_a_stopped_run_did_not_measure(tmp_path: Path) -> None:
    run = _device_run(complete=False, seconds=470.0)
    del run["train"], run["compare"]
    (tmp_path / "stopped.json").write_text(json.dumps(run))
    text = make_report.render_device(tmp_path)
    assert "**Incomplete:** the run stopped after 470 s; not measured: train, compare." in text
    assert "CE vs SupCon" not in text and "| step time |" in text


def test_mixco_parity_table_reads_each_case_and_the_split_bn_effect(tmp_path: Path) -> None:
    path = tmp_path / "parity_mixco.json"
    assert make_report.render_parity_mixco(path) == "Not measured yet."

    def group(ours: list[float], noise: list[float]) -> dict:
        return dict(weight_difference=ours, noise_weight_difference=noise, final_weight_difference=ours[-1],
                    noise_final_weight_difference=noise[-1], final_largest_in="projector.model.bn1.running_var",
                    passed=True)

    moco = dict(case="moco_mixco", temperature=0.2, mix_temperature=0.05, mix_weight=1.0, queue_size=4096,
                momentum=0.99, lr=0.015, weight_decay=1e-4, passed=True, loss_difference=[0.0, 2e-6, 1e-3],
                noise_loss_difference=[0.0, 1e-6, 4e-3], max_loss_difference=1e-3, max_noise_loss_difference=4e-3,
                groups={"query encoder": group([1e-7, 1e-3], [2e-7, 2e-3]), "key encoder": group([1e-8, 1e-5],
                        [2e-8, 3e-5]), "queue": group([0.0, 1e-4], [0.0, 2e-4])},
                split_bn_effect=dict(num_splits=2, first_step_loss_difference=0.15,
                                     first_step_relative_loss_difference=0.0142))
    simclr = dict(case="simclr_mixco", temperature=0.5, mix_temperature=0.5, mix_weight=1.0, lr=0.15,
                  weight_decay=1e-6, passed=False, loss_difference=[0.0, 0.0, 0.5], noise_loss_difference=[1e-6, 0.0, 1e-3],
                  max_loss_difference=0.5, max_noise_loss_difference=1e-3,
                  groups={"query encoder": group([3e-7, 1.0], [1e-7, 1e-2])})
    path.write_text(json.dumps(dict(steps=3, batch_size=64, image_size=32, tolerance_factor=10.0, torch="2.x",
                                    threads=1, cases=[moco, simclr])))
    text = make_report.render_parity_mixco(path)
    assert ("| MoCo v2 + MixCo | τ 0.2, mix τ 0.05, mix weight 1, queue 4096, m 0.99, lr 0.015, wd 0.0001 | pass | "
            "2.0e-06 (1.0e-06) | 1.0e-03 (4.0e-03) | 1.0e-07 (2.0e-07); 1.0e-03 (2.0e-03) | 1.0e-08 (2.0e-08); "
            "1.0e-05 (3.0e-05) | 0.0e+00 (0.0e+00); 1.0e-04 (2.0e-04) |") in text
    assert ("| SimCLR + MixCo | τ 0.5, mix τ 0.5, mix weight 1, lr 0.15, wd 1e-06 | FAIL | 0.0e+00 (1.0e-06) | "
            "5.0e-01 (1.0e-03) | 3.0e-07 (1.0e-07); 1.0e+00 (1.0e-02) | - | - |") in text
    assert "MoCo v2 + MixCo from 1e-06 in steps 1-2 to 4e-03 at step 3" in text
    assert "torch 2.x, 1 thread, fp32" in text and "SimCLR + MixCo: query encoder `projector.model.bn1.running_var`." in text
    assert "the first step's loss by 1.5e-01 (1.4%), where `key_bn: none` differs by 0.0e+00" in text
