"""A tour of a multi-exit SelfCon model on real CIFAR-10 test images that ship with the package.

``timm-selfcon demo`` (or ``timm_selfcon.demo.run_demo()``) builds a registered model, prints its
exits and parameter counts, and runs ``forward_exits``, ``forward_ensemble`` and
``forward_early_exit`` on images of the shipped CIFAR-10 subset's held-out test split. A registered model name
is randomly initialised (the predictions show the API, not accuracy); a model with weights (``local-dir:`` of an
export, ``hf-hub:ORG/NAME``, a name with a pretrained tag) is shown with its weights, its own classifiers and
label names, and the demo says which weights it runs.
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

    Returns the numbers it printed (parameter counts, which weights, predictions and their confidence, exit
    indices); an encoder-only model (no classifier) has no predictions.
    """
    from .engine.checkpoint import canonical_model_name, loads_pretrained_weights

    torch.manual_seed(seed)
    name = canonical_model_name(model_name)
    with_weights = loads_pretrained_weights(name)
    # a model with weights keeps its own classifiers (and label names); a random one gets CIFAR-10's 10 classes
    model = create_model(name, pretrained=True, **model_kwargs) if with_weights else create_model(
        name, num_classes=10, **model_kwargs)
    model.eval()
    encoder = timm.create_model(name, num_classes=0, **model_kwargs)
    plain = timm.create_model(name, num_classes=0, **{**model_kwargs, "exit_stages": ()})
    projected = with_projection_heads(encoder)
    num_classes = int(model.num_classes)
    counts = {
        "backbone (no classifier)": count_parameters(plain),
        "backbone + sub-networks (the official encoder)": count_parameters(encoder),
        f"with {num_classes}-class linear classifiers": count_parameters(model),
        "projection heads (training only)": count_parameters(projected.heads),
    }
    weights = f"pretrained weights of {name}" if with_weights else "random init"
    print(f"model: {name}  exits after stages {model.exit_stages} (sub_network={model.sub_network!r})")
    print(f"weights: {weights}")
    for label, value in counts.items():
        print(f"  {label:48s} {value:>12,d}")
    images, labels, names = load_subset_images(num_images, model)
    with torch.no_grad():
        exit_feats = model.forward_exits(images)
    print(f"forward_exits: {[tuple(f.shape) for f in exit_feats]} (exits in depth order, backbone last)")
    result: dict[str, Any] = dict(parameters=counts, weights=weights, labels=labels, predictions=[], confidence=[],
                                  exit_index=[], early_exit_predictions=[], label_names=None)
    if num_classes == 0:
        print("encoder only (num_classes=0): no classifiers, so no predictions; forward_exits above gives the features")
        return result
    with torch.no_grad():
        per_head = model.forward_exit_logits(images)
        ensemble = model.forward_ensemble(images, average="probs")
        early_logits, exit_index = model.forward_early_exit(images, threshold=0.5)
    predicted_names = names
    if with_weights:
        own = (model.pretrained_cfg or {}).get("label_names")
        predicted_names = list(own) if own and len(own) == num_classes else [f"class{c}" for c in range(num_classes)]
        if predicted_names != names:
            print(f"the model's own {num_classes} classes ({', '.join(predicted_names[:10])}"
                  f"{', ...' if num_classes > 10 else ''}) predict CIFAR-10 images (true: CIFAR-10's names)")
    else:
        print("randomly initialised weights: these predictions demonstrate the API, not accuracy")
    preds = ensemble.argmax(-1).tolist()
    confidence = ensemble.max(-1).values.tolist()
    for i in range(num_images):
        heads = " ".join(predicted_names[int(lg[i].argmax())][:5].ljust(5) for lg in per_head)
        print(f"  image {i}: true={names[labels[i]]:10s} heads=[{heads}] ensemble={predicted_names[preds[i]]:10s} "
              f"(p={confidence[i]:.2f}) early-exit@0.5 -> head {int(exit_index[i])}")
    return dict(result, predictions=preds, confidence=confidence, exit_index=exit_index.tolist(),
                early_exit_predictions=early_logits.argmax(-1).tolist(), label_names=predicted_names)
