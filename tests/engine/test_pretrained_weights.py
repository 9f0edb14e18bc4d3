"""Which weights ``eval`` and ``finetune`` use for a timm model name, and that every report says so (issue 24, 1-2).

Everything is offline (``HF_HUB_OFFLINE=1``): a temporary Hugging Face Hub cache holds

- ``org/tiny-selfcon``: the export (``timm-selfcon export``, encoder only) of the evaluation tests' trained run, laid
  out as the cache's snapshot of that repository, so ``hf-hub:org/tiny-selfcon`` and timm's other spelling
  ``hf_hub:org/tiny-selfcon`` resolve to it;
- ``timm/test_resnet.r160_in1k``: weights for timm's own tiny test model under its pretrained tag, so the timm name
  ``test_resnet.r160_in1k`` has weights to load.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from timm_selfcon import cli
from timm_selfcon.engine.checkpoint import load_encoder
from timm_selfcon.engine.evaluate import EvalConfig, evaluate
from timm_selfcon.engine.finetune import finetune
from timm_selfcon.errors import UserInputError
from timm_selfcon.hub import export

from ._eval_data import eval_settings

REPO = "org/tiny-selfcon"
TIMM_NAME = "test_resnet.r160_in1k"  # timm's tiny test model; its weights live in the Hub repo timm/<name>
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def place_in_hub_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Lay ``files`` (name in the repo -> file) out as the Hub cache's snapshot of ``repo_id`` at ``main``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name, path in files.items():
        shutil.copy(path, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Hub cache described in the module docstring (its folder)."""
    root = tmp_path_factory.mktemp("hub_cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an encoder-only export says so
        export(trained_run, root / "export", classifiers=False)
    cache = root / "hub"
    place_in_hub_cache(cache, REPO, {name: root / "export" / name for name in ("config.json", "model.safetensors")})
    torch.manual_seed(123)
    save_file(timm.create_model("test_resnet").state_dict(), str(root / "test_resnet.safetensors"))
    place_in_hub_cache(cache, f"timm/{TIMM_NAME}", {"model.safetensors": root / "test_resnet.safetensors"})
    return cache


@pytest.fixture
def offline_hub(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary cache is the Hub cache of this process (and of its subprocesses), offline."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


def hub_weights(cache: Path, repo_id: str) -> dict[str, torch.Tensor]:
    return load_file(str(cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / COMMIT / "model.safetensors"))


def same_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    shared = [key for key in weights if key in state and not key.endswith("num_batches_tracked")]
    assert len(shared) > 10, sorted(weights)[:5]
    return all(torch.equal(state[key], weights[key]) for key in shared)


# ---- item 1: timm's two spellings of the Hub source load the same weights ------------------------------------------
@pytest.mark.parametrize("spelling", ["hf-hub:", "hf_hub:", "HF-HUB:"])
def test_every_spelling_of_a_hub_model_loads_its_weights(offline_hub: Path, spelling: str) -> None:
    encoder, info = load_encoder(f"{spelling}{REPO}")
    assert same_weights(encoder, hub_weights(offline_hub, REPO))
    assert info["model"] == f"hf-hub:{REPO}" and info["weights"] == f"pretrained weights of hf-hub:{REPO}"


def test_eval_of_hf_hub_and_hf_dash_hub_and_local_dir_report_the_same_numbers(offline_hub: Path, position_data: Path,
                                                                            tmp_path: Path) -> None:
    snapshot = offline_hub / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    reports = {source: evaluate(source, EvalConfig(**eval_settings(position_data, protocol="knn", knn_k=[5],
                                                                   output_dir=str(tmp_path / "out"))))
               for source in (f"hf_hub:{REPO}", f"hf-hub:{REPO}", f"local-dir:{snapshot}")}
    assert len({json.dumps(r["results"], sort_keys=True) for r in reports.values()}) == 1, reports
    assert all(r["weights"].startswith("pretrained weights of ") for r in reports.values())


# ---- item 2: a timm name with a pretrained tag, pretrained=, and what the reports say ------------------------------
def test_a_timm_name_with_a_pretrained_tag_loads_its_weights(offline_hub: Path) -> None:
    weights = hub_weights(offline_hub, f"timm/{TIMM_NAME}")
    tagged, info = load_encoder(TIMM_NAME)
    assert same_weights(tagged, weights) and info["weights"] == f"pretrained weights of {TIMM_NAME}"
    plain, info = load_encoder("test_resnet")  # a plain name: the randomly initialised encoder the floors need
    assert not same_weights(plain, weights) and info["weights"] == "random init"
    asked, info = load_encoder("test_resnet", pretrained=True)  # timm's default tag of the architecture
    assert same_weights(asked, weights) and info["weights"] == f"pretrained weights of {TIMM_NAME}"
    untrained, info = load_encoder(f"hf-hub:{REPO}", pretrained=False)  # the architecture, randomly initialised
    assert not same_weights(untrained, hub_weights(offline_hub, REPO)) and info["weights"] == "random init"


def test_pretrained_is_refused_where_it_cannot_be_meant(offline_hub: Path, trained_run: Path) -> None:
    with pytest.raises(UserInputError, match=r"pretrained=false.*trained checkpoint.*always"):
        load_encoder(trained_run, pretrained=False)
    with pytest.raises(UserInputError, match=r"pretrained=true.*'darknet17.untrained'.*no weights"):
        load_encoder("darknet17.untrained", pretrained=True)
    with pytest.raises(UserInputError, match=r"test_resnet has no pretrained tag 'nope'; its tags: r160_in1k"):
        load_encoder("test_resnet.nope")
    _, info = load_encoder(trained_run, pretrained=True)  # true is what a checkpoint does anyway
    assert info["weights"] == f"trained checkpoint {info['checkpoint']}"


def test_eval_report_and_printed_summary_say_which_weights(offline_hub: Path, position_data: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    common = [f"data={position_data}", "protocol=knn", "knn_k=[5]", "image_size=16", "num_workers=0", "seed=3",
              f"output_dir={tmp_path}"]
    assert cli.main(["eval", "test_resnet", *common]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["weights"] == "random init (torch seed 3)"
    assert "evaluating test_resnet (random init (torch seed 3)) on" in printed.err
    report = json.loads((tmp_path / "eval" / "knn" / "report.json").read_text())
    assert report["weights"] == "random init (torch seed 3)"
    assert cli.main(["eval", TIMM_NAME, *common]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == f"pretrained weights of {TIMM_NAME}"
    assert cli.main(["eval", "test_resnet", "pretrained=true", *common]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == f"pretrained weights of {TIMM_NAME}"
    assert EvalConfig(pretrained=None).pretrained is None and "pretrained" in EvalConfig.model_fields


def test_finetune_takes_pretrained_and_reports_the_weights(offline_hub: Path, position_data: Path,
                                                           tmp_path: Path) -> None:
    settings = dict(data=str(position_data), epochs=1, max_steps=1, batch_size=16, num_workers=0, image_size=16,
                    warmup_epochs=0)
    report = finetune(TIMM_NAME, output_dir=str(tmp_path / "tagged"), **settings)
    assert report["weights"] == f"pretrained weights of {TIMM_NAME}"
    assert json.loads((tmp_path / "tagged" / "report.json").read_text())["weights"] == report["weights"]
    report = finetune("test_resnet", output_dir=str(tmp_path / "plain"), **settings)
    assert report["weights"] == "random init (torch seed 0)"
    report = finetune("test_resnet", output_dir=str(tmp_path / "asked"), pretrained=True, **settings)
    assert report["weights"] == f"pretrained weights of {TIMM_NAME}"
