"""Evaluation (``timm-selfcon eval``): probes, ensemble, kNN, early exit, reports, refusals, CLI.

Everything runs on a real training checkpoint produced by ``engine.train.train`` on a tiny generated dataset
(see ``_eval_data.py``: the class is the position of a randomly coloured square, which a random encoder's
pooled features carry poorly and a trained one well).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from timm_selfcon import cli
from timm_selfcon.data import ContrastiveImageDataset, build_eval_loader, build_transform, load_image_dataset
from timm_selfcon.engine.checkpoint import load_encoder
from timm_selfcon.engine.evaluate import EvalConfig, evaluate
from timm_selfcon.engine.evaluation.classifiers import attach_classifiers, select_epochs
from timm_selfcon.engine.evaluation.early_exit import early_exit_sweep
from timm_selfcon.engine.evaluation.features import extract_exit_features
from timm_selfcon.engine.evaluation.knn import knn_accuracy
from timm_selfcon.engine.evaluation.metrics import topk

from ._eval_data import (
    MODEL,
    MODEL_KWARGS,
    NUM_CLASSES,
    eval_settings,
    tree_digest,
    write_position_dataset,
)

PROBE_EPOCHS = 30



@pytest.fixture(scope="module")
def fast_report(trained_run: Path, position_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``linear_fast`` on the trained run, written under ``output_dir=`` (``_dir``), a JSON copy at ``output=``.

    Not in the run's own ``eval/``, which the protocol ``all`` of another test overwrites.
    """
    out = tmp_path_factory.mktemp("fast")
    output = out / "nested" / "fast.json"
    report = evaluate(trained_run, EvalConfig(**eval_settings(position_data, protocol="linear_fast",
                                                              output=str(output), output_dir=str(out))))
    return {**report, "_output": str(output), "_dir": str(out / "eval" / "linear_fast")}


def fast_classifiers(fast_report: dict[str, Any]) -> dict[str, torch.Tensor]:
    return load_file(str(Path(fast_report["_dir"]) / "classifiers.safetensors"))


def make_test_loader(data: Path, encoder: torch.nn.Module) -> torch.utils.data.DataLoader:
    """The test split as evaluation reads it: 16 px, the encoder's normalisation (its training's), one batch of 64."""
    cfg = encoder.pretrained_cfg
    transform = build_transform("eval", 16, cfg["mean"], cfg["std"])
    dataset = ContrastiveImageDataset(load_image_dataset(data, "test"), transform, "img", "label", seed=0)
    return build_eval_loader(dataset, 64, 0)


# ------------------------------------------------------------------------------------------ probe quality


def test_probe_on_trained_encoder_beats_random_initialisations(fast_report: dict[str, Any], position_data: Path,
                                                               tmp_path: Path) -> None:
    trained = fast_report["results"]["backbone"]["last"]["top1"]
    random_init = []
    for seed in (0, 1, 2):
        report = evaluate(MODEL, EvalConfig(**eval_settings(position_data, protocol="linear_fast", seed=seed,
                                                           model_kwargs=MODEL_KWARGS, output_dir=str(tmp_path))))
        assert report["checkpoint"] is None and report["model"] == MODEL
        random_init.append(report["results"]["backbone"]["last"]["top1"])
    # measured: trained 92-98%, random 53-80% over 5 data seeds x 3 initialisations (chance is 50%)
    assert trained >= 88.0, (trained, random_init)
    assert trained >= max(random_init) + 10.0, (trained, random_init)


# ------------------------------------------------------------------------------------------ report


def test_report_holds_the_documented_fields(fast_report: dict[str, Any], trained_run: Path,
                                            position_data: Path) -> None:
    out_dir = Path(fast_report["_dir"])
    on_disk = json.loads((out_dir / "report.json").read_text())
    assert on_disk == json.loads(Path(fast_report["_output"]).read_text())
    assert on_disk == json.loads(json.dumps({k: v for k, v in fast_report.items() if not k.startswith("_")}))

    assert on_disk["model"] == MODEL and on_disk["method"] == "ce"
    assert on_disk["checkpoint"] == str((trained_run / "ckpt-72").resolve())  # 'last' named by its step
    assert on_disk["dataset"] == dict(data=str(position_data), train_split="train", eval_split="test",
                                      val_fraction=0.25, num_classes=NUM_CLASSES, class_names=["top", "bottom"],
                                      class_list=None, data_from="data=", train_rows=144, val_rows=48,
                                      test_rows=64)
    assert on_disk["protocol"] == "linear_fast"
    assert on_disk["settings"]["val_fraction"] == 0.25 and on_disk["settings"]["image_size"] == 16
    assert on_disk["papers_protocol"] is False and on_disk["weights"] == f"trained checkpoint {on_disk['checkpoint']}"
    hyper = on_disk["hyperparameters"]
    assert (hyper["epochs"], hyper["lr"], hyper["batch_size"], hyper["weight_decay"]) == (PROBE_EPOCHS, 0.1, 64, 0.0)
    assert "not the papers' protocol" in hyper["deviation"]

    assert set(on_disk["results"]) == {"exit_0", "backbone", "ensemble"}
    for name, result in on_disk["results"].items():
        assert set(result) == {"last", "best_val", "best_test"}, name
        for selection in result.values():
            assert 0.0 <= selection["top1"] <= selection["top5"] <= 100.0
        test_curve = [epoch["test_top1"][name] for epoch in on_disk["history"]]
        val_curve = [epoch["val_top1"][name] for epoch in on_disk["history"]]
        assert result["last"]["top1"] == test_curve[-1]
        assert result["best_test"]["top1"] == max(test_curve) == test_curve[result["best_test"]["epoch"] - 1]
        assert "test split" in result["best_test"]["note"]
        assert result["best_val"]["val_top1"] == max(val_curve) == val_curve[result["best_val"]["epoch"] - 1]
        assert result["best_val"]["top1"] == test_curve[result["best_val"]["epoch"] - 1]
    assert [epoch["epoch"] for epoch in on_disk["history"]] == list(range(1, PROBE_EPOCHS + 1))

    classifiers = load_file(str(out_dir / "classifiers.safetensors"))
    assert {k: tuple(v.shape) for k, v in classifiers.items()} == {
        "fc.weight": (NUM_CLASSES, 512), "fc.bias": (NUM_CLASSES,),
        "exit_heads.0.weight": (NUM_CLASSES, 512), "exit_heads.0.bias": (NUM_CLASSES,)}
    png = (out_dir / "plot.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000


def test_selection_reports_last_best_on_validation_and_best_on_test() -> None:
    def epoch(number: int, val: float, test: float) -> dict[str, Any]:
        return dict(epoch=number, val={"backbone": dict(top1=val, top5=100.0)},
                    test={"backbone": dict(top1=test, top5=100.0)})

    history = [epoch(1, 50.0, 60.0), epoch(2, 90.0, 70.0), epoch(3, 80.0, 85.0), epoch(4, 70.0, 65.0)]
    result = select_epochs(history, ["backbone"])["backbone"]
    assert result["last"] == dict(top1=65.0, top5=100.0)
    assert result["best_val"] == dict(top1=70.0, top5=100.0, epoch=2, val_top1=90.0)  # test accuracy of epoch 2
    assert (result["best_test"]["top1"], result["best_test"]["epoch"]) == (85.0, 3)
    no_val = select_epochs([dict(h, val={}) for h in history], ["backbone"])["backbone"]
    assert no_val["best_val"] is None


# ------------------------------------------------------------------------------------------ ensemble


def test_ensemble_accuracy_equals_the_mean_of_the_heads_logits(fast_report: dict[str, Any], trained_run: Path,
                                                               position_data: Path) -> None:
    encoder, _ = load_encoder(trained_run)
    classifiers = fast_classifiers(fast_report)
    feats, labels = extract_exit_features(encoder, make_test_loader(position_data, encoder), "test")
    exit_logits = feats[0] @ classifiers["exit_heads.0.weight"].T + classifiers["exit_heads.0.bias"]
    backbone_logits = feats[1] @ classifiers["fc.weight"].T + classifiers["fc.bias"]
    by_hand = (exit_logits + backbone_logits) / 2

    results = fast_report["results"]
    for name, logits in (("exit_0", exit_logits), ("backbone", backbone_logits), ("ensemble", by_hand)):
        correct = int((logits.argmax(1) == labels).sum())
        assert results[name]["last"]["top1"] == pytest.approx(100.0 * correct / len(labels)), name
    assert results["ensemble"]["last"] == pytest.approx(topk(by_hand, labels))

    # the model with the probe's classifiers plugged in predicts the same ensemble in one forward pass
    model = attach_classifiers(encoder, _heads(classifiers), NUM_CLASSES)
    images = next(iter(make_test_loader(position_data, encoder)))["image"][:, 0]
    with torch.no_grad():
        torch.testing.assert_close(model(images), by_hand[:len(images)], atol=1e-4, rtol=1e-4)


def _heads(classifiers: dict[str, torch.Tensor]) -> torch.nn.ModuleList:
    """Linear layers in the evaluation order (exits, then backbone) from a classifiers.safetensors dict."""
    heads = torch.nn.ModuleList()
    for name in ("exit_heads.0", "fc"):
        head = torch.nn.Linear(512, NUM_CLASSES)
        head.load_state_dict({"weight": classifiers[f"{name}.weight"], "bias": classifiers[f"{name}.bias"]})
        heads.append(head)
    return heads


# ------------------------------------------------------------------------------------------ early exit


def test_forward_early_exit_threshold_zero_is_the_first_exit_and_above_one_the_full_model(
        fast_report: dict[str, Any], trained_run: Path, position_data: Path) -> None:
    encoder, _ = load_encoder(trained_run)
    classifiers = fast_classifiers(fast_report)
    model = attach_classifiers(encoder, _heads(classifiers), NUM_CLASSES)
    images = next(iter(make_test_loader(position_data, encoder)))["image"][:, 0]
    with torch.no_grad():
        exit_logits, backbone_logits = model.forward_exit_logits(images)
        full = model(images)
        first, first_index = model.forward_early_exit(images, 0.0)
        last, last_index = model.forward_early_exit(images, 1.01)
        confidence = exit_logits.softmax(-1).amax(-1)
        levels = confidence.unique(sorted=True)
        assert len(levels) > 2
        threshold = float(levels[len(levels) // 2])
        mixed, mixed_index = model.forward_early_exit(images, threshold)
    assert (first_index == 0).all()
    torch.testing.assert_close(first, exit_logits)
    assert (last_index == model.num_exits).all()
    torch.testing.assert_close(last, full)
    torch.testing.assert_close(full, (exit_logits + backbone_logits) / 2)
    # in between, each image on its own: the exit where it is confident enough, the full model elsewhere
    stops = confidence >= threshold
    assert 0 < int(stops.sum()) < len(images)
    assert torch.equal(mixed_index, torch.where(stops, 0, model.num_exits))
    torch.testing.assert_close(mixed[stops], exit_logits[stops])
    torch.testing.assert_close(mixed[~stops], full[~stops], atol=1e-5, rtol=1e-5)


def test_early_exit_flops_are_the_models_exit_flops(fast_report: dict[str, Any], trained_run: Path) -> None:
    """The sweep's compute per image comes from the model's public ``exit_flops`` (tests/models/test_exit_flops.py
    checks those against direct counts)."""
    encoder, _ = load_encoder(trained_run)
    model = attach_classifiers(encoder, _heads(fast_classifiers(fast_report)), NUM_CLASSES)
    costs = model.exit_flops((3, 16, 16))
    batch = dict(image=torch.zeros(2, 1, 3, 16, 16), label=torch.zeros(2, dtype=torch.long))
    rows = early_exit_sweep(model, [batch], thresholds=(0.0, 1.01))
    assert [row["mean_flops"] for row in rows] == [round(costs[0], 1), round(costs[-1], 1)]
    assert rows[-1]["full_flops"] == pytest.approx(costs[-1])


def test_early_exit_protocol_reports_accuracy_and_compute_per_threshold(trained_run: Path,
                                                                      position_data: Path) -> None:
    report = evaluate(trained_run, EvalConfig(**eval_settings(position_data, protocol="early_exit")))
    rows = {row["threshold"]: row for row in report["early_exit"]}
    assert list(rows) == sorted(rows) and 0.0 in rows and max(rows) > 1.0
    results = report["results"]
    first, full = rows[0.0], rows[max(rows)]
    assert first["exit_fraction"] == [1.0, 0.0]
    assert first["top1"] == pytest.approx(results["exit_0"]["last"]["top1"])
    assert full["exit_fraction"] == [0.0, 1.0]
    assert full["top1"] == pytest.approx(results["ensemble"]["last"]["top1"])
    assert full["mean_flops"] == pytest.approx(full["full_flops"])
    assert first["mean_flops"] < full["mean_flops"]
    flops = [row["mean_flops"] for row in report["early_exit"]]
    assert flops == sorted(flops)  # a higher threshold never stops earlier
    for row in report["early_exit"]:
        assert sum(row["exit_fraction"]) == pytest.approx(1.0)
    assert (trained_run / "eval" / "early_exit" / "plot.png").is_file()


def test_early_exit_protocol_needs_exits(position_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a multi-exit model"):
        evaluate(MODEL, EvalConfig(**eval_settings(position_data, protocol="early_exit", output_dir=str(tmp_path),
                                                   model_kwargs={**MODEL_KWARGS, "exit_stages": []})))


def test_protocol_all_runs_what_applies_from_one_load_of_the_encoder(position_data: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24, item 19: a model without exits (every mixco_*) gets linear_fast, knn and linear, early_exit skipped
    with a note; the encoder is loaded once, and each protocol's numbers are those it gives alone."""
    from timm_selfcon.engine import evaluate as evaluate_module

    loads: list[tuple] = []
    real_load = evaluate_module.load_encoder

    def counting_load(*args: Any, **kwargs: Any):  # the real loader, counted
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "load_encoder", counting_load)
    common = [f"data={position_data}", "epochs=1", "image_size=16", "num_workers=0", "batch_size=64", "val_fraction=0.25",
              "model_kwargs={layers: [1, 1, 1, 1]}"]
    out = tmp_path / "all"
    assert cli.main(["eval", "mixco_resnet18_cifar", "protocol=all", *common, f"output_dir={out}"]) == 0
    printed, err = capsys.readouterr()
    assert len(loads) == 1
    assert set(json.loads(printed)) == {"weights", "linear_fast", "knn", "linear"}
    assert json.loads(printed)["weights"] == "random init (torch seed 0)"  # a plain name: said in plain words
    assert "early_exit skipped: mixco_resnet18_cifar has no exits" in err
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["knn", "linear", "linear_fast"]
    alone = evaluate("mixco_resnet18_cifar", EvalConfig(**eval_settings(
        position_data, protocol="linear_fast", epochs=1, model_kwargs={"layers": [1, 1, 1, 1]},
        output_dir=str(tmp_path / "alone"))))
    together = json.loads((out / "eval" / "linear_fast" / "report.json").read_text())
    assert together["results"] == alone["results"]


# ------------------------------------------------------------------------------------------ kNN


def test_knn_weights_votes_by_temperature_scaled_similarity() -> None:
    # one very close neighbour of class 0 against three mediocre ones of class 1
    train_x = torch.tensor([[1.0, 0.05], [0.5, 0.866], [0.5, -0.866], [0.45, 0.9]])
    train_y = torch.tensor([0, 1, 1, 1])
    test_x, test_y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    assert knn_accuracy(train_x, train_y, test_x, test_y, ks=(4,), temperature=0.07) == {"k4": 100.0}
    # a high temperature flattens the weights into a plain majority vote: class 1 wins
    assert knn_accuracy(train_x, train_y, test_x, test_y, ks=(4,), temperature=100.0) == {"k4": 0.0}
    # k=1 is the nearest neighbour; k larger than the training set uses all of it
    assert knn_accuracy(train_x, train_y, test_x, test_y, ks=(1, 200), temperature=100.0) == {"k1": 100.0, "k200": 0.0}
    # cosine: the scale of a feature does not matter
    assert knn_accuracy(train_x * 7.0, train_y, test_x * 0.01, test_y, ks=(4,)) == {"k4": 100.0}


# ------------------------------------------------------------------------------------------ checkpoint safety


def test_eval_never_modifies_the_training_checkpoint(trained_run: Path, position_data: Path, tmp_path: Path) -> None:
    before = tree_digest(trained_run, skip="eval")
    assert before["last"] == "link -> ckpt-72" and "ckpt-36/model.safetensors" in before
    combined = tmp_path / "all.json"
    reports = evaluate(trained_run, EvalConfig(**eval_settings(position_data, protocol="all", epochs=2,
                                                               output=str(combined))))
    older = evaluate(trained_run / "ckpt-36", EvalConfig(**eval_settings(position_data, protocol="knn")))
    assert tree_digest(trained_run, skip="eval") == before

    protocols = {"linear_fast", "knn", "early_exit", "linear"}
    assert set(reports) == protocols and set(json.loads(combined.read_text())) == protocols
    for protocol in protocols:  # each in <output_dir>/eval/<protocol>/, output_dir = the run's
        written = {path.name for path in (trained_run / "eval" / protocol).iterdir()}
        assert {"report.json", "plot.png"} <= written, protocol
        assert ("classifiers.safetensors" in written) == (protocol != "knn"), protocol
        assert reports[protocol]["protocol"] == protocol and reports[protocol]["checkpoint"].endswith("ckpt-72")
    assert older["checkpoint"].endswith("ckpt-36")
    assert json.loads((trained_run / "eval" / "knn" / "report.json").read_text())["checkpoint"] == older["checkpoint"]

    knn = reports["knn"]
    assert set(knn["results"]["backbone"]) == {"k20", "k200"}
    assert knn["hyperparameters"] == dict(k=[20, 200], temperature=0.07, feature="backbone pooled, L2-normalised, cosine")
    assert knn["results"]["backbone"]["k20"] >= 80.0  # the trained encoder's features cluster by class


def _copy_run(run: Path, destination: Path) -> Path:
    """config.yaml + ckpt-72 (weights and trainer state only) + ``last``: a checkpoint to tamper with."""
    (destination / "ckpt-72" / "accelerate").mkdir(parents=True)
    shutil.copy(run / "config.yaml", destination / "config.yaml")
    for name in ("accelerate/model.safetensors", "trainer_state.json"):
        shutil.copy(run / "ckpt-72" / name, destination / "ckpt-72" / name)
    (destination / "last").symlink_to("ckpt-72")
    return destination


def test_checkpoint_with_other_keys_is_refused_listing_them(trained_run: Path, position_data: Path,
                                                            tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path / "run")
    weights = run / "ckpt-72" / "accelerate" / "model.safetensors"
    state = load_file(str(weights))
    del state["model.fc.bias"]
    state["model.encoder.module.fc.bias"] = torch.zeros(NUM_CLASSES)  # e.g. a DataParallel prefix
    save_file(state, str(weights))
    with pytest.raises(ValueError) as error:
        evaluate(run, EvalConfig(**eval_settings(position_data, protocol="knn")))
    message = str(error.value)
    assert "1 missing keys ['model.fc.bias']" in message
    assert "1 unexpected keys ['model.encoder.module.fc.bias']" in message
    assert not (run / "eval").exists()


def test_checkpoint_of_another_architecture_is_refused(trained_run: Path, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model_kwargs"]["sub_network"] = "same"  # the weights hold an 'fc' exit
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="does not fit the model") as error:
        load_encoder(run)
    message = str(error.value)
    assert "missing keys ['model.exits.0.stages." in message
    assert "unexpected keys ['model.exits.0.fc.bias', 'model.exits.0.fc.weight']" in message


def test_a_checkpoint_copied_out_of_its_run_evaluates(trained_run: Path, position_data: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``cp -rL RUN/last somewhere``: a checkpoint carries its recipe; one written before that evaluates within its run
    and, copied out, is refused naming what is missing (issue 24, item 14)."""
    copied = tmp_path / "somewhere" / "copied"
    shutil.copytree(trained_run / "last", copied)  # follows the link, as cp -rL does
    settings = [f"data={position_data}", "protocol=knn", "image_size=16", "num_workers=0",
                f"output_dir={tmp_path / 'out'}"]
    assert cli.main(["eval", str(copied), *settings]) == 0
    report = json.loads((tmp_path / "out" / "eval" / "knn" / "report.json").read_text())
    assert report["checkpoint"] == str(copied) and report["method"] == "ce" and report["model"] == MODEL

    old_run = _copy_run(trained_run, tmp_path / "old_run")  # its ckpt-72 holds weights and trainer state only
    assert not (old_run / "ckpt-72" / "config.yaml").exists()
    assert cli.main(["eval", str(old_run / "ckpt-72"), *settings]) == 0
    shutil.copytree(old_run / "last", tmp_path / "old_copy")
    capsys.readouterr()
    assert cli.main(["eval", str(tmp_path / "old_copy"), *settings]) == 2
    err = capsys.readouterr().err
    assert err.startswith("timm-selfcon eval: error: ") and err.count("\n") == 1, err
    assert f"'{tmp_path / 'old_copy'}' carries no recipe (config.yaml" in err and "copy the run's config.yaml" in err


def test_model_kwargs_apply_to_model_names_only(trained_run: Path) -> None:
    with pytest.raises(ValueError, match=r"builds its model from its own config\.yaml"):
        load_encoder(trained_run, exit_stages=[1])


# ------------------------------------------------------------------------------------------ bad input


def test_missing_label_column_lists_the_columns(position_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"label column 'fine_label'.*\['img', 'label'\]"):
        evaluate(MODEL, EvalConfig(**eval_settings(position_data, label_column="fine_label",
                                                   model_kwargs=MODEL_KWARGS, output_dir=str(tmp_path))))
    unlabelled = write_position_dataset(tmp_path / "unlabelled", train_rows=4, test_rows=2, with_labels=False)
    with pytest.raises(ValueError, match=r"needs labels.*\['img'\]"):
        evaluate(MODEL, EvalConfig(**eval_settings(unlabelled, model_kwargs=MODEL_KWARGS, output_dir=str(tmp_path))))
    assert not (tmp_path / "eval").exists()


def test_config_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r"unknown protocol 'linaer'.*'linear_fast'"):
        EvalConfig(protocol="linaer")
    with pytest.raises(ValueError, match=r"val_fraction: Input should be less than or equal to 1 \(got 1.5\)"):
        EvalConfig(val_fraction=1.5)


# ------------------------------------------------------------------------------------------ the papers' protocol


def test_faithful_linear_probe_records_the_protocol(trained_run: Path, position_data: Path) -> None:
    report = evaluate(trained_run, EvalConfig(**eval_settings(position_data, protocol="linear", epochs=5)))
    hyper = report["hyperparameters"]
    assert (hyper["lr"], hyper["momentum"], hyper["weight_decay"], hyper["batch_size"]) == (3.0, 0.9, 0.0, 64)
    assert hyper["schedule"] == "x0.1 after epochs [3, 4]"  # 60% and 80% of the epochs: [60, 80] at 100
    assert hyper["augmentation"] == "random resized crop + flip" and hyper["deviation"] is None
    assert hyper["standardised_features"] is False
    assert [epoch["epoch"] for epoch in report["history"]] == [1, 2, 3, 4, 5]
    assert set(report["results"]) == {"exit_0", "backbone", "ensemble"}
    assert all(report["results"][name]["best_val"] is not None for name in report["results"])
    assert load_file(str(trained_run / "eval" / "linear" / "classifiers.safetensors")).keys() == {
        "fc.weight", "fc.bias", "exit_heads.0.weight", "exit_heads.0.bias"}


# ------------------------------------------------------------------------------------------ command line


def test_cli_eval_writes_the_report(trained_run: Path, position_data: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "cli.json"
    code = cli.main(["eval", str(trained_run), f"data={position_data}", "protocol=knn", "image_size=16",
                     "num_workers=0", "knn_k=[5, 50]", f"output={output}"])
    assert code == 0
    report = json.loads(output.read_text())
    assert report["protocol"] == "knn" and set(report["results"]["backbone"]) == {"k5", "k50"}
    printed = json.loads(capsys.readouterr().out)
    assert printed["results"] == report["results"]

    assert cli.main(["eval", str(trained_run), "protocl=knn"]) == 2
    assert "unknown key 'protocl' in the overrides; did you mean 'protocol'?" in capsys.readouterr().err
    assert cli.main(["eval", str(trained_run), f"data={position_data}", "label_column=fine_label"]) == 2
    assert "['img', 'label']" in capsys.readouterr().err
