"""Exit machinery shared by every multi-exit SelfCon model.

Self-Contrastive Learning (SelfCon, Bae et al., AAAI 2023, arXiv 2106.15499) attaches non-shared
sub-networks ("exits") to intermediate stages of one backbone; each exit ends in a vector of the
backbone's feature width, and in this package each exit and the backbone have their own linear
classifier.

A model family plugs in by mixing in :class:`MultiExitMixin` and implementing four small methods:

- ``_forward_stem(x)``: input -> the feature map of ``feature_info`` index 0,
- ``_forward_stage(index, x)``: feature map of index ``index - 1`` -> feature map of ``index``,
- ``_forward_norm(x)``: the last stage's map -> ``forward_features`` output (final norm, or identity),
- ``forward_head(x, pre_logits=False)``: timm's pooled head.

and by owning ``exits`` / ``exit_heads`` (``nn.ModuleList``, depth order) and ``exit_stages``.
The mixin then provides the multi-exit API (``forward_exits``, ``forward_ensemble``,
``forward_early_exit``), timm's ``forward_intermediates`` and a ``forward`` that returns the
ensemble of all heads, the paper's multi-exit inference.

TorchScript and torch.fx (timm's tests script and trace every model): ``forward``, including the
ensemble path, is compiled, so the four contract methods and ``_ensemble_active`` must be
scriptable: no ``super()``, no ``getattr(self, f"layer{index}")`` (branch on ``index``, or loop
over an ``nn.Sequential`` comparing indices), no branch on tensor shapes (fx). Python-only API
(``forward_exits``, ``forward_ensemble``, ``forward_early_exit``, ...) is ``@torch.jit.ignore``.
This module has no ``from __future__ import annotations``: torch.fx copies ``forward``'s
annotations into the traced code, where a string ``'torch.Tensor'`` cannot be scripted.
"""

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import get_device_dtype
from timm.models import build_model_with_cfg
from timm.models._features import feature_take_indices

from ..errors import UserInputError

SUB_NETWORKS = ("same", "small", "fc")
ENSEMBLE_AVERAGES = ("logits", "probs")


def validate_exit_stages(exit_stages: Iterable[int] | int | None, valid: Sequence[int], family: str) -> tuple[int, ...]:
    """Check and normalise ``exit_stages`` to a sorted tuple of unique stage indices.

    Args:
        exit_stages: stage indices in timm's ``feature_info`` numbering (an int is one exit; None or () no exit).
        valid: the indices an exit may follow for this model (never the last stage).
        family: model family name for the error message.
    """
    if exit_stages is None:
        return ()
    # a user's value (a recipe, ``model_kwargs.exit_stages=...``): refused in one line, like a value out of range
    if isinstance(exit_stages, bool) or not isinstance(exit_stages, (int, Iterable)) or isinstance(exit_stages, str):
        raise UserInputError(f"exit_stages must be an int or a list of ints (e.g. [2] or [1, 2]), got {exit_stages!r}")
    stages = (exit_stages,) if isinstance(exit_stages, int) else tuple(exit_stages)
    for stage in stages:
        if isinstance(stage, bool) or not isinstance(stage, int):
            raise UserInputError(f"exit_stages must contain ints (e.g. [2] or [1, 2]), got {stage!r} in {exit_stages!r}")
        if stage not in valid:
            raise UserInputError(
                f"exit stage {stage} is out of range for {family}: an exit may follow stages "
                f"{list(valid)} (timm feature_info numbering; never the last stage)"
            )
    if len(set(stages)) != len(stages):
        raise UserInputError(f"exit_stages has duplicates: {exit_stages!r}")
    return tuple(sorted(stages))


def validate_sub_network(sub_network: str) -> str:
    """Check ``sub_network`` is one of ``same``, ``small`` or ``fc``."""
    if sub_network not in SUB_NETWORKS:
        raise UserInputError(f"unknown sub_network {sub_network!r}; expected one of {list(SUB_NETWORKS)}")
    return sub_network


EXIT_POOLS = ("avg", "token", "avg_tokens")


class ExitPool(nn.Module):
    """An exit's global pooling, fixed at construction (no shape-dependent branch: fx-traceable, scriptable).

    ``avg``: ``[B, C, H, W]`` maps -> spatial mean ``[B, C]``; ``token``: ``[B, N, C]`` -> first token;
    ``avg_tokens``: ``[B, N, C]`` -> mean over tokens.
    """

    def __init__(self, pool_type: str = "avg") -> None:
        super().__init__()
        if pool_type not in EXIT_POOLS:
            raise UserInputError(f"unknown exit pooling {pool_type!r}; expected one of {list(EXIT_POOLS)}")
        self.pool_type = pool_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "token":
            return x[:, 0]
        if self.pool_type == "avg_tokens":
            return x.mean(1)
        return x.mean((2, 3))


def as_pool_module(pool: str | nn.Module) -> nn.Module:
    """A pooling module: ``pool`` itself, or the :class:`ExitPool` of that name."""
    return pool if isinstance(pool, nn.Module) else ExitPool(pool)


class FcExit(nn.Module):
    """The ``fc`` sub-network: global average pool, then one Linear to the backbone width.

    Input ``[B, C_in, H, W]`` (or ``[B, N, C_in]`` tokens with a token ``pool``), output ``[B, out_features]``.
    """

    def __init__(self, in_chs: int, out_features: int, pool: str | nn.Module = "avg", norm: nn.Module | None = None,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.pool = as_pool_module(pool)
        self.norm = norm if norm is not None else nn.Identity()
        self.fc = nn.Linear(in_chs, out_features, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        x = self.pool(x)
        return self.fc(x)


class StageExit(nn.Module):
    """The ``same`` / ``small`` sub-network: fresh, unshared stages, then global pooling.

    Input: the feature map (or tokens) at the exit stage; output ``[B, C_final]``.
    """

    def __init__(self, stages: nn.Sequential, pool: str | nn.Module = "avg", norm: nn.Module | None = None) -> None:
        super().__init__()
        self.stages = stages
        self.norm = norm if norm is not None else nn.Identity()
        self.pool = as_pool_module(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)
        x = self.norm(x)
        return self.pool(x)


def make_linear_head(num_features: int, num_classes: int, device=None, dtype=None) -> nn.Module:
    """``Linear(num_features, num_classes)``, or ``Identity`` when ``num_classes == 0``."""
    if num_classes > 0:
        return nn.Linear(num_features, num_classes, device=device, dtype=dtype)
    return nn.Identity()


def halve_blocks(stages: nn.Sequential) -> nn.Sequential:
    """The ``small`` sub-network rule: keep the first ``max(1, n // 2)`` blocks of each stage.

    Stages are ``nn.Sequential`` of blocks, or modules with a ``blocks`` ``nn.Sequential``; the first
    block carries the stride and width change, so keeping a prefix keeps the shapes.
    """
    for stage in stages:
        blocks = stage if isinstance(stage, nn.Sequential) else getattr(stage, "blocks", None)
        if isinstance(blocks, nn.Sequential) and len(blocks) > 1:
            for idx in range(len(blocks) - 1, max(1, len(blocks) // 2) - 1, -1):
                del blocks[idx]
    return stages


def classifier_names_for(num_exits: int, backbone: str = "fc") -> tuple[str, ...]:
    """``pretrained_cfg['classifier']`` of a model with ``num_exits`` exits: the backbone's head, then ``exit_heads.i``."""
    return (backbone, *[f"exit_heads.{i}" for i in range(num_exits)])


def build_exits(
        exit_stages: Sequence[int],
        sub_network: str,
        feature_info: Sequence[dict[str, Any]],
        out_features: int,
        remaining_stages: Callable[[int], nn.Sequential],
        *,
        halve: Callable[[nn.Sequential], nn.Sequential] = halve_blocks,
        pool: Callable[[], str | nn.Module] | None = None,
        norm: Callable[[], nn.Module] | None = None,
        device=None,
        dtype=None,
) -> nn.ModuleList:
    """The exits of a model, one per stage of ``exit_stages`` in depth order (the SelfCon sub-network rule).

    Args:
        exit_stages: validated stage indices (:func:`validate_exit_stages`).
        sub_network: ``fc``: :class:`FcExit` from ``feature_info[stage]["num_chs"]`` to ``out_features``;
            ``same``: :class:`StageExit` over ``remaining_stages(stage)``; ``small``: the same after ``halve``.
        feature_info: the model's timm ``feature_info`` (index 0 the stem).
        out_features: every exit's output width, the backbone's ``num_features``.
        remaining_stages: stage index -> fresh, unshared stages that follow it (``same`` / ``small`` only).
        halve: the ``small`` rule applied to ``remaining_stages(stage)`` (default :func:`halve_blocks`).
        pool: factory of each exit's pooling (a module or an :class:`ExitPool` name); default ``"avg"``.
        norm: factory of each exit's norm, applied before pooling; default none.

    Each exit is built in turn (pool, norm, then its layers), so the RNG is drawn in one fixed order.
    """
    exits = []
    for stage in exit_stages:
        exit_pool = pool() if pool is not None else "avg"
        exit_norm = norm() if norm is not None else None
        if sub_network == "fc":
            in_chs = feature_info[stage]["num_chs"]
            exits.append(FcExit(in_chs, out_features, pool=exit_pool, norm=exit_norm, device=device, dtype=dtype))
        else:
            rest = remaining_stages(stage)
            exits.append(StageExit(halve(rest) if sub_network == "small" else rest, pool=exit_pool, norm=exit_norm))
    return nn.ModuleList(exits)


class MultiExitMixin:
    """Multi-exit API for timm-style models; see the module docstring for the contract.

    Attributes a family sets (not declared as class annotations: TorchScript would read them as
    attribute types and rejects ``nn.ModuleList`` / ``tuple[int, ...]``):
    ``exit_stages: tuple[int, ...]``, ``exits: nn.ModuleList``, ``exit_heads: nn.ModuleList``,
    ``num_classes: int``, ``num_features: int``, ``num_stages: int`` (``feature_info`` indices
    1..num_stages are stages, 0 is the stem), ``grad_checkpointing: bool`` and, as a class
    attribute, ``backbone_classifier_name: str``.
    """

    backbone_classifier_name = "fc"

    # ---- contract implemented by each family -------------------------------------------------
    def _forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward_norm(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ---- construction helpers ----------------------------------------------------------------
    def _init_exit_heads(self, device=None, dtype=None) -> None:
        self.exit_heads = nn.ModuleList(
            [make_linear_head(self.num_features, self.num_classes, device, dtype) for _ in self.exit_stages]
        )

    def _reset_exit_heads(self) -> None:
        dd = get_device_dtype(self)
        self._init_exit_heads(**dd)
        self.exit_heads.train(self.training)  # the new ModuleList container too, not only the heads

    @property
    def num_exits(self) -> int:
        return len(self.exit_stages)

    @torch.jit.ignore
    def classifier_names(self) -> tuple[str, ...]:
        """State-dict prefixes of every linear classifier, backbone first (timm ``pretrained_cfg['classifier']``)."""
        return (self.backbone_classifier_name, *[f"exit_heads.{i}" for i in range(self.num_exits)])

    # ---- tapped forward ------------------------------------------------------------------------
    def _run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
            return torch.utils.checkpoint.checkpoint(self._forward_stage, index, x, use_reentrant=False)
        return self._forward_stage(index, x)

    def _is_exit_stage(self, index: int) -> bool:
        # a loop, not ``in`` or ``any(...)``: TorchScript has neither for tuples nor generators
        for stage in self.exit_stages:  # noqa: SIM110
            if stage == index:
                return True
        return False

    def _forward_with_exit_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One pass: ``(forward_features output, [feature map at each exit stage])``."""
        exit_maps: list[torch.Tensor] = []
        for index in range(self.num_stages + 1):
            x = self._forward_stem(x) if index == 0 else self._run_stage(index, x)
            if self._is_exit_stage(index):
                exit_maps.append(x)
        return self._forward_norm(x), exit_maps

    @torch.jit.ignore
    def forward_exits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pooled features, one ``[B, num_features]`` tensor per exit in depth order, backbone last."""
        features, exit_maps = self._forward_with_exit_maps(x)
        exit_feats = [exit_(m) for exit_, m in zip(self.exits, exit_maps)]
        return [*exit_feats, self.forward_head(features, pre_logits=True)]

    def forward_exit_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits ``[B, num_classes]`` of every head: one per exit in depth order, backbone last."""
        features, exit_maps = self._forward_with_exit_maps(x)
        logits: list[torch.Tensor] = []
        for k, (exit_, head) in enumerate(zip(self.exits, self.exit_heads)):
            logits.append(head(exit_(exit_maps[k])))
        logits.append(self.forward_head(features))
        return logits

    @torch.jit.ignore
    def forward_ensemble(self, x: torch.Tensor, average: str = "logits") -> torch.Tensor:
        """The multi-exit ensemble in one forward pass: ``[B, num_classes]``.

        ``average="logits"`` averages the heads' logits (the paper's ensemble); ``"probs"`` averages
        their softmax probabilities and returns probabilities.
        """
        if average not in ENSEMBLE_AVERAGES:
            raise UserInputError(f"unknown average {average!r}; expected one of {list(ENSEMBLE_AVERAGES)}")
        self._check_has_classifier("forward_ensemble")
        logits = torch.stack(self.forward_exit_logits(x))
        if average == "probs":
            return logits.softmax(-1).mean(0)
        return logits.mean(0)

    @torch.jit.ignore
    def forward_early_exit(self, x: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Early-exit inference: each image stops at the first exit whose softmax confidence reaches ``threshold``.

        Images that pass no exit get the full model's output (the ensemble of all heads, as ``forward``).
        Only the images still running are computed further, so compute really is saved; call
        ``model.eval()`` first (BatchNorm in train mode would see shrinking batches).

        Returns:
            logits ``[B, num_classes]`` and ``exit_index`` ``[B]`` (long): ``k`` for exit ``k`` in depth
            order, ``num_exits`` for the full model.
        """
        self._check_has_classifier("forward_early_exit")
        batch = x.shape[0]
        out = None
        exit_index = torch.full((batch,), self.num_exits, dtype=torch.long, device=x.device)
        active = torch.arange(batch, device=x.device)
        running_logits: list[torch.Tensor] = []
        h = x
        exit_pos = 0
        for index in range(self.num_stages + 1):
            h = self._forward_stem(h) if index == 0 else self._forward_stage(index, h)
            if index not in self.exit_stages:
                continue
            logits = self.exit_heads[exit_pos](self.exits[exit_pos](h))
            if out is None:
                out = logits.new_zeros((batch, logits.shape[-1]))
            running_logits.append(logits)
            done = logits.softmax(-1).amax(-1) >= threshold
            out[active[done]] = logits[done]
            exit_index[active[done]] = exit_pos
            keep = ~done
            active, h = active[keep], h[keep]
            running_logits = [lg[keep] for lg in running_logits]
            exit_pos += 1
            if active.numel() == 0:
                return out, exit_index
        final = self.forward_head(self._forward_norm(h))
        ensemble = torch.stack([*running_logits, final]).mean(0)
        if out is None:
            return ensemble, exit_index
        out[active] = ensemble
        return out, exit_index

    def _check_has_classifier(self, what: str) -> None:
        if self.num_classes == 0:
            raise UserInputError(f"{what} needs classifiers, but the model has num_classes=0; "
                             "use forward_exits for features or reset_classifier(n)")

    def _ensemble_active(self) -> bool:
        """Whether ``forward`` is the ensemble (compiled by TorchScript: families override it without ``super()``)."""
        return len(self.exit_stages) > 0 and self.num_classes > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """With exits and classifiers: the average of all heads' logits ``[B, num_classes]``.

        Otherwise as timm: ``forward_head(forward_features(x))`` (with ``num_classes=0`` that is the
        backbone's pooled feature, the one used for linear evaluation).
        """
        if self._ensemble_active():
            return self._forward_ensemble_logits(x)
        return self.forward_head(self.forward_features(x))

    def _forward_ensemble_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.forward_exit_logits(x)).mean(0)

    # ---- timm feature API ----------------------------------------------------------------------
    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: int | list[int] | None = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates``: taps at ``feature_info`` indices (0 = stem)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW' for this model, got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(self.num_stages + 1, indices)
        intermediates = []
        x = self._forward_stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        last = max_index if stop_early else self.num_stages
        for index in range(1, last + 1):
            x = self._run_stage(index, x)
            if index in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return self._forward_norm(x), intermediates

    def _drop_exits(self) -> None:
        """Remove every exit (and its classifier): the model becomes a plain backbone."""
        self.exit_stages = ()
        self.exits = nn.ModuleList()
        self.exit_heads = nn.ModuleList()

    def plain_encoder(self) -> nn.Module:
        """A copy of this model with the exits and their classifiers removed, backbone weights intact.

        The result is the same class with ``exit_stages=()``: ``forward`` is then the backbone's
        prediction (or pooled feature with ``num_classes=0``), ready for fine-tuning or export.
        """
        plain = copy.deepcopy(self)
        plain._drop_exits()
        if hasattr(plain, "_model_args"):
            plain._model_args = {**plain._model_args, "exit_stages": ()}
        if isinstance(getattr(plain, "pretrained_cfg", None), dict):
            # timm drops the heads named here when num_classes changes: only the backbone's remains
            plain.pretrained_cfg = {**plain.pretrained_cfg, "classifier": plain.classifier_names()}
        return plain

    @torch.jit.ignore
    def exit_flops(self, input_size: tuple[int, int, int]) -> list[float]:
        """FLOPs per image (``torch.utils.flop_counter``) of stopping at each exit and of the full model.

        Entry ``k < num_exits``: the stem, the stages up to exit ``k`` and exits ``0..k`` with their classifiers,
        what ``forward_early_exit`` computes for an image that stops at exit ``k``. Last entry: every stage, every
        exit and classifier and the backbone's head (``forward_exit_logits``, the full model). ``input_size`` is
        ``(C, H, W)``; one image of that size runs in eval mode, and the model's mode is restored afterwards.
        """
        from torch.utils.flop_counter import FlopCounterMode

        was_training = self.training
        self.eval()
        param = next(self.parameters())
        x = torch.zeros(1, *input_size, device=param.device, dtype=param.dtype)
        costs: list[float] = []
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            exit_pos = 0
            for index in range(self.num_stages + 1):
                x = self._forward_stem(x) if index == 0 else self._forward_stage(index, x)
                if self._is_exit_stage(index):
                    self.exit_heads[exit_pos](self.exits[exit_pos](x))
                    costs.append(float(counter.get_total_flops()))
                    exit_pos += 1
            self.forward_head(self._forward_norm(x))
            costs.append(float(counter.get_total_flops()))
        self.train(was_training)
        return costs


def ensemble_from_logits(logits: Sequence[torch.Tensor], average: str = "logits") -> torch.Tensor:
    """Ensemble of precomputed head logits ``[B, C]`` each: mean logits, or mean softmax probabilities."""
    if average not in ENSEMBLE_AVERAGES:
        raise UserInputError(f"unknown average {average!r}; expected one of {list(ENSEMBLE_AVERAGES)}")
    stacked = torch.stack(list(logits))
    return F.softmax(stacked, -1).mean(0) if average == "probs" else stacked.mean(0)


def create_multi_exit_model(
        model_cls: type[nn.Module],
        variant: str,
        pretrained: bool,
        *,
        num_exits: int,
        feature_cfg: dict[str, Any],
        backbone_classifier: str = "fc",
        cfg_overlay: dict[str, Any] | None = None,
        **kwargs: Any,
) -> nn.Module:
    """The ``_create_*`` of every multi-exit family: ``model_cls`` built through timm's ``build_model_with_cfg``.

    ``pretrained_cfg['classifier']`` names the backbone's head and those of the ``num_exits`` exits the model
    actually has (:func:`classifier_names_for`), so that timm drops all of them when ``num_classes`` changes at
    load. With ``cfg_overlay`` it makes the ``pretrained_cfg_overlay``, over which the caller's own
    ``pretrained_cfg_overlay`` kwarg wins.
    """
    overlay = {**(cfg_overlay or {}), "classifier": classifier_names_for(num_exits, backbone_classifier)}
    overlay.update(kwargs.pop("pretrained_cfg_overlay", None) or {})
    return build_model_with_cfg(
        model_cls, variant, pretrained, pretrained_cfg_overlay=overlay, feature_cfg=feature_cfg, **kwargs,
    )
