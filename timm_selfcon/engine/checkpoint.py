"""Atomic checkpoints: ``ckpt-<step>.tmp`` is written, renamed to ``ckpt-<step>``, then ``last`` is switched.

``last`` is a symlink replaced with ``os.replace``, so a run killed at any moment leaves ``last``
pointing at a complete checkpoint. A checkpoint holds:

- ``model.safetensors`` and ``config.json``: the encoder alone under timm's own key names, written by timm's
  ``save_for_hf``, so ``timm.create_model("local-dir:RUN/last", pretrained=True)`` and
  ``timm.create_model(name, checkpoint_path="RUN/ckpt-<step>/model.safetensors", **model_kwargs)`` load it;
- ``accelerate/``: Accelerate's ``save_state`` (the whole training method's weights, optimizer, every process's
  RNG states), which resume and evaluation read;
- ``trainer_state.json``: the step and epoch;
- ``config.yaml``: the run's recipe as it trained this checkpoint, so a checkpoint copied out of its run
  (``cp -rL RUN/last somewhere``) still evaluates and exports. Checkpoints written before they carried it read
  their run's ``config.yaml``.

Checkpoints written before this layout hold Accelerate's files at the top (``model.safetensors`` = the method's
state dict); :func:`accelerate_state_dir` finds either, so they still resume, evaluate and export.
``save_total_limit`` keeps only the newest checkpoints, never deleting the one ``last`` points to.

Loading for evaluation, fine-tuning, export and conversion lives here too: :func:`load_encoder` (a checkpoint,
a run folder or a timm model name -> the encoder) and :func:`load_strict` (a state dict that must fit exactly).
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from accelerate import Accelerator

from ..errors import UserInputError
from ..fileio import match_umask, write_json_atomic, write_text_atomic  # match_umask: re-exported (older importers)

TRAINER_STATE = "trainer_state.json"
#: The recipe a checkpoint carries (and a run folder holds): the resolved ``TrainConfig`` as YAML.
RECIPE = "config.yaml"
#: The sub-folder of a checkpoint holding Accelerate's ``save_state``.
STATE_DIR = "accelerate"


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, state: dict[str, Any],
                    timm_encoder: TimmEncoder | None = None, total_limit: int | None = None,
                    recipe: dict[str, Any] | None = None) -> Path:
    """Write ``output_dir/ckpt-<step>`` atomically and point ``output_dir/last`` at it (all processes call this).

    ``timm_encoder`` adds the encoder's timm files, ``recipe`` (the run's config) its ``config.yaml``;
    ``total_limit`` then deletes the oldest checkpoints.
    """
    final = output_dir / f"ckpt-{step}"
    tmp = output_dir / f"ckpt-{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / STATE_DIR))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if timm_encoder is not None:
            timm_encoder.write(tmp)
        if recipe is not None:
            import yaml

            write_text_atomic(tmp / RECIPE, yaml.safe_dump(recipe, sort_keys=False))
        write_json_atomic(tmp / TRAINER_STATE, {**state, "step": step})
        match_umask(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        link_tmp = output_dir / "last.tmp"
        if link_tmp.is_symlink() or link_tmp.exists():
            link_tmp.unlink()
        link_tmp.symlink_to(final.name)
        os.replace(link_tmp, output_dir / "last")
        if total_limit is not None:
            prune_checkpoints(output_dir, total_limit)
    accelerator.wait_for_everyone()
    return final


def weights_tag(method: str, data: str | None) -> str:
    """The pretrained tag of weights that ``method`` trained on ``data``: ``<method>_<dataset>``, e.g.
    ``selfcon_cifar100`` (``finetune_cifar10`` for fine-tuned weights), the tag their export is named with too."""
    from ..data import dataset_short_name

    return f"{method}_{dataset_short_name(data)}"


class TimmEncoder:
    """Writes a module's timm files (``model.safetensors`` + ``config.json``) into a checkpoint folder.

    ``tag``: the ``pretrained_cfg`` tag in ``config.json`` (:func:`weights_tag`); without it timm would record the
    registered cfg's ``untrained``, which a trained checkpoint is not.
    """

    def __init__(self, encoder: torch.nn.Module, model_args: dict[str, Any], data_config: dict[str, Any],
                 tag: str | None = None) -> None:
        self.encoder, self.model_args, self.data_config, self.tag = encoder, model_args, data_config, tag

    def write(self, folder: Path) -> None:
        from timm.models import save_for_hf

        encoder = self.encoder
        if any(not t.is_contiguous() for t in encoder.state_dict().values()):  # channels_last: safetensors refuses
            import copy

            encoder = copy.deepcopy(encoder).to(memory_format=torch.contiguous_format)
        save_for_hf(encoder, str(folder), model_config={"pretrained_cfg": {"tag": self.tag}} if self.tag else None,
                    model_args=self.model_args, safe_serialization=True, data_config=self.data_config)


def checkpoint_steps(output_dir: Path) -> list[tuple[int, Path]]:
    """The complete ``ckpt-<step>`` folders of a run, oldest first."""
    found = []
    for path in output_dir.glob("ckpt-*"):
        suffix = path.name.removeprefix("ckpt-")
        if suffix.isdigit() and (path / TRAINER_STATE).is_file():
            found.append((int(suffix), path))
    return sorted(found)


def prune_checkpoints(output_dir: Path, total_limit: int) -> list[Path]:
    """Delete the oldest checkpoints beyond ``total_limit``, never the one ``last`` points to; returns them."""
    last = (output_dir / "last").resolve() if (output_dir / "last").exists() else None
    checkpoints = [path for _, path in checkpoint_steps(output_dir) if path.resolve() != last]
    keep = max(total_limit - (last is not None), 0)
    doomed = checkpoints[:len(checkpoints) - keep] if keep else checkpoints
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def accelerate_state_dir(checkpoint: Path) -> Path:
    """Accelerate's ``save_state`` folder of a checkpoint: ``<ckpt>/accelerate``, or the checkpoint itself for
    checkpoints written before that layout."""
    sub = Path(checkpoint) / STATE_DIR
    return sub if sub.is_dir() else Path(checkpoint)


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint directory, links resolved, of a checkpoint, a ``last`` link or a training ``output_dir``
    (meaning its ``last``): ``RUN``, ``RUN/last`` and ``RUN/ckpt-<step>`` name the same checkpoint."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{str(path)!r} does not exist: expected a training run folder (its 'last') or a "
                             "ckpt-<step> checkpoint")
    if (path / "last").exists():
        path = path / "last"
    path = path.resolve()
    if not (path / TRAINER_STATE).is_file():
        raise UserInputError(f"{str(path)!r} is not a complete checkpoint (no {TRAINER_STATE}); "
                         "expected a ckpt-<step> directory or a training output_dir with a 'last' link")
    return path


def read_recipe(checkpoint: Path) -> dict[str, Any]:
    """The recipe ``checkpoint`` was trained with: its own ``config.yaml``, or for a checkpoint written before
    checkpoints carried one, its run's (the folder holding it)."""
    import yaml

    for path in (checkpoint / RECIPE, checkpoint.parent / RECIPE):
        if path.is_file():
            return yaml.safe_load(path.read_text()) or {}
    raise UserInputError(
        f"{str(checkpoint)!r} carries no recipe ({RECIPE}; checkpoints written before they carried one keep it in "
        f"their run folder) and {str(checkpoint.parent)!r} holds none either: use it inside its run folder, or copy "
        f"the run's {RECIPE} into the checkpoint folder")


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / TRAINER_STATE).read_text())


# ------------------------------------------------------------------------------------------ loading
def load_encoder(source: str | os.PathLike[str], pretrained: bool | None = None,
                 **model_kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The encoder of ``source`` and where it came from.

    ``source`` is a training checkpoint directory, a training ``output_dir`` (its ``last``), or a timm model
    name (``selfcon_resnet18_cifar``, ``resnet50.a1_in1k``, ``hf-hub:org/name`` or timm's ``hf_hub:`` spelling,
    ``local-dir:/path``). A checkpoint that does not fit its model is refused with the missing and unexpected keys
    (never a silently random encoder). Which weights a model name gets: :func:`loads_pretrained_weights`.

    ``info["weights"]`` says in plain words which weights the encoder holds: ``trained checkpoint <path>``,
    ``pretrained weights of <name>`` or ``random init``.
    """
    from ..config import load_saved_config
    from ..constants import training_normalization
    from ..methods import build_method, method_class, options_from_recipe
    from ..models.factory import create_model

    path = Path(source)
    check_model_source(str(source))
    if path.exists():
        if model_kwargs:
            raise UserInputError(f"model_kwargs {model_kwargs} apply to a timm model name; the checkpoint {str(path)!r} "
                             "builds its model from its own config.yaml")
        if pretrained is False:
            raise UserInputError(f"pretrained=false applies to a timm model name; {str(path)!r} is a trained checkpoint, "
                                 "always evaluated with its own weights (evaluate its model name for a random init)")
        checkpoint = resolve_checkpoint(path)  # ``last`` -> the ckpt-<step> it names, for the report
        run_dir = checkpoint.parent
        config = load_saved_config(read_recipe(checkpoint))
        state = read_weights(checkpoint)
        model = create_model(config.model, num_classes=0, **config.model_kwargs)
        if method_class(config.method).trains_classifier:
            model.reset_classifier(checkpoint_num_classes(model, state, checkpoint))
        with warnings.catch_warnings():
            # the method is built only to name the checkpoint's keys; its training-time advice does not apply
            warnings.filterwarnings("ignore", message="method .* trains only the backbone")
            method = build_method(config.method, model, **options_from_recipe(config.method, config.to_dict()))
        load_strict(method, state, what=f"checkpoint {checkpoint}")
        encoder = method.encoder
        # evaluate and export with the normalisation and size the encoder was trained with (e.g. CIFAR-100 stats)
        mean, std = training_normalization(config.data)
        size = config.image_size
        encoder.pretrained_cfg = {**encoder.pretrained_cfg, "mean": tuple(mean), "std": tuple(std),
                                  "input_size": (3, size, size)}
        info = dict(model=config.model, model_kwargs=config.model_kwargs, checkpoint=str(checkpoint),
                    run_dir=str(run_dir), method=config.method, data=config.data, recipe=config.to_dict(),
                    weights=f"trained checkpoint {checkpoint}")
        return encoder, info
    name = canonical_model_name(str(source))
    with_weights = loads_pretrained_weights(name, pretrained)
    model = create_model(name, pretrained=with_weights, **model_kwargs)
    weights = "random init"
    if with_weights:
        tag = (getattr(model, "pretrained_cfg", None) or {}).get("tag")
        has_source = parse_model_name(name)[0] is not None
        # a plain name asked pretrained=true: name the tag timm chose
        weights = f"pretrained weights of {name if has_source or not tag else name.partition('.')[0] + '.' + tag}"
    return model, dict(model=name, model_kwargs=model_kwargs, checkpoint=None, run_dir=None, weights=weights)


#: The pretrained tag timm gives a model name whose weights are a random initialisation.
UNTRAINED_TAG = "untrained"


def canonical_model_name(name: str) -> str:
    """``name`` with timm's source prefix in its current spelling: ``hf_hub:`` / ``HF-HUB:`` -> ``hf-hub:``."""
    source, model_id = parse_model_name(name)
    return f"{source}:{model_id}" if source else name


def parse_model_name(name: str) -> tuple[str | None, str]:
    """timm's ``(source, id)`` of a model name (``("hf-hub", "org/name")``, ``(None, "resnet50.a1_in1k")``)."""
    from timm.models import parse_model_name as timm_parse

    try:
        return timm_parse(name)
    except ValueError as err:  # an unknown source prefix, or a path without one
        raise UserInputError(f"{name!r}: {err}") from None


def loads_pretrained_weights(name: str, pretrained: bool | None = None) -> bool:
    """Whether the timm model ``name`` is loaded with its pretrained weights.

    ``pretrained`` None (the default): yes for a Hub or local model (``hf-hub:`` in either spelling, ``local-dir:``)
    and for a name with an explicit pretrained tag other than ``untrained`` (``resnet50.a1_in1k``); no for a plain
    architecture name, which stays a randomly initialised encoder (the ranking's floors). ``True`` / ``False``
    decide (``True`` with a plain name: timm's default tag); ``True`` with the ``untrained`` tag is refused.
    """
    from timm.models import split_model_name_tag

    source, model_id = parse_model_name(name)
    tag = None if source else split_model_name_tag(model_id)[1]
    if pretrained is True and tag == UNTRAINED_TAG:
        raise UserInputError(f"pretrained=true contradicts the tag of {name!r}: timm's {UNTRAINED_TAG!r} tag has no "
                             "weights; drop the tag or pretrained=true")
    if pretrained is not None:
        return pretrained
    return bool(source) or bool(tag and tag != UNTRAINED_TAG)


def check_model_source(source: str) -> None:
    """Refuse, with the way on, a path that does not exist and a timm model folder given as a checkpoint."""
    if source.startswith("local-dir:"):
        folder = Path(source.removeprefix("local-dir:"))
        if not (folder / "config.json").is_file():
            what = "does not exist" if not folder.exists() else "holds no config.json (not a timm model folder)"
            raise UserInputError(f"{source!r}: the folder {str(folder)!r} {what}")
        return
    if source.lower().startswith(("hf-hub:", "hf_hub:")):
        return
    path = Path(source)
    if not path.exists():
        if "/" in source or os.sep in source:
            raise UserInputError(f"{source!r} does not exist: expected a training run folder, a ckpt-<step> "
                                 "checkpoint, a timm model name, hf-hub:ORG/NAME or local-dir:FOLDER")
        return  # a timm model name; create_model suggests the nearest if it is unknown
    if path.is_dir() and (path / "config.json").is_file() and not (path / "last").exists() and not (
            path / TRAINER_STATE).is_file():
        raise UserInputError(f"{source!r} is a timm model folder (an export or fine-tuning output: config.json, no "
                             f"training checkpoint); give it as local-dir:{source}")


def checkpoint_num_classes(model: nn.Module, state: dict[str, torch.Tensor], checkpoint: Path) -> int:
    """Classes of a ``ce`` checkpoint: rows of the backbone classifier's weight (``<method attr>.<classifier>.weight``).

    Matched on the exact classifier name, not a suffix: an ``fc`` exit's ``exits.0.fc.weight`` also ends in ``fc.weight``.
    """
    names = model.classifier_names() if hasattr(model, "classifier_names") else model.pretrained_cfg.get("classifier", "fc")
    backbone = names[0] if isinstance(names, (tuple, list)) else names
    rows = {int(v.shape[0]) for k, v in state.items() if k.partition(".")[2] == f"{backbone}.weight"}
    if len(rows) != 1:
        raise UserInputError(f"checkpoint {str(checkpoint)!r} of a 'ce' run has no single backbone classifier "
                         f"'{backbone}.weight' (found {sorted(rows)} sizes); cannot tell its number of classes")
    return rows.pop()


def read_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The training method's whole state dict from a checkpoint's Accelerate ``model*.safetensors`` files."""
    from safetensors.torch import load_file

    state_dir = accelerate_state_dir(checkpoint)
    files = sorted(state_dir.glob("model*.safetensors"))
    if not files:
        raise UserInputError(f"no model.safetensors in checkpoint {str(state_dir)!r}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    return state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists the missing and unexpected keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        raise UserInputError(
            f"{what} does not fit the model: {len(missing)} missing keys {missing[:8]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:8]}, {len(mismatched)} with other shapes {mismatched[:8]}")
    module.load_state_dict(state, strict=True)
