"""User mistakes get a one-line answer (``UserInputError``, exit code 2); bugs keep their traceback."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import timm

import timm_selfcon  # noqa: F401  (registers the models)
from timm_selfcon import cli
from timm_selfcon.config import TrainConfig
from timm_selfcon.errors import UserInputError
from timm_selfcon.models.factory import create_model

ERRORS_MODULE = Path(__file__).resolve().parents[1] / "timm_selfcon" / "errors.py"


def test_errors_module_imports_nothing_of_the_package() -> None:
    tree = ast.parse(ERRORS_MODULE.read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name.startswith("timm_selfcon") or name == ""], imported
    assert issubclass(UserInputError, ValueError)


def test_unknown_model_suggests_the_nearest_registered_names() -> None:
    with pytest.raises(UserInputError, match=r"unknown model 'selfcon_resnet19_cifar'; did you mean "
                                             r"'selfcon_resnet18_cifar'"):
        create_model("selfcon_resnet19_cifar")


def test_misspelt_model_kwarg_names_the_valid_kwargs() -> None:
    with pytest.raises(UserInputError, match=r"takes no kwarg 'sub_netwrk'; did you mean 'sub_network'\? "
                                             r"valid kwargs: .*exit_stages"):
        create_model("selfcon_resnet18_cifar", sub_netwrk="fc")


def test_generic_path_with_a_vit_backbone_names_what_it_takes() -> None:
    with pytest.raises(UserInputError, match=r"selfcon_timm takes timm CNNs.*'vit_tiny_patch16_224' is a transformer"
                                             r".*selfcon_vit_tiny_patch16_224"):
        timm.create_model("selfcon_timm", backbone="vit_tiny_patch16_224")


def test_unknown_optimizer_lists_timms() -> None:
    with pytest.raises(UserInputError, match=r"unknown optimizer 'adamw_typo'.*lamb.*lars"):
        TrainConfig(optimizer="adamw_typo")
    TrainConfig(optimizer="lookahead_adamw")
    TrainConfig(optimizer="sgd")


def test_unreachable_hub_is_an_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserInputError, match="cannot load 'hf-hub:someorg/not-cached' from the Hugging Face Hub "
                                             r"\(HF_HUB_OFFLINE=1 is set"):
        create_model("hf-hub:someorg/not-cached", pretrained=True)
    from timm_selfcon.data import load_image_dataset

    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    with pytest.raises(UserInputError, match="cannot load 'someorg/not-cached-data' from the Hugging Face Hub"):
        load_image_dataset("someorg/not-cached-data", cache_dir=tmp_path)


def test_cli_prints_user_errors_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_run"
    assert cli.main(["eval", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == (f"timm-selfcon eval: error: '{missing}' does not exist: expected a training run folder, a "
                   "ckpt-<step> checkpoint, a timm model name, hf-hub:ORG/NAME or local-dir:FOLDER\n")
    assert cli.main(["eval", "selfcon_resnet19_cifar"]) == 2
    assert "did you mean 'selfcon_resnet18_cifar'" in capsys.readouterr().err
    assert cli.main(["eval", f"local-dir:{missing}"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_points_an_export_folder_to_local_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "export"
    model = timm.create_model("selfcon_resnet18_cifar", layers=[1, 1, 1, 1], num_classes=0)
    timm.models.save_for_hf(model, str(folder), model_args=dict(layers=[1, 1, 1, 1], num_classes=0),
                            safe_serialization=True)
    assert cli.main(["eval", str(folder)]) == 2
    assert f"give it as local-dir:{folder}" in capsys.readouterr().err


def test_cli_keeps_the_traceback_of_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise TypeError("a programming error")

    monkeypatch.setattr(cli, "_models", broken)  # the handler of `timm-selfcon models`
    with pytest.raises(TypeError, match="a programming error"):
        cli.main(["models"])


# ------------------------------------------------------------------------------------------ issue 24, group B
# Each bad input: one `error:` line naming the bad value (and the file), exit code 2, before any work, nothing written.

def assert_one_error_line(err: str, command: str, *expected: str) -> None:
    assert err.startswith(f"timm-selfcon {command}: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, (text, err)


def test_recipe_that_is_not_yaml_names_the_file_and_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("model: selfcon_resnet18_cifar\nlr: [0.1\nepochs: 2\n")  # an unclosed list on line 2
    assert cli.main(["train", str(recipe), f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert_one_error_line(err, "train", f"recipe '{recipe}' is not valid YAML", "line ")
    assert "<unicode string>" not in err
    # a broken base recipe is named, not the child that names it
    child = tmp_path / "child.yaml"
    child.write_text("base: broken.yaml\nepochs: 3\n")
    assert cli.main(["train", str(child), f"output_dir={tmp_path / 'run'}"]) == 2
    assert_one_error_line(capsys.readouterr().err, "train", f"recipe '{recipe}' is not valid YAML")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.yaml", "child.yaml"]  # nothing written


@pytest.mark.parametrize("value, named", [("abc", "'abc'"), ("[2.5]", "2.5"), ("2,3", "'2,3'"), ("[2", "'[2'")])
def test_exit_stages_that_are_not_ints_are_one_line(value: str, named: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["quickstart", f"model_kwargs.exit_stages={value}", f"output_dir={tmp_path / 'run'}"]) == 2
    assert_one_error_line(capsys.readouterr().err, "quickstart", "exit_stages", named)
    assert cli.main(["eval", "selfcon_resnet18_cifar", f"model_kwargs.exit_stages={value}"]) == 2
    assert_one_error_line(capsys.readouterr().err, "eval", "exit_stages", named)
    assert not list(tmp_path.iterdir())  # no run folder, no eval_runs/


def test_model_kwargs_that_do_not_fit_an_export_list_the_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "export"
    args = dict(layers=[1, 1, 1, 1], exit_stages=[2], sub_network="fc", num_classes=0)
    timm.models.save_for_hf(timm.create_model("selfcon_resnet18_cifar", **args), str(folder), model_args=args,
                            safe_serialization=True)
    assert cli.main(["eval", f"local-dir:{folder}", "model_kwargs.sub_network=same"]) == 2
    err = capsys.readouterr().err
    assert_one_error_line(err, "eval", f"local-dir:{folder}", "sub_network", "missing keys ['exits.0.", "unexpected keys",
                          "exits.0.")
    assert "RuntimeError" not in err and "Error(s) in loading state_dict" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no eval_runs/


def test_export_of_a_path_that_does_not_exist_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_run"
    assert cli.main(["export", str(missing), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert_one_error_line(err, "export", f"'{missing}' does not exist")
    assert "not a complete checkpoint" not in err and not (tmp_path / "out").exists()
