"""``timm.create_model`` with answers instead of tracebacks for a user's mistakes (:class:`UserInputError`).

An unknown name suggests the nearest registered ones, a misspelt kwarg names the model's valid kwargs, an
unreachable Hub says so, and pretrained weights that do not fit the model (kwargs that change its architecture)
are refused listing the missing and unexpected keys. Everything else (a bug) propagates unchanged.
"""
from __future__ import annotations

import difflib
import inspect
import re
from typing import Any

import timm
import torch.nn as nn

from ..errors import UserInputError, hub_error

__all__ = ["create_model", "model_kwarg_names"]

#: Keyword arguments that timm's ``build_model_with_cfg`` takes for every model (not the class's own).
BUILDER_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "features_only", "out_indices", "feature_cls",
                  "checkpoint_path", "cache_dir", "scriptable", "exportable", "no_jit")
_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")
_QUOTED = re.compile(r'"([^"]+)"')  # a key in torch's load_state_dict error


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, **kwargs)``, raising :class:`UserInputError` for the user's mistakes."""
    name = str(name)
    if not name.startswith(("hf-hub:", "local-dir:", "hf_hub:")) and not timm.is_model(name.partition(".")[0]):
        nearest = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.75)
        hint = f"; did you mean {', '.join(repr(n) for n in nearest)}?" if nearest else ""
        raise UserInputError(f"unknown model {name!r}{hint} (`timm-selfcon models` lists this package's models, "
                             "timm.list_models() all of timm's)")
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as err:
        match = _UNEXPECTED.search(str(err))
        model_cls = _builder_model_class(err)
        if match is None or model_cls is None:
            raise
        valid = model_kwarg_names(model_cls)
        nearest = difflib.get_close_matches(match.group(1), valid, n=1)
        hint = f"did you mean {nearest[0]!r}? " if nearest else ""
        raise UserInputError(f"model {name!r} takes no kwarg {match.group(1)!r}; {hint}valid kwargs: "
                             f"{', '.join(valid)}") from err
    except Exception as err:
        answer = hub_error(err, name) or weights_mismatch(err, name, kwargs) or unknown_tag(err, name)
        if answer is None:
            raise
        raise answer from err


def unknown_tag(err: BaseException, name: str) -> UserInputError | None:
    """A :class:`UserInputError` naming the architecture's pretrained tags for timm's "Invalid pretrained tag", else
    None."""
    if not isinstance(err, RuntimeError) or not str(err).startswith("Invalid pretrained tag"):
        return None
    architecture, _, tag = name.partition(".")
    tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{architecture}.*")]
    return UserInputError(f"model {name!r}: {architecture} has no pretrained tag {tag!r}; its tags: "
                          f"{', '.join(tags) or 'none (give the plain name)'}")


def weights_mismatch(err: BaseException, name: str, kwargs: dict[str, Any]) -> UserInputError | None:
    """A :class:`UserInputError` listing the missing, unexpected and reshaped keys for torch's ``load_state_dict``
    error (pretrained weights that do not fit the model ``kwargs`` built), else None."""
    message = str(err)
    if not isinstance(err, RuntimeError) or not message.startswith("Error(s) in loading state_dict"):
        return None
    sections = {"missing": [], "unexpected": [], "shapes": []}
    for part in message.split("\n\t")[1:]:
        if part.startswith("Missing key(s)"):
            sections["missing"] += _QUOTED.findall(part)
        elif part.startswith("Unexpected key(s)"):
            sections["unexpected"] += _QUOTED.findall(part)
        elif part.startswith("size mismatch for "):
            sections["shapes"].append(part.removeprefix("size mismatch for ").partition(":")[0])
    given = {k: v for k, v in kwargs.items() if k not in ("pretrained", "num_classes", *BUILDER_KWARGS)}
    hint = (f"; the model kwargs {given} change the architecture the weights were saved with: leave them out to load "
            "the model as saved") if given else ""
    missing, unexpected, shapes = sections["missing"], sections["unexpected"], sections["shapes"]
    return UserInputError(
        f"the weights of {name!r} do not fit the model: {len(missing)} missing keys {missing[:8]}, {len(unexpected)} "
        f"unexpected keys {unexpected[:8]}, {len(shapes)} with other shapes {shapes[:8]}{hint}")


def _builder_model_class(err: TypeError) -> type | None:
    """The class timm's builder was constructing when ``err`` (an argument-binding error) was raised."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    cls = tb.tb_frame.f_locals.get("model_cls") if tb is not None else None
    return cls if isinstance(cls, type) else None


def model_kwarg_names(model_cls: type) -> list[str]:
    """The keyword arguments a model class takes (without ``device`` / ``dtype``), sorted."""
    names = [p.name for p in list(inspect.signature(model_cls.__init__).parameters.values())[1:]
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in ("device", "dtype")]
    return sorted(names)
