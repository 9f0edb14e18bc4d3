"""``timm-selfcon demo``: a registered name runs randomly initialised and says so; an export runs with its weights.

The export is the publishing tests' tiny run (``tests/hub``: a SelfCon ResNet with exits after stages 1 and 2),
given ``linear_fast`` classifiers on generated 16x16 images and exported with ``timm-selfcon export``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import timm
import torch
from hub import CLASS_NAMES, make_data, make_run

from timm_selfcon.cli import main
from timm_selfcon.demo import load_subset_images, run_demo
from timm_selfcon.engine.evaluate import evaluate
from timm_selfcon.hub import export

NUM_IMAGES = 6


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``with_classifiers`` (4 classes, named :data:`CLASS_NAMES`) and ``encoder_only`` exports of one tiny run."""
    root = tmp_path_factory.mktemp("demo_export")
    run = make_run(root / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(run, data=str(make_data(root / "data", train_rows=16, test_rows=8)), protocol="linear_fast",
                 epochs=1, num_workers=0, batch_size=8, val_fraction=0.25, image_size=16)
        export(run, root / "with_classifiers")
        export(run, root / "encoder_only", classifiers=False)
    return {name: root / name for name in ("with_classifiers", "encoder_only")}


def test_the_demo_of_an_export_runs_its_weights_and_classes(exports: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    source = f"local-dir:{exports['with_classifiers']}"
    result = run_demo(source, num_images=NUM_IMAGES)
    printed = capsys.readouterr().out
    assert "randomly initialised" not in printed and f"weights: pretrained weights of {source}" in printed
    model = timm.create_model(source, pretrained=True).eval()  # the export, as timm loads it
    images, _, _ = load_subset_images(NUM_IMAGES, model)
    with torch.no_grad():
        probs = model.forward_ensemble(images, average="probs")
    assert result["predictions"] == probs.argmax(-1).tolist()
    assert result["confidence"] == pytest.approx(probs.max(-1).values.tolist(), abs=1e-6)
    assert result["label_names"] == CLASS_NAMES and result["weights"] == f"pretrained weights of {source}"
    assert f"with {len(CLASS_NAMES)}-class linear classifiers" in printed


def test_the_demo_of_an_encoder_only_export_shows_features_and_no_prediction(exports: dict[str, Path],
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--model", f"local-dir:{exports['encoder_only']}", "--num-images", "2"]) == 0
    printed = capsys.readouterr().out
    assert "encoder only (num_classes=0): no classifiers, so no predictions" in printed
    assert "randomly initialised" not in printed and "image 0:" not in printed


def test_the_demo_of_a_registered_name_says_its_weights_are_random(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_demo("selfcon_resnet18_cifar", num_images=2, layers=[1, 1, 1, 1], exit_stages=[2])
    printed = capsys.readouterr().out
    assert "weights: random init" in printed and "randomly initialised weights: these predictions" in printed
    assert result["weights"] == "random init" and len(result["predictions"]) == 2
