"""The per-model state AD-DROP's attention hooks consult, whatever the family's hook kind.

Every hooked layer asks one :class:`AttentionHook` what to do: outside a :meth:`recording`,
:meth:`masking` or :meth:`replacing` block nothing happens (stock attention, so evaluation is
never masked); inside one, the target layers expose their probabilities (after attention
dropout), apply a boolean drop mask, or use given probabilities instead (integrated gradients).
How a family's attention reaches the hook (transformers' attention-function registry, or a tap
on the softmax output) lives in :mod:`addrop_cli.models.families`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

HookMode = Literal["off", "record", "mask", "replace"]


def explicit_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    padding: torch.Tensor | None,
    scaling: float,
    drop: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention probabilities (B x H x T x T) with padding and dropped keys at exactly 0.

    ``padding`` is the boolean mask transformers built (True = attend), ``drop`` a boolean
    AD-DROP mask (True = drop). Masked logits get the dtype's minimum rather than -inf, so a
    fully masked row becomes uniform instead of NaN (AD-DROP never empties a real row).
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    lowest = torch.finfo(scores.dtype).min
    if padding is not None:
        scores = (
            scores.masked_fill(~padding, lowest)
            if padding.dtype == torch.bool
            else scores + padding.to(scores.dtype)
        )
    if drop is not None:
        scores = scores.masked_fill(drop, lowest)
    return F.softmax(scores, dim=-1)


def renormalised(probs: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Probabilities with the ``drop`` keys at exactly 0 and each row rescaled to sum to 1.

    Mathematically the softmax of the logits with the dropped keys at -inf; used where the
    family gives us the probabilities but not the logits (DeBERTa).
    """
    kept = probs.masked_fill(drop, 0.0)
    total = kept.sum(-1, keepdim=True)
    return kept / total.clamp(min=torch.finfo(total.dtype).tiny)


class AttentionHook:
    """What the target layers do in the current block; one hook per model."""

    def __init__(self, layers: list[int]) -> None:
        self.layers = tuple(layers)
        self.mode: HookMode = "off"
        self.masks: dict[int, torch.Tensor] = {}
        self.replacements: dict[int, torch.Tensor] = {}
        self.probs: dict[int, torch.Tensor] = {}
        self.leaf_grad = False
        self.calls = 0
        """Attention calls since the encoder's forward started (layer index of shared modules)."""
        self.keep_probs = False
        """Tests and debugging: keep the last block's probabilities in ``probs`` afterwards."""
        self.explicit_all = False
        """Benchmarks only: run every layer explicitly, as the reference code does."""

    # ----------------------------------------------------------------- asked by the layers

    def layer_of(self, module: nn.Module) -> int:
        """The layer index of an attention call: the module's own, or the call order for
        families whose layers share one module (ALBERT)."""
        index = getattr(module, "addrop_layer", None)
        if index is not None:
            return index
        self.calls += 1
        return self.calls - 1

    def explicit(self, layer: int) -> bool:
        """Whether this layer leaves the stock path in the current block."""
        if self.mode == "off":
            return False
        if self.mode == "replace":
            return layer in self.replacements or self.explicit_all
        return layer in self.layers or self.explicit_all

    def replacement(self, layer: int) -> torch.Tensor | None:
        return self.replacements.get(layer) if self.mode == "replace" else None

    def drop_mask(self, layer: int) -> torch.Tensor | None:
        return self.masks.get(layer) if self.mode == "mask" else None

    def keep(self, layer: int, probs: torch.Tensor) -> torch.Tensor:
        """Remember a target layer's probabilities (after attention dropout) for the caller."""
        if layer in self.layers:
            if self.leaf_grad and not probs.requires_grad:
                # Parameters are frozen in the attribution pass: the first target layer's
                # probabilities become the leaf the gradient is taken to.
                probs.requires_grad_(True)
            # Kept by reference only: autograd saves these probabilities anyway.
            self.probs[layer] = probs
        return probs

    def probabilities(
        self,
        layer: int,
        compute: Callable[[torch.Tensor | None], torch.Tensor],
        dropout: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """A hooked layer's probabilities: the replacement, or ``compute(drop mask)`` after
        ``dropout``, remembered for target layers."""
        replaced = self.replacement(layer)
        if replaced is not None:
            return replaced
        return self.keep(layer, dropout(compute(self.drop_mask(layer))))

    # ----------------------------------------------------------------- the blocks

    @contextmanager
    def _mode(self, mode: HookMode) -> Iterator[None]:
        self.mode = mode
        try:
            yield
        finally:
            self.mode = "off"
            self.masks = {}
            self.replacements = {}
            self.leaf_grad = False
            if not self.keep_probs:
                # The dict yielded by the block stays with its caller; the hook lets go of it
                # so no probabilities (and graph) outlive the step.
                self.probs = {}

    @contextmanager
    def recording(self, *, leaf_grad: bool = False) -> Iterator[dict[int, torch.Tensor]]:
        """Target layers run explicitly and keep their probabilities (after attention dropout)."""
        self.probs = {}
        self.leaf_grad = leaf_grad
        with self._mode("record"):
            yield self.probs

    @contextmanager
    def masking(self, masks: dict[int, torch.Tensor]) -> Iterator[dict[int, torch.Tensor]]:
        """Target layers drop the positions True in ``masks[layer]`` (the second pass).

        Yields the probabilities the target layers used (after attention dropout), for checks.
        """
        self.probs = {}
        with self._mode("mask"):
            self.masks = masks
            yield self.probs

    @contextmanager
    def replacing(self, replacements: dict[int, torch.Tensor]) -> Iterator[None]:
        """The given layers use these probabilities instead of their own (integrated gradients)."""
        with self._mode("replace"):
            self.replacements = replacements
            yield
