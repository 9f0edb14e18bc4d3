"""``export``: a training checkpoint + its evaluation -> a folder timm's ``local-dir:`` / ``hf-hub:`` loaders read.

One tiny multi-exit run (ResNet-18 CIFAR with one block per stage, exits after stages 1 and 2) is evaluated for real
(``protocol=early_exit`` on generated 16x16 images) and exported; the exported model must reproduce the checkpoint
encoder with the evaluation's classifiers exactly, through every multi-exit API.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import warnings
from pathlib import Path

import pytest
import timm
import torch
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.errors import EntryNotFoundError
from safetensors.torch import load_file

from timm_selfcon.cli import main
from timm_selfcon.engine.evaluate import evaluate, load_encoder
from timm_selfcon.engine.finetune import finetune
from timm_selfcon.errors import UserInputError
from timm_selfcon.hub import export, render_card
from timm_selfcon.hub.records import ExportInfo

from . import CLASS_NAMES, NUM_CLASSES, STEP, make_data, make_run

PROTOCOL = "early_exit"
OLD_EXPORTS = Path(__file__).parent / "fixtures" / "old_exports"


def assert_keys_of_old_export(info: dict, old_name: str) -> None:
    """``export_info.json`` has the keys an export written before the typed records has (older code reads it)."""
    old = json.loads((OLD_EXPORTS / old_name / "export_info.json").read_text())
    assert set(info) == set(old)
    for key in ("source", "preprocessing", "exits"):
        assert set(info[key] or {}) == set(old[key] or {}), key
    for protocol, report in info["evaluations"].items():
        assert set(report["dataset"]) >= set(old["evaluations"][protocol]["dataset"]), protocol
    assert ExportInfo.from_dict(info).to_dict() == info


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose ``last`` checkpoint has a real ``early_exit`` evaluation (report, classifiers, plot)."""
    root = tmp_path_factory.mktemp("hub_run")
    data = make_data(root / "data", train_rows=24, test_rows=8)
    run = make_run(root / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 16 px keeps the feature extraction cheap; the CIFAR ResNets are fully convolutional
        evaluate(run, data=str(data), protocol=PROTOCOL, epochs=2, num_workers=0, batch_size=8, val_fraction=0.25,
                 image_size=16)
    return run


@pytest.fixture(scope="module")
def exported(evaluated_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hub_export") / "export"
    result = export(evaluated_run, out)
    assert result.classifiers_protocol == PROTOCOL and not result.encoder_only and result.with_exits
    return out


def reference_model(run: Path, protocol: str = PROTOCOL) -> torch.nn.Module:
    """The checkpoint's encoder with the evaluation's classifiers loaded in, built without the export code."""
    encoder, _ = load_encoder(run)
    heads = load_file(str(run / "eval" / protocol / "classifiers.safetensors"))
    model = copy.deepcopy(encoder)
    model.reset_classifier(NUM_CLASSES)
    missing, unexpected = model.load_state_dict(heads, strict=False)
    assert not unexpected
    assert all(not k.startswith(("fc.", "exit_heads.")) for k in missing)
    return model.eval()


def test_folder_holds_timm_files_and_no_pickle(exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "export_info.json",
                                                        "model.safetensors"]
    config = json.loads((exported / "config.json").read_text())
    assert config["architecture"] == "selfcon_resnet18_cifar"
    assert config["num_classes"] == NUM_CLASSES
    args = config["model_args"]
    assert args["exit_stages"] == [1, 2] and args["sub_network"] == "fc" and args["layers"] == [1, 1, 1, 1]
    assert args["num_classes"] == NUM_CLASSES
    cfg = config["pretrained_cfg"]
    assert cfg["classifier"] == ["fc", "exit_heads.0", "exit_heads.1"]
    assert cfg["label_names"] == CLASS_NAMES and config["label_names"] == CLASS_NAMES
    assert cfg["input_size"] == [3, 16, 16] and cfg["crop_pct"] == 1.0  # the size the encoder was trained at
    assert cfg["mean"] == pytest.approx([0.4914, 0.4822, 0.4465]) and cfg["std"] == pytest.approx([0.2023, 0.1994, 0.2010])
    weights = load_file(str(exported / "model.safetensors"))
    assert {"fc.weight", "exit_heads.0.weight", "exit_heads.1.weight", "exits.1.fc.weight"} <= set(weights)
    assert not any(k.startswith("projector") for k in weights)  # training-only parts stay in the checkpoint


def test_export_info_keeps_the_keys_of_earlier_exports(evaluated_run: Path, exported: Path) -> None:
    info = json.loads((exported / "export_info.json").read_text())
    assert_keys_of_old_export(info, "selfcon_early_exit")
    assert info["evaluations"] == {PROTOCOL: json.loads((evaluated_run / "eval" / PROTOCOL / "report.json").read_text())}
    assert info["format"] == "timm-selfcon-export/1"


def test_bad_repo_id_is_refused_before_writing(evaluated_run: Path, tmp_path: Path) -> None:
    for bad in ("no-org", "a/b/c", "org/na me", "org/x--y"):
        with pytest.raises(UserInputError, match=rf"repo_id must look like 'ORG/NAME'.*got {bad!r}"):
            export(evaluated_run, tmp_path / "out", repo_id=bad)
    assert not (tmp_path / "out").exists()


def test_local_dir_reproduces_the_checkpoint_and_classifiers(evaluated_run: Path, exported: Path) -> None:
    loaded = timm.create_model(f"local-dir:{exported}", pretrained=True).eval()
    reference = reference_model(evaluated_run)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(x), rtol=0, atol=0)
        for got, want in zip(loaded.forward_exit_logits(x), reference.forward_exit_logits(x), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        torch.testing.assert_close(loaded.forward_ensemble(x, average="probs"),
                                   reference.forward_ensemble(x, average="probs"), rtol=0, atol=0)
        for threshold in (0.0, 0.3, 1.01):
            logits, index = loaded.forward_early_exit(x, threshold)
            want_logits, want_index = reference.forward_early_exit(x, threshold)
            torch.testing.assert_close(logits, want_logits, rtol=0, atol=0)
            assert torch.equal(index, want_index)
    assert loaded.pretrained_cfg["label_names"] == CLASS_NAMES


def test_new_num_classes_reheads_every_head(exported: Path) -> None:
    exported_weights = load_file(str(exported / "model.safetensors"))
    model = timm.create_model(f"local-dir:{exported}", pretrained=True, num_classes=7).eval()
    assert model.fc.out_features == 7
    assert [head.out_features for head in model.exit_heads] == [7, 7]
    assert model.forward_ensemble(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    state = model.state_dict()
    for key, value in exported_weights.items():
        if not key.startswith(("fc.", "exit_heads.")):
            assert torch.equal(state[key], value), key


def test_hf_hub_loading_offline(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requested = []

    def fake_download(repo_id: str, filename: str, revision: str | None = None, cache_dir=None, **kwargs) -> str:
        requested.append((repo_id, filename))
        path = exported / filename
        if not path.is_file():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", fake_download)
    from_hub = timm.create_model("hf-hub:org/selfcon_test", pretrained=True).eval()
    local = timm.create_model(f"local-dir:{exported}", pretrained=True).eval()
    assert ("org/selfcon_test", "config.json") in requested
    assert ("org/selfcon_test", "model.safetensors") in requested
    assert not any(name.endswith((".bin", ".pth")) for _, name in requested)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(from_hub(x), local(x), rtol=0, atol=0)
        torch.testing.assert_close(from_hub.forward_early_exit(x, 0.5)[0], local.forward_early_exit(x, 0.5)[0])
    assert from_hub.pretrained_cfg["hf_hub_id"] == "org/selfcon_test"


def test_card_metadata_parses_and_matches_the_evaluation(evaluated_run: Path, exported: Path) -> None:
    card = ModelCard.load(exported / "README.md")
    data = card.data
    assert data.library_name == "timm"
    assert data.license == "apache-2.0"
    assert data.datasets == ["uoft-cs/cifar10"]  # the recipe's training data (the test evaluation is a local folder)
    assert {"timm", "selfcon", "multi-exit", "early-exit"} <= set(data.tags)
    assert data.pipeline_tag == "image-classification"
    assert data.base_model is None
    report = json.loads((evaluated_run / "eval" / PROTOCOL / "report.json").read_text())
    got = {(r.metric_name, r.metric_value) for r in data.eval_results}
    want = set()
    for head in ("exit_0", "exit_1", "backbone", "ensemble"):
        for metric, title in (("top1", "Top-1"), ("top5", "Top-5")):
            want.add((f"{title} accuracy, {head} ({PROTOCOL})", report["results"][head]["last"][metric]))
    assert got == want
    assert all(r.dataset_split == "test" and r.task_type == "image-classification" for r in data.eval_results)

    text = card.text
    code = text.split("```python", 1)[1]
    assert code.lstrip().startswith("import timm_selfcon")
    assert "hf-hub:ORG/selfcon_resnet18_cifar.selfcon_cifar10" in code
    assert "forward_early_exit" in code and "num_classes=7" in code
    assert "a test run written by tests/hub" in text  # the recipe's provenance
    assert f"Protocol `{PROTOCOL}`" in text and "threshold" in text
    assert "arXiv:2106.15499" in text and "arXiv:2010.06300" in text
    assert "mix temperature" not in text


def test_encoder_only_variant(evaluated_run: Path, tmp_path: Path) -> None:
    result = export(evaluated_run, tmp_path / "encoder", classifiers=False)
    assert result.encoder_only and result.num_classes == 0 and result.with_exits
    config = json.loads((tmp_path / "encoder" / "config.json").read_text())
    assert config["num_classes"] == 0 and config["model_args"]["num_classes"] == 0
    assert config["model_args"]["exit_stages"] == [1, 2]
    loaded = timm.create_model(f"local-dir:{tmp_path / 'encoder'}", pretrained=True).eval()
    encoder, _ = load_encoder(evaluated_run)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), encoder.eval()(x), rtol=0, atol=0)
        for got, want in zip(loaded.forward_exits(x), encoder.forward_exits(x), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    card = ModelCard.load(tmp_path / "encoder" / "README.md")
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert "encoder-only" in card.text


def test_without_exits_variant(evaluated_run: Path, tmp_path: Path) -> None:
    result = export(evaluated_run, tmp_path / "plain", exits=False, repo_id="me/plain")
    assert not result.with_exits and result.num_classes == NUM_CLASSES
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert config["model_args"]["exit_stages"] == []
    assert config["pretrained_cfg"]["classifier"] == "fc"
    loaded = timm.create_model(f"local-dir:{tmp_path / 'plain'}", pretrained=True).eval()
    assert loaded.num_exits == 0
    assert not any(k.startswith(("exits.", "exit_heads.")) for k in loaded.state_dict())
    reference = reference_model(evaluated_run)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference.forward_head(reference.forward_features(x)), rtol=0, atol=0)
    card = ModelCard.load(tmp_path / "plain" / "README.md")
    assert {r.metric_name for r in card.data.eval_results} == {f"Top-1 accuracy, backbone ({PROTOCOL})",
                                                               f"Top-5 accuracy, backbone ({PROTOCOL})"}
    assert "hf-hub:me/plain" in card.text and "multi-exit" not in card.data.tags


def test_no_evaluation_gives_an_encoder_only_export_and_says_so(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    with pytest.warns(UserWarning, match="encoder-only export"):
        result = export(run, tmp_path / "out")
    assert result.encoder_only and result.num_classes == 0 and result.classifiers_protocol is None
    assert any("no evaluation" in note for note in result.notes)
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.eval_results is None
    assert "encoder-only export" in card.text and "exported without an evaluation" in card.text


def test_protocol_errors(evaluated_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown protocol 'bogus'"):
        export(evaluated_run, tmp_path / "a", protocol="bogus")
    with pytest.raises(ValueError, match="kNN trains no classifiers"):
        export(evaluated_run, tmp_path / "b", protocol="knn")
    with pytest.raises(ValueError, match=r"no 'linear' evaluation with classifiers .*\(found: \['early_exit'\]\)"):
        export(evaluated_run, tmp_path / "c", protocol="linear")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_classifiers_of_another_checkpoint_are_refused(evaluated_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run, symlinks=True)
    report_path = run / "eval" / PROTOCOL / "report.json"
    report = json.loads(report_path.read_text())
    report["checkpoint"] = str(run / f"ckpt-{STEP - 1}")
    report_path.write_text(json.dumps(report))
    with pytest.raises(ValueError, match=f"trained on the features of .*ckpt-{STEP - 1}"):
        export(run, tmp_path / "out")


def test_out_dir_that_is_not_an_export_is_refused(evaluated_run: Path, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="not an earlier timm-selfcon export"):
            export(evaluated_run, tmp_path / "busy", overwrite=overwrite)
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


def test_an_earlier_export_is_replaced_only_with_overwrite(evaluated_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # the rule of train (issue 24, item 16): refused before any work, naming the ways on
    out = tmp_path / "out"
    assert main(["export", str(evaluated_run), str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["export", str(evaluated_run), str(out), "--no-exits"]) == 2
    printed, err = capsys.readouterr()
    assert err.startswith(f"timm-selfcon export: error: out_dir '{out}' already holds an export") and printed == ""
    assert err.count("\n") == 1 and "--overwrite" in err and "new out_dir" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(["export", str(evaluated_run), str(out), "--no-exits", "--overwrite"]) == 0
    assert "without exits" in capsys.readouterr().out
    assert json.loads((out / "export_info.json").read_text())["with_exits"] is False
    with pytest.raises(UserInputError, match="overwrite=True"):
        export(evaluated_run, out)


def test_mixco_export_names_base_method_and_mixing(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", model="mixco_resnet18_cifar", model_kwargs={"layers": [1, 1, 1, 1]},
                   method="moco_mixco", queue_size=16, mix_temperature=0.07, mix_weight=0.5)
    with pytest.warns(UserWarning, match="encoder-only"):
        result = export(run, tmp_path / "out")
    assert not result.with_exits
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architecture"] == "mixco_resnet18_cifar" and config["model_args"]["layers"] == [1, 1, 1, 1]
    encoder, _ = load_encoder(run)
    loaded = timm.create_model(f"local-dir:{tmp_path / 'out'}", pretrained=True).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), encoder.eval()(x), rtol=0, atol=0)
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "Base method: **MoCo v2**" in card.text
    assert "mix temperature **0.07**" in card.text and "mix weight **0.5**" in card.text
    assert "mixco" in card.data.tags and "self-supervised-learning" in card.data.tags
    assert "| `mix_temperature` | 0.07 |" in card.text and "| `queue_size` | 16 |" in card.text

    info = json.loads((tmp_path / "out" / "export_info.json").read_text())
    info["recipe"]["method"] = "simclr_mixco"
    simclr = render_card(info).text
    assert "Base method: **SimCLR**" in simclr and "| `queue_size` |" not in simclr


def test_generic_path_records_its_backbone_and_exits(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", model="selfcon_timm", model_kwargs={"backbone": "test_resnet"})
    with pytest.warns(UserWarning, match="encoder-only"):
        export(run, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    args = config["model_args"]
    assert args["backbone"] == "test_resnet"
    assert args["exit_stages"] == [2] and args["sub_network"] == "fc"  # defaults of the model, written out
    assert config["pretrained_cfg"]["classifier"] == ["backbone.fc", "exit_heads.0"]
    loaded = timm.create_model(f"local-dir:{tmp_path / 'out'}", pretrained=True).eval()
    encoder, _ = load_encoder(run)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for got, want in zip(loaded.forward_exits(x), encoder.eval().forward_exits(x), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_cli_export(evaluated_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(evaluated_run), str(tmp_path / "out"), "--no-exits", "--repo-id", "me/cli"]) == 0
    printed = capsys.readouterr().out
    assert "4 classes, classifiers from eval/early_exit" in printed and "without exits" in printed
    info = json.loads((tmp_path / "out" / "export_info.json").read_text())
    assert info["recipe"] == yaml.safe_load((evaluated_run / "config.yaml").read_text())
    assert main(["export", str(evaluated_run), str(tmp_path / "bad"), "--protocol", "nope"]) == 2
    assert "unknown protocol 'nope'" in capsys.readouterr().err


def test_finetune_output_exports_with_its_base_model(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", train_rows=16, test_rows=8)
    base = tmp_path / "base"
    with pytest.warns(UserWarning, match="encoder-only"):
        export(make_run(tmp_path / "run", model_kwargs={"layers": [1, 1, 1, 1], "exit_stages": [2]}), base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = finetune(f"local-dir:{base}", data=str(data), epochs=1, batch_size=8, num_workers=0, image_size=16,
                          warmup_epochs=0, output_dir=str(tmp_path / "finetuned"))
    result = export(tmp_path / "finetuned", tmp_path / "out", base_model="org/selfcon_resnet18_cifar.selfcon_cifar10")
    assert result.classifiers_protocol == "finetune" and result.num_classes == NUM_CLASSES and not result.with_exits
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.base_model == "org/selfcon_resnet18_cifar.selfcon_cifar10"
    assert "fine-tuned" in card.data.tags
    assert {(r.metric_name, r.metric_value) for r in card.data.eval_results} == {
        ("Top-1 accuracy (fine-tuned)", report["result"]["last"]["top1"]),
        ("Top-5 accuracy (fine-tuned)", report["result"]["last"]["top5"])}
    assert "fine-tuned from local-dir:…/base" in card.text and str(tmp_path) not in card.text  # no local path
    assert_keys_of_old_export(json.loads((tmp_path / "out" / "export_info.json").read_text()), "finetune")
    loaded = timm.create_model(f"local-dir:{tmp_path / 'out'}", pretrained=True).eval()
    original = timm.create_model(f"local-dir:{tmp_path / 'finetuned'}", pretrained=True).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original(x), rtol=0, atol=0)
    assert loaded.pretrained_cfg["label_names"] == CLASS_NAMES


def test_cli_export_without_protocol_says_which_classifiers_it_took(evaluated_run: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(evaluated_run), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert f"no --protocol given: took the '{PROTOCOL}' classifiers" in printed
    assert "linear > early_exit > linear_fast" in printed


def test_export_of_last_uses_the_evaluation_of_the_checkpoint_it_names(evaluated_run: Path, tmp_path: Path) -> None:
    # `eval RUN` recorded RUN/ckpt-3; `last` is a link to that very checkpoint (issue 24, item 18)
    result = export(evaluated_run / "last", tmp_path / "out")
    assert result.classifiers_protocol == PROTOCOL and not result.encoder_only
    info = json.loads((tmp_path / "out" / "export_info.json").read_text())
    assert info["source"]["checkpoint"] == f"ckpt-{STEP}"


def test_cli_export_says_each_note_once(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Issue 24, item 22: a note of export() was printed twice, as a warning attributed to cli.py and as a note."""
    run = make_run(tmp_path / "run")
    capfd.readouterr()
    assert main(["export", str(run), str(tmp_path / "out")]) == 0
    captured = capfd.readouterr()
    both = captured.out + captured.err
    assert both.count("no evaluation with classifiers found") == 1, both
    assert "note: no evaluation with classifiers found" in captured.out and "cli.py" not in both


# ---- every evaluation setting in report.json and the card; "the papers' protocol" only for the papers' (item 4) ----
SHORT_ROWS = 12


@pytest.fixture(scope="module")
def shortened_linear_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run with a 2-epoch ``linear`` evaluation on ``max_train_samples=12`` rows beside a full ``linear_fast`` one,
    exported without ``--protocol`` (so ``linear`` is taken): ``{"run", "export", "data"}``."""
    root = tmp_path_factory.mktemp("short_linear")
    data = make_data(root / "data", train_rows=24, test_rows=8)
    run = make_run(root / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(run, data=str(data), protocol="linear", epochs=2, max_train_samples=SHORT_ROWS, num_workers=0,
                 batch_size=8, image_size=16)
        evaluate(run, data=str(data), protocol="linear_fast", num_workers=0, batch_size=8, image_size=16)
        result = export(run, root / "export")
    assert result.classifiers_protocol == "linear"
    return {"run": run, "export": root / "export", "data": data, "root": root}


def card_section(card: str, protocol: str) -> str:
    return card.split(f"### Protocol `{protocol}`")[1].split("### Protocol")[0].split("## Citation")[0]


def test_report_json_records_every_evaluation_setting(shortened_linear_export: dict[str, Path]) -> None:
    report = json.loads((shortened_linear_export["run"] / "eval" / "linear" / "report.json").read_text())
    settings = report["settings"]
    assert settings["max_train_samples"] == SHORT_ROWS and settings["epochs"] == 2 and settings["val_fraction"] == 0.1
    assert {"batch_size", "lr", "milestones", "seed", "image_size", "knn_k", "pretrained"} <= set(settings)
    assert not {"output", "output_dir", "num_workers"} & set(settings)  # where it was written changes no number
    held_out = round(SHORT_ROWS * 0.1)
    assert (report["dataset"]["train_rows"], report["dataset"]["val_rows"]) == (SHORT_ROWS - held_out, held_out)
    assert report["dataset"]["test_rows"] == 8
    assert report["papers_protocol"] is False
    deviations = " ".join(report["deviations"])
    assert "epochs 2 (the papers': 100)" in deviations and f"max_train_samples={SHORT_ROWS}" in deviations
    assert "val_fraction=0.1" in deviations and "batch_size 8 (the papers': 512)" in deviations


def test_the_card_gives_every_setting_and_says_the_papers_protocol_only_for_the_papers(
        shortened_linear_export: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    card = (shortened_linear_export["export"] / "README.md").read_text()
    linear = card_section(card, "linear")
    assert "the papers' protocol:" not in linear and "Linear evaluation with the papers' procedure" in linear
    assert f"max_train_samples {SHORT_ROWS}" in linear and "epochs 2" in linear and "val_fraction 0.1" in linear
    assert "Deviations from the papers' settings:" in linear and "epochs 2 (the papers': 100)" in linear
    assert "trained on 11 rows" in linear  # 12 rows less the 10% held out for validation
    assert "Deviations from the papers' settings:" in card_section(card, "linear_fast")
    info = json.loads((shortened_linear_export["export"] / "export_info.json").read_text())
    assert any("not the papers' settings" in note for note in info["notes"])  # the choice says what it took


def test_the_papers_settings_are_labelled_the_papers_protocol(shortened_linear_export: dict[str, Path]) -> None:
    from timm_selfcon.engine.evaluate import EvalConfig
    from timm_selfcon.engine.evaluation.linear import papers_deviations

    papers = EvalConfig(protocol="linear", val_fraction=0)
    hyperparameters = dict(epochs=100, lr=3.0, batch_size=512)
    assert papers_deviations(papers, hyperparameters) == []
    assert papers_deviations(EvalConfig(protocol="linear"), hyperparameters) == [
        "10% of the training split held out for validation (val_fraction=0.1): the classifiers train on the rest"]
    # the same export, its linear report as one with the papers' settings would be
    info = ExportInfo.read(shortened_linear_export["export"]).to_dict()
    info["evaluations"]["linear"].update(papers_protocol=True, deviations=[])
    card = render_card(info).text
    assert "Linear evaluation, the papers' protocol:" in card_section(card, "linear")
    assert "Deviations from the papers' settings" not in card_section(card, "linear")
    del info["evaluations"]["linear"]["papers_protocol"]  # a report written before the settings were recorded
    assert "does not record every setting" in card_section(render_card(info).text, "linear")


# ---- no local path reaches a card (item 5) -----------------------------------------------------------------------
ABSOLUTE_PATH = re.compile(r"(?<![\w/.~])/(?!/)[\w.-]+/")


def test_no_local_path_reaches_the_card(shortened_linear_export: dict[str, Path], exported: Path,
                                        evaluated_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from timm_selfcon.hub import push

    for folder in (shortened_linear_export["export"], exported):
        card = (folder / "README.md").read_text()
        assert str(shortened_linear_export["root"].parent) not in card and "/tmp/" not in card
        assert not ABSOLUTE_PATH.findall(card), ABSOLUTE_PATH.findall(card)[:5]
        assert "https://huggingface.co/" in card or "huggingface.co" not in card  # URLs are left alone
        dry = push(folder, "me/tiny", dry_run=True)
        assert "/tmp/" not in dry.card and not ABSOLUTE_PATH.findall(dry.card)
    card = (exported / "README.md").read_text()
    assert "no --protocol given: took the 'early_exit' classifiers of the run's eval/early_exit" in card
    assert "| `data` | …/data |" in card or "Data: `…/data`" in card  # a local dataset keeps its folder name
    # exports written before this rule: their card loses the paths when rendered again (push does)
    old = ExportInfo.read(OLD_EXPORTS / "selfcon_early_exit")
    assert "/runs/demo" in json.dumps(old.to_dict()) and "/runs/demo" not in render_card(old, "me/x").text
    assert "took the 'early_exit' classifiers from '…/early_exit'" in render_card(old, "me/x").text
