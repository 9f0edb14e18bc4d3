"""Convert a checkpoint of the official SelfCon code into this package's training-checkpoint format.

Paper: "Self-Contrastive Learning: Single-viewed Supervised Contrastive Framework using Sub-network", Bae et al.,
AAAI 2023 (arXiv 2106.15499); official code github.com/raymin0223/self-contrastive-learning.

The official ``save_model`` writes ``{'opt': argparse.Namespace, 'model': state_dict, 'optimizer': ..., 'epoch'}``
for a ``ConResNet`` / ``ConWRN``: ``encoder.*`` (the backbone, with ``encoder.selfcon_layer.<pos>`` sub-networks;
``encoder.module.*`` when trained on several GPUs with DataParallel), ``head.{0,2}`` (the backbone's projection MLP)
and ``sub_heads.<k>.{0,2}`` (one per exit). The file is read with ``torch.load(weights_only=True)``, allow-listing
only ``argparse.Namespace``; nothing else is unpickled.

``convert_official(CHECKPOINT, OUT_DIR)`` writes a training ``output_dir``: ``config.yaml`` (the model, its
``exit_stages`` / ``sub_network``, the method and what the official options say of the recipe, with provenance),
``official_opt.json`` and ``ckpt-0/`` (the training checkpoint layout: ``accelerate/model.safetensors`` = the state
dict of ``build_method(method, model)``, projection heads included for continued pretraining; the encoder's timm
``model.safetensors`` + ``config.json``; ``trainer_state.json``) plus the ``last`` link, so ``timm-selfcon eval``,
``timm-selfcon export`` and ``timm.create_model("local-dir:OUT_DIR/last", pretrained=True)`` work on it.
The official code never saves its linear
classifiers: they come from this package's evaluation.

Key mapping (official -> this package): ``encoder.conv1`` -> ``conv1``; ResNet ``shortcut.{0,1}`` ->
``downsample.{0,1}`` (WRN keeps ``shortcut.0``); ``encoder.selfcon_layer.<pos>`` -> ``exits.<k>`` (``k``-th
enabled exit in depth order; ``fc``: ``.weight`` -> ``.fc.weight``; ``same`` / ``small``: ``.<i>.<j>...`` ->
``.stages.<i>.<j>...``); heads ``sub_heads.<k>`` / ``head`` -> ``projector.heads.<k>`` / ``projector.heads.<K>``
(``.0`` -> ``.fc1``, ``.2`` -> ``.fc2``). Every official tensor must be used and every tensor of the model filled.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import timm
import torch
import yaml
from safetensors.torch import save_file

from ..errors import UserInputError
from ..fileio import atomic_dir

__all__ = ["OFFICIAL_DATASETS", "convert_official", "convert_state_dict", "read_official_checkpoint"]

#: official ``--dataset`` -> (this package's ``data``, ``label_column``, ``image_size``, CIFAR-style stem)
OFFICIAL_DATASETS: dict[str, tuple[str, str | None, int, bool]] = {
    "cifar10": ("uoft-cs/cifar10", "label", 32, True),
    "cifar100": ("uoft-cs/cifar100", "fine_label", 32, True),
    "tinyimagenet": ("zh-plus/tiny-imagenet", None, 64, True),
    "imagenet": ("ILSVRC/imagenet-1k", None, 224, False),
    "imagenet100": ("imagenet100", None, 224, False),
}
OFFICIAL_RESNETS = ("resnet18", "resnet34", "resnet50")
OFFICIAL_WRNS = {"wrn_16_8": "selfcon_wrn16_8_cifar", "wrn16_8": "selfcon_wrn16_8_cifar"}
_HEAD_LAYERS = {"0": "fc1", "2": "fc2"}


def read_official_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(model state dict, options)`` of an official checkpoint, read without unpickling arbitrary objects.

    Accepts the official ``{'opt', 'model', ...}`` dict or a bare state dict (then the options are empty).
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"official checkpoint {str(path)!r} does not exist")
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:
            raise UserInputError(f"cannot read {str(path)!r} with torch.load(weights_only=True) (only argparse.Namespace "
                             f"is allowed besides tensors): {err}") from err
    if not isinstance(raw, dict):
        raise UserInputError(f"{str(path)!r} holds a {type(raw).__name__}, expected the official checkpoint dict")
    state = raw.get("model", raw)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserInputError(f"{str(path)!r} has no state dict of tensors under 'model'")
    opt = raw.get("opt")
    options = vars(opt).copy() if isinstance(opt, argparse.Namespace) else dict(opt or {})
    if "epoch" in raw and "epoch" not in options:
        options["epoch"] = raw["epoch"]
    return dict(state), options


def _strip_data_parallel(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` path components DataParallel adds (``encoder.module.conv1`` -> ``encoder.conv1``)."""
    return {".".join(part for part in key.split(".") if part != "module"): value for key, value in state.items()}


def _exit_positions(state: dict[str, torch.Tensor]) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.selfcon_layer\.(\d+)\.", k))})


def _infer_sub_network(state: dict[str, torch.Tensor], pos: int) -> str:
    prefix = f"encoder.selfcon_layer.{pos}."
    if f"{prefix}weight" in state:
        return "fc"
    blocks = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(prefix)}0\.(\d+)\.", k))}
    stage = pos + 2  # the first copied stage: selfcon_layer.<pos>.0 copies layer<pos + 2>
    backbone = {int(m.group(1)) for k in state if (m := re.match(rf"encoder\.layer{stage}\.(\d+)\.", k))}
    return "small" if len(blocks) < len(backbone) else "same"


def _model_name(options: dict[str, Any], state: dict[str, torch.Tensor], model: str | None) -> str:
    if model is not None:
        return model
    arch = str(options.get("model") or "")
    if not arch:
        raise UserInputError("the checkpoint has no 'opt' options naming the model; pass model=... (e.g. "
                         "'selfcon_resnet18_cifar' or 'selfcon_wrn16_8_cifar')")
    if arch in OFFICIAL_WRNS:
        return OFFICIAL_WRNS[arch]
    if arch not in OFFICIAL_RESNETS:
        raise UserInputError(f"official model {arch!r} is not supported; expected one of "
                         f"{[*OFFICIAL_RESNETS, *OFFICIAL_WRNS]} (VGG / EfficientNet have no counterpart here)")
    dataset = str(options.get("dataset") or "")
    cifar_stem = OFFICIAL_DATASETS[dataset][3] if dataset in OFFICIAL_DATASETS else \
        tuple(state["encoder.conv1.weight"].shape[-2:]) == (3, 3)
    return f"selfcon_{arch}_cifar" if cifar_stem else f"selfcon_{arch}"


def _method_name(options: dict[str, Any], num_exits: int) -> str:
    official = str(options.get("method") or ("SelfCon" if num_exits else "SupCon"))
    multiview = bool(options.get("multiview", False))
    if official == "SelfCon":
        return "selfcon_m" if multiview else "selfcon"
    if official == "SupCon":
        return "supcon" if multiview else "supcon_s"
    if official == "Con":
        return "simclr"
    raise UserInputError(f"official method {official!r} is not supported; expected 'SelfCon', 'SupCon' or 'Con'")


def _parse_positions(value: Any) -> list[bool] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as err:
            raise UserInputError(f"cannot read official selfcon_pos {value!r}: expected a list of booleans") from err
    return [bool(v) for v in value]


def _map_encoder_key(key: str, is_resnet: bool, exit_index: dict[int, int], sub_network: str) -> str:
    name = key.removeprefix("encoder.")
    match = re.match(r"selfcon_layer\.(\d+)\.(.*)$", name)
    if match:
        pos, rest = int(match.group(1)), match.group(2)
        if pos not in exit_index:
            raise UserInputError(f"official key {key!r} belongs to an exit at position {pos} that the options disable")
        name = f"exits.{exit_index[pos]}." + (f"fc.{rest}" if sub_network == "fc" else f"stages.{rest}")
    if is_resnet:
        name = re.sub(r"\.shortcut\.", ".downsample.", name)
    return name


def convert_state_dict(state: dict[str, torch.Tensor], exit_positions: list[int], sub_network: str, is_resnet: bool,
                       multi_head: bool) -> dict[str, torch.Tensor]:
    """Official ``ConResNet`` / ``ConWRN`` keys -> this package's method state dict (``projector.*``)."""
    state = _strip_data_parallel(state)
    exit_index = {pos: k for k, pos in enumerate(exit_positions)}
    num_exits = len(exit_positions)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith("encoder."):
            new = "projector.model." + _map_encoder_key(key, is_resnet, exit_index, sub_network)
        elif (m := re.fullmatch(r"head\.(\d+)\.(weight|bias)", key)) and m.group(1) in _HEAD_LAYERS:
            head = f"heads.{num_exits}" if multi_head else "head"
            new = f"projector.{head}.{_HEAD_LAYERS[m.group(1)]}.{m.group(2)}"
        elif (m := re.fullmatch(r"sub_heads\.(\d+)\.(\d+)\.(weight|bias)", key)) and m.group(2) in _HEAD_LAYERS:
            new = f"projector.heads.{m.group(1)}.{_HEAD_LAYERS[m.group(2)]}.{m.group(3)}"
        else:
            unknown.append(key)
            continue
        out[new] = value.detach().clone().contiguous()
    if unknown:
        raise UserInputError(f"{len(unknown)} official tensors have no counterpart in this package: {unknown[:10]}")
    return out


def _recipe(options: dict[str, Any], model_name: str, model_kwargs: dict[str, Any], method: str,
            projection_dim: int, source: Path, out_dir: Path) -> dict[str, Any]:
    dataset = str(options.get("dataset") or "")
    data, label_column, image_size, _ = OFFICIAL_DATASETS.get(dataset, (dataset or "unknown", None, 32, True))
    epoch = options.get("epoch")
    recipe: dict[str, Any] = dict(
        provenance=(f"converted from the official SelfCon checkpoint {source.name} "
                    f"(github.com/raymin0223/self-contrastive-learning; official model {options.get('model')!r}, "
                    f"dataset {dataset or '?'!r}, method {options.get('method')!r}"
                    + (f", epoch {epoch}" if epoch is not None else "") + ") by timm-selfcon convert-official"),
        model=model_name, model_kwargs=model_kwargs, method=method, data=data, output_dir=str(out_dir),
    )
    if label_column:
        recipe["label_column"] = label_column
    recipe["image_size"] = int(options.get("size") or image_size)
    method_kwargs: dict[str, Any] = {"out_dim": projection_dim}
    for official, ours in (("temp", "temperature"), ("learning_rate", "lr"), ("weight_decay", "weight_decay"),
                           ("momentum", "momentum")):
        value = options.get(official)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            if ours == "temperature":  # a method option
                method_kwargs[ours] = float(value)
            else:
                recipe[ours] = float(value)
    for official, ours in (("batch_size", "batch_size"), ("epochs", "epochs"), ("seed", "seed")):
        value = options.get(official)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            recipe[ours] = value
    if method.startswith("selfcon"):
        alpha = options.get("alpha")
        if isinstance(alpha, (int, float)) and alpha > 0:
            method_kwargs["alpha"] = float(alpha)
        if options.get("label") is False:
            method_kwargs["supervised"] = False
    recipe["method_kwargs"] = method_kwargs
    return recipe


def convert_official(
        checkpoint: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        *,
        model: str | None = None,
        data: str | None = None,
) -> Path:
    """Convert an official SelfCon checkpoint into a training ``output_dir`` (see the module docstring).

    Args:
        checkpoint: the official ``.pth`` file (``{'opt', 'model', ...}`` or a bare state dict).
        out_dir: the folder to write (must not exist or be empty).
        model: this package's model name, overriding the one derived from the official options
            (needed for a bare state dict without options).
        data: the recipe's ``data``, overriding the Hub dataset derived from the official ``--dataset``.

    Returns the path of ``out_dir``; ``load_encoder(out_dir)`` then gives the encoder.
    """
    from ..config import TrainConfig
    from ..engine.checkpoint import STATE_DIR, load_strict
    from ..engine.train import method_kwargs, timm_encoder
    from ..methods import build_method

    source = Path(checkpoint)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserInputError(f"out_dir {str(out_dir)!r} exists and is not empty")
    raw_state, options = read_official_checkpoint(source)
    state = _strip_data_parallel(raw_state)
    if "encoder.conv1.weight" not in state:
        raise UserInputError(f"{str(source)!r} is not an official SelfCon checkpoint: no encoder.conv1.weight "
                         f"(first keys: {sorted(state)[:5]})")
    positions = _exit_positions(state)
    flags = _parse_positions(options.get("selfcon_pos"))
    if flags is not None and [i for i, on in enumerate(flags) if on] != positions:
        raise UserInputError(f"official selfcon_pos {options.get('selfcon_pos')!r} disagrees with the checkpoint's "
                         f"sub-networks at positions {positions}")
    model_name = _model_name(options, state, model)
    is_resnet = "wrn" not in model_name
    sub_network = str(options.get("selfcon_size") or "") if positions else ""
    if positions and not sub_network:
        sub_network = _infer_sub_network(state, positions[0])
    model_kwargs: dict[str, Any] = {"exit_stages": [pos + 1 for pos in positions]}
    if positions:
        model_kwargs["sub_network"] = sub_network
    method = _method_name(options, len(positions))
    head = state.get("head.2.weight")
    projection_dim = int(head.shape[0]) if head is not None else 128

    recipe = _recipe(options, model_name, model_kwargs, method, projection_dim, source, out_dir)
    if data is not None:
        recipe["data"] = data
        recipe.pop("label_column", None)
    config = TrainConfig(**recipe)
    net = timm.create_model(config.model, num_classes=0, **config.model_kwargs)
    training_method = build_method(config.method, net, **method_kwargs(config))
    target = training_method.state_dict()
    multi_head = any(k.startswith("projector.heads.") for k in target)
    converted = convert_state_dict(state, positions, sub_network, is_resnet, multi_head)
    load_strict(training_method, converted, what=f"the official checkpoint {source.name} (converted keys)")

    with atomic_dir(out_dir) as tmp:  # all of it or nothing; atomic_dir gives every file ordinary permissions
        # the training layout: the method's state where Accelerate keeps it, the encoder's timm files beside it
        (tmp / "ckpt-0" / STATE_DIR).mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in training_method.state_dict().items()},
                  str(tmp / "ckpt-0" / STATE_DIR / "model.safetensors"))
        timm_encoder(config, training_method.encoder).write(tmp / "ckpt-0")
        (tmp / "ckpt-0" / "trainer_state.json").write_text(json.dumps(
            {"step": 0, "epoch": options.get("epoch"), "converted_from": source.name}, indent=2))
        (tmp / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        shutil.copy(tmp / "config.yaml", tmp / "ckpt-0" / "config.yaml")  # a checkpoint carries its recipe
        (tmp / "official_opt.json").write_text(json.dumps(options, indent=2, default=str))
        (tmp / "last").symlink_to("ckpt-0")
        if out_dir.exists():
            out_dir.rmdir()  # the empty folder given as out_dir (checked above); the finished one takes its place
    return out_dir
