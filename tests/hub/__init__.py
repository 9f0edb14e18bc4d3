"""Helpers for the publishing tests: tiny training runs written in this package's checkpoint format, tiny data.

A "run" is what ``timm-selfcon train`` leaves (``config.yaml``, ``ckpt-<step>/model.safetensors`` holding the
method's state dict, ``trainer_state.json``, ``last``), written directly from a freshly built method with
randomised BatchNorm statistics, so no training loop has to run.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import timm
import torch
import yaml
from conftest import tiny_image_dataset
from safetensors.torch import save_file

import timm_selfcon  # noqa: F401  (registers the models)
from timm_selfcon.config import TrainConfig
from timm_selfcon.engine.train import method_kwargs
from timm_selfcon.methods import build_method

SMALL_RESNET = [1, 1, 1, 1]
NUM_CLASSES = 4
CLASS_NAMES = ["grey", "red", "green", "blue"]  # the colours of tiny_image_dataset's classes
STEP = 3
# the one card row added since 0.2 (the training method's paper), left out when comparing with cards 0.2 rendered
ADDED_CARD_ROW = re.compile(r"^\| training method \| .* \|\n", flags=re.MULTILINE)


#: the table of the method's options (from its Options model) that replaced 0.2's rows of top-level method options
METHOD_OPTIONS_TABLE = re.compile(r"^The options of `\w+` \(recipe key `method_kwargs`\)[^\n]*\n\n(?:\|[^\n]*\|\n)+\n",
                                  flags=re.MULTILINE)
OLD_METHOD_OPTION_ROW = re.compile(r"^\| `(?:temperature|base_temperature|projection_dim|queue_size|moco_momentum|"
                                   r"mix_temperature|mix_weight|gather|method_kwargs)` \| .* \|\n", flags=re.MULTILINE)


def card_text_as_0_2(text: str) -> str:
    """A card's text without the rows added since 0.2, and without the method's options table (compared on its own)."""
    return METHOD_OPTIONS_TABLE.sub("", ADDED_CARD_ROW.sub("", text))


#: the one sentence changed since 0.2: `protocol=linear` alone holds 10% of the training split out (not the papers')
OLD_EVAL_ADVICE = ("`timm-selfcon eval CHECKPOINT protocol=linear` (the papers' protocol) before exporting to add results "
                   "and classifiers.")
EVAL_ADVICE = ("`timm-selfcon eval CHECKPOINT protocol=linear val_fraction=0` (the papers' protocol) before exporting to "
               "add results\nand classifiers.")


def old_card_as_published(text: str) -> str:
    """The text of a card 0.2 rendered, as rendering it now publishes it: local paths shortened (``…/<name>``), and
    the advice to evaluate with the papers' protocol giving their settings."""
    from timm_selfcon.hub.card import public_text

    return OLD_METHOD_OPTION_ROW.sub("", public_text(text).replace(OLD_EVAL_ADVICE, EVAL_ADVICE))


def randomise_batchnorm(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial running statistics, so an export that dropped BatchNorm buffers would be caught."""
    generator = torch.Generator().manual_seed(seed)
    for sub in module.modules():
        if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
            sub.running_mean.copy_(torch.randn(sub.running_mean.shape, generator=generator) * 0.1)
            sub.running_var.copy_(torch.rand(sub.running_var.shape, generator=generator) + 0.5)
            sub.weight.data.copy_(torch.rand(sub.weight.shape, generator=generator) + 0.5)
            sub.bias.data.copy_(torch.randn(sub.bias.shape, generator=generator) * 0.1)
            sub.num_batches_tracked.fill_(7)


def make_run(root: Path, *, model: str = "selfcon_resnet18_cifar", model_kwargs: dict[str, Any] | None = None,
             method: str = "selfcon", data: str = "uoft-cs/cifar10", seed: int = 0, **recipe: Any) -> Path:
    """A training ``output_dir`` with one checkpoint ``ckpt-3`` (and ``last``) of ``method`` around ``model``."""
    if model_kwargs is None:
        model_kwargs = {"layers": SMALL_RESNET, "exit_stages": [1, 2], "sub_network": "fc"}
    config = TrainConfig(model=model, model_kwargs=model_kwargs, method=method, data=data, output_dir=str(root),
                         image_size=16, batch_size=8, seed=seed,
                         provenance="a test run written by tests/hub", **recipe)
    torch.manual_seed(seed)
    net = timm.create_model(config.model, num_classes=0, **config.model_kwargs)
    training_method = build_method(config.method, net, **method_kwargs(config))
    randomise_batchnorm(training_method, seed)
    checkpoint = root / f"ckpt-{STEP}"
    checkpoint.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in training_method.state_dict().items()},
              str(checkpoint / "model.safetensors"))
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": STEP, "epoch": 0}))
    (root / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    (root / "last").symlink_to(checkpoint.name)
    return root


def make_data(root: Path, train_rows: int = 40, test_rows: int = 16) -> Path:
    """A parquet image folder (``train.parquet``, ``test.parquet``): ``img`` 16x16 PNG, ``label`` ClassLabel(4)
    named :data:`CLASS_NAMES`, each class its colour."""
    return tiny_image_dataset(root, {"train": train_rows, "test": test_rows}, class_names=CLASS_NAMES)
