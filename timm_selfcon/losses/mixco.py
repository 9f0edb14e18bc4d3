"""MixCo soft cross-entropy between mixed-image queries and the other view's keys.

Kim, Lee, Bae, Yun, "MixCo: Mix-up Contrastive Learning for Visual Representation", NeurIPS 2020 Workshop on
Self-Supervised Learning, arXiv 2010.06300. This is the mix term only; the base MoCo/SimCLR loss, the mixing
of images and the queue live in the method.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..precision import autocast_disabled
from .supcon import _check_temperature, _compute_dtype, contrast_logsumexp

__all__ = ["MixCoLoss", "mixco_loss"]


def _check_matrix(name: str, tensor: Tensor) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be 2-D [rows, dim], got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def mixco_loss(
    q_mix: Tensor,
    keys: Tensor,
    lam: Tensor,
    queue: Tensor | None = None,
    *,
    temperature: float = 0.05,
) -> Tensor:
    r"""MixCo loss: soft cross-entropy of mixed queries over ``[keys; queue]`` with targets ``(λ, 1 - λ)``.

    Mixed image ``i < M`` is ``λ_i x_i + (1 - λ_i) x_{i+M}`` of a local batch of ``N = 2M`` images. With
    contrast set :math:`c = [k_0, \dots, k_{N-1}, u_0, \dots, u_{K-1}]` (other-view keys, then queue) and
    :math:`\ell_{ij} = q_i \cdot c_j / \tau`,

    .. math::

        \mathcal{L} = \frac{1}{M} \sum_{i<M} -\left[\lambda_i \log \operatorname{softmax}(\ell_i)_i
            + (1 - \lambda_i) \log \operatorname{softmax}(\ell_i)_{i+M}\right]

    The log-softmax is evaluated as :math:`\ell_{ij} - \operatorname{logsumexp}_j \ell_{ij}` at the two
    target columns only, never as ``log(softmax)`` (which underflows to ``log 0`` in fp16 at τ = 0.05).
    ``keys`` are not detached here: MoCo passes momentum-encoder keys (no grad), SimCLR+MixCo needs the
    gradient through them.

    Args:
        q_mix: ``[M, D]`` L2-normalised embeddings of the mixed images.
        keys: ``[N, D]`` with ``N = 2M``, the other view's embeddings of the N source images.
        lam: ``[M]`` mixing coefficients λ.
        queue: ``[K, D]`` extra negatives (MoCo queue, read before enqueueing), or ``None``.
        temperature: :math:`\tau > 0` (``--mixco-t``).

    Returns:
        Scalar loss, float32 for half/bf16 inputs (computed in float32 with autocast disabled).
    """
    _check_temperature("temperature", temperature)
    _check_matrix("q_mix", q_mix)
    _check_matrix("keys", keys)
    num_mixed, dim = q_mix.shape
    if keys.shape != (2 * num_mixed, dim):
        raise ValueError(
            f"keys must have shape [2 * M, D] = [{2 * num_mixed}, {dim}] for q_mix of shape "
            f"{tuple(q_mix.shape)} (two source images per mixed image, same embedding dim), "
            f"got {tuple(keys.shape)}"
        )
    if not isinstance(lam, Tensor):
        raise TypeError(f"lam must be a torch.Tensor, got {type(lam).__name__}")
    if lam.shape != (num_mixed,):
        raise ValueError(
            f"lam must have shape [M] = [{num_mixed}] (one λ per mixed image), got {tuple(lam.shape)}"
        )
    embeddings = [keys]
    if queue is not None:
        _check_matrix("queue", queue)
        if queue.shape[1] != dim:
            raise ValueError(
                f"queue must have shape [K, {dim}] (same embedding dim as q_mix), got {tuple(queue.shape)}"
            )
        embeddings.append(queue)

    with autocast_disabled(q_mix.device):
        dtype = _compute_dtype(q_mix, *embeddings)
        q_mix = q_mix.to(dtype)
        keys = keys.to(dtype)
        lam = lam.to(device=q_mix.device, dtype=dtype)
        q_scaled = q_mix / temperature
        log_denominator = contrast_logsumexp(q_scaled, keys)  # [M]
        if queue is not None:
            # Combining two logsumexps instead of concatenating [keys; queue] keeps the backward from
            # computing a [K, D] gradient for a queue that (in MoCo) does not require one.
            queue_log_sum = contrast_logsumexp(q_scaled, queue.to(dtype))
            log_denominator = torch.logaddexp(log_denominator, queue_log_sum)
        logit_first = (q_scaled * keys[:num_mixed]).sum(dim=1)  # column i
        logit_second = (q_scaled * keys[num_mixed:]).sum(dim=1)  # column i + M
        target_logit = lam * logit_first + (1.0 - lam) * logit_second
        return (log_denominator - target_logit).mean()


class MixCoLoss(nn.Module):
    """MixCo mix term; see :func:`mixco_loss` for the formula and shapes.

    Call as ``loss(q_mix [M, D], keys [2M, D], lam [M], queue [K, D] | None = None)``.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        _check_temperature("temperature", temperature)
        self.temperature = float(temperature)

    def forward(self, q_mix: Tensor, keys: Tensor, lam: Tensor, queue: Tensor | None = None) -> Tensor:
        return mixco_loss(q_mix, keys, lam, queue, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
