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
        TrainConfig(optimizer="adamw_typo").validate()
    TrainConfig(optimizer="lookahead_adamw").validate()
    TrainConfig(optimizer="sgd").validate()


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
