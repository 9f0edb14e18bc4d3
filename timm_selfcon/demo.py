"""A tour of a multi-exit SelfCon model on real CIFAR-10 test images that ship with the package.

``timm-selfcon demo`` (or ``timm_selfcon.demo.run_demo()``) builds a registered model, prints its
exits and parameter counts, and runs ``forward_exits``, ``forward_ensemble`` and
``forward_early_exit`` on images of the shipped CIFAR-10 subset's held-out test split. The weights
are randomly initialised: the predictions show the API, not accuracy.
"""
from __future__ import annotations

from typing import Any

import timm
import torch

from .data import CIFAR10_SUBSET
from .methods import with_projection_heads
from .models.factory import create_model


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_subset_images(num_images: int, model: torch.nn.Module) -> tuple[torch.Tensor, list[int], list[str]]:
    """``num_images`` images of the shipped test split, preprocessed with the model's data config."""
    from datasets import load_dataset

    ds = load_dataset("parquet", data_files={"test": str(CIFAR10_SUBSET / "test.parquet")}, split="test")
    names = ds.features["label"].names
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    rows = ds.select(range(num_images))
    images = torch.stack([transform(img.convert("RGB")) for img in rows["img"]])
    return images, list(rows["label"]), names


def run_demo(model_name: str = "selfcon_resnet18_cifar", num_images: int = 8, seed: int = 0,
             **model_kwargs: Any) -> dict[str, Any]:
    """Build ``model_name`` and print its exits, parameter counts and an ensemble prediction.

    Returns the numbers it printed (parameter counts, predictions, exit indices).
    """
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=10, **model_kwargs).eval()
    encoder = timm.create_model(model_name, num_classes=0, **model_kwargs)
    plain = timm.create_model(model_name, num_classes=0, **{**model_kwargs, "exit_stages": ()})
    projected = with_projection_heads(encoder)
    counts = {
        "backbone (no classifier)": count_parameters(plain),
        "backbone + sub-networks (the official encoder)": count_parameters(encoder),
        "with 10-class linear classifiers": count_parameters(model),
        "projection heads (training only)": count_parameters(projected.heads),
    }
    print(f"model: {model_name}  exits after stages {model.exit_stages} (sub_network={model.sub_network!r})")
    for name, value in counts.items():
        print(f"  {name:48s} {value:>12,d}")
    images, labels, names = load_subset_images(num_images, model)
    with torch.no_grad():
        exit_feats = model.forward_exits(images)
        per_head = model.forward_exit_logits(images)
        ensemble = model.forward_ensemble(images, average="probs")
        early_logits, exit_index = model.forward_early_exit(images, threshold=0.5)
    print(f"forward_exits: {[tuple(f.shape) for f in exit_feats]} (exits in depth order, backbone last)")
    print("randomly initialised weights: these predictions demonstrate the API, not accuracy")
    preds = ensemble.argmax(-1).tolist()
    for i in range(num_images):
        heads = " ".join(names[int(lg[i].argmax())][:5].ljust(5) for lg in per_head)
        print(f"  image {i}: true={names[labels[i]]:10s} heads=[{heads}] ensemble={names[preds[i]]:10s} "
              f"(p={ensemble[i].max():.2f}) early-exit@0.5 -> head {int(exit_index[i])}")
    return dict(parameters=counts, predictions=preds, labels=labels, exit_index=exit_index.tolist(),
                early_exit_predictions=early_logits.argmax(-1).tolist())
