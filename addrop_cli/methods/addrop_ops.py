"""AD-DROP's maths as pure tensor functions (docs/algorithm.md), testable on hand-made tensors.

Shapes: attribution scores and masks are B x H x T x T (batch, head, query row, key);
``key_real`` is either the B x T padding mask of the batch (True = real token: an encoder's row
may attend to every real key) or a B x T x T mask of the keys each query row may attend to (a
decoder's: its own and earlier real keys, :mod:`addrop_cli.models.causal`). Every count, rank
and rate below is taken among a row's allowed keys. No model in here.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Drop = Literal["high", "low"]

_EPS = 1e-6
"""Guards the floors against float error: (1 - 0.9) * 10 is 0.999..., but means 1."""


def candidate_counts(n_real: torch.Tensor, p: float, drop: Drop = "high") -> torch.Tensor:
    """Size of the candidate discard region per example.

    ``high``: ``n - floor((1 - p) n)`` (the keys left after keeping the ``floor((1-p) n)``
    lowest); ``low``: ``floor(p n)``.
    """
    n = n_real.to(torch.float64)
    high = n - torch.floor((1.0 - p) * n + _EPS)
    counts = high if drop == "high" else torch.floor(p * n + _EPS)
    return counts.clamp(min=0).to(torch.long)


def allowed(key_real: torch.Tensor) -> torch.Tensor:
    """The allowed keys as B x 1 x R x T (R = 1 for a padding mask, T for per-row masks)."""
    return key_real[:, None, None, :] if key_real.dim() == 2 else key_real[:, None, :, :]


def real_rows(key_real: torch.Tensor) -> torch.Tensor:
    """B x 1 x T x 1: the query rows that are real tokens (and may attend to some key)."""
    rows = key_real if key_real.dim() == 2 else key_real.any(-1)
    return rows[:, None, :, None]


def _masked_for_ranking(scores: torch.Tensor, key_real: torch.Tensor) -> torch.Tensor:
    """Scores as float with keys a row may not attend to at -inf, so they never rank."""
    return scores.float().masked_fill(~allowed(key_real), -math.inf)


def candidate_region(
    scores: torch.Tensor, key_real: torch.Tensor, p: float, drop: Drop = "high"
) -> torch.Tensor:
    """Boolean B x H x T x T: per row, the top (or bottom) candidate keys by attribution.

    Uses one ``topk`` per row, not a full sort; exactly ``candidate_counts`` allowed keys per
    row (n = the row's allowed keys), padding never included. The counts grow with n, so the
    count at n = T bounds them all without reading the batch back from the device.
    """
    counts = candidate_counts(allowed(key_real).sum(-1), p, drop)  # B x 1 x R
    region = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    k_max = int(candidate_counts(torch.tensor([scores.shape[-1]]), p, drop))
    if k_max == 0:
        return region
    ranked = scores if drop == "high" else -scores
    index = _masked_for_ranking(ranked, key_real).topk(k_max, dim=-1, sorted=True).indices
    rank = torch.arange(k_max, device=scores.device)
    chosen = (rank < counts[..., None]).expand_as(index)
    return region.scatter_(-1, index, chosen)


def _uniform(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def keep_one_per_row(
    drop: torch.Tensor, scores: torch.Tensor, key_real: torch.Tensor
) -> torch.Tensor:
    """Un-drop the highest-attribution key of every row whose real keys would all be dropped.

    Computed for every row without a data-dependent branch (no device sync).
    """
    emptied = (drop | ~allowed(key_real)).all(-1, keepdim=True)  # B x H x T x 1
    best = _masked_for_ranking(scores, key_real).argmax(-1, keepdim=True)
    rescue = torch.zeros_like(drop).scatter_(-1, best, emptied)
    return drop & ~rescue


def drop_mask(
    scores: torch.Tensor | None,
    key_real: torch.Tensor,
    *,
    p: float,
    q: float,
    generator: torch.Generator,
    drop: Drop = "high",
    shape: torch.Size | None = None,
) -> torch.Tensor:
    """The boolean AD-DROP mask (True = drop) for one target layer.

    ``scores=None`` is the random control (RD): every allowed key dropped with probability p*q,
    and an emptied row keeps a uniformly random key (the one with the largest draw). Padding
    query rows are never masked (their outputs are ignored). ``shape`` is needed only when
    ``scores`` is None.
    """
    if scores is None:
        if shape is None:
            raise ValueError("drop_mask: give shape when scores is None")
        device = key_real.device
        candidates = allowed(key_real).expand(shape)
        rate = p * q
    else:
        shape, device = scores.shape, scores.device
        candidates = candidate_region(scores, key_real, p, drop)
        rate = q
    draws = _uniform(shape, generator, device)
    mask = candidates & (draws < rate)
    mask = keep_one_per_row(mask, draws if scores is None else scores, key_real)
    return mask & real_rows(key_real)


def dropped_fraction(mask: torch.Tensor, key_real: torch.Tensor) -> torch.Tensor:
    """Fraction of allowed (real query row, allowed key) positions dropped, over heads and batch.

    A 0-d tensor on the mask's device, so a training step never waits on the device for it.
    """
    pair = real_rows(key_real) & allowed(key_real)  # B x 1 x T x T
    positions = pair.sum().to(torch.float64) * mask.shape[1]
    return (mask & pair).sum() / positions.clamp(min=1)


def integrated_attribution(
    attention: torch.Tensor, grad_sum: torch.Tensor, steps: int
) -> torch.Tensor:
    """Integrated-gradient attribution: the mean of the m step gradients times the attention.

    Takes the running sum of the step gradients, so the m gradients are never all alive.
    """
    return attention * (grad_sum / steps)


def integrated_step(
    attention: torch.Tensor, alpha: float, ig: Literal["standard", "reference"]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One integrated-gradient step: the leaf to differentiate and the probabilities to use.

    ``standard``: the leaf is the scaled attention itself (the gradient at ``alpha * A``).
    ``reference`` (the authors' code): the leaf is the unscaled attention and the layer uses
    ``alpha * leaf``, so the gradient carries a factor ``alpha``.
    """
    if ig == "standard":
        leaf = (attention.detach() * alpha).requires_grad_(True)
        return leaf, leaf
    leaf = attention.detach().clone().requires_grad_(True)
    return leaf, leaf * alpha


def pseudo_label_objective(logits: torch.Tensor) -> torch.Tensor:
    """The sum over the batch of each example's top logit (its pseudo label), for attribution."""
    return logits.float().gather(1, logits.argmax(-1, keepdim=True)).sum()


def gold_label_objective(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The sum over the batch of each example's gold-label logit (the prior experiment)."""
    return logits.float().gather(1, labels.long()[:, None]).sum()


def regression_objective(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Negated gold-label MSE (STS-B): its gradient is ``-dMSE/dA``."""
    return -torch.nn.functional.mse_loss(logits.float().squeeze(-1), labels.float())
