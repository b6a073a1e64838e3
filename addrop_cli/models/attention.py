"""Hook AD-DROP into their attention.

The hook goes through transformers' attention-function registry: every layer of a hooked model
calls :func:`_addrop_attention`, which hands untargeted layers (and every layer outside an AD-DROP
pass) straight to the stock fused SDPA kernel, and computes attention explicitly only in the
target layers while an :class:`AttentionHook` asks for it (to expose the probabilities, apply a
drop mask, or replace the probabilities for integrated gradients).

transformers 5 builds the padding mask per attention implementation, so the registered name also
gets a mask builder: the stock SDPA one (boolean, True = attend). Untargeted layers therefore see
exactly the mask the stock ``sdpa`` model sees, and the explicit path turns it into an additive
mask with the score dtype's minimum.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AttentionInterface,
    PreTrainedModel,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from addrop_cli.errors import ModelError
from addrop_cli.models.loading import (
    ADDROP_ATTENTION,
    HookMode,
    _layer_problems,
    _model_type_problem,
    resolve_layers,
)


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


class AttentionHook:
    """Per-model state that the registered attention function consults.

    Outside a :meth:`recording`, :meth:`masking` or :meth:`replacing` block every layer runs the
    stock SDPA kernel, so evaluation is never masked. Masks live only for the duration of a
    ``masking`` block, one boolean B x H x T x T tensor per target layer.
    """

    def __init__(self, layers: list[int]) -> None:
        self.layers = tuple(layers)
        self.mode: HookMode = "off"
        self.masks: dict[int, torch.Tensor] = {}
        self.replacements: dict[int, torch.Tensor] = {}
        self.probs: dict[int, torch.Tensor] = {}
        self.leaf_grad = False
        self.keep_probs = False
        """Tests and debugging: keep the last block's probabilities in ``probs`` afterwards."""
        self.explicit_all = False
        """Benchmarks only: run every layer explicitly, as the reference code does."""

    def _explicit(self, layer: int) -> bool:
        if self.mode == "off":
            return False
        if self.mode == "replace":
            return layer in self.replacements or self.explicit_all
        return layer in self.layers or self.explicit_all

    def attend(
        self,
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        padding: torch.Tensor | None,
        dropout: float,
        scaling: float | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The explicit attention of one layer, under the current mode."""
        layer = module.layer_idx
        if scaling is None:
            scaling = query.size(-1) ** -0.5
        probs = self.replacements.get(layer) if self.mode == "replace" else None
        if probs is None:
            drop = self.masks.get(layer) if self.mode == "mask" else None
            probs = explicit_attention(query, key, padding, scaling, drop)
            probs = F.dropout(probs, p=dropout, training=module.training)
            if layer in self.layers:
                if self.leaf_grad and not probs.requires_grad:
                    # Parameters are frozen in the attribution pass: the first target layer's
                    # probabilities become the leaf the gradient is taken to.
                    probs.requires_grad_(True)
                # Kept by reference only: autograd saves these probabilities anyway.
                self.probs[layer] = probs
        out = torch.matmul(probs.to(value.dtype), value)
        return out.transpose(1, 2).contiguous(), probs

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


def _addrop_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The registered attention function: stock SDPA unless the hook wants this layer."""
    hook: AttentionHook | None = getattr(module, "addrop_hook", None)
    if hook is None or not hook._explicit(module.layer_idx):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    return hook.attend(module, query, key, value, attention_mask, dropout, scaling)


def _register() -> None:
    AttentionInterface.register(ADDROP_ATTENTION, _addrop_attention)
    AttentionMaskInterface.register(ADDROP_ATTENTION, sdpa_mask)


def _self_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The encoder's self-attention modules (they carry ``layer_idx``)."""
    found = [
        m
        for name, m in model.named_modules()
        if name.endswith("attention.self") and hasattr(m, "layer_idx")
    ]
    return sorted(found, key=lambda m: m.layer_idx)


def attach_attention_hook(model: PreTrainedModel, layers: list[int] | str) -> AttentionHook:
    """Route ``model``'s attention through the AD-DROP hook for ``layers``.

    Refuses model types other than :data:`SUPPORTED_MODEL_TYPES` and layer indices beyond the
    model's depth with a one-line :class:`ModelError`. A model carries one hook at a time
    (``model.addrop_hook``); attaching again replaces it.
    """
    config = model.config
    where = getattr(config, "_name_or_path", "") or config.model_type
    problem = _model_type_problem(config.model_type, where)
    if problem:
        raise ModelError(problem)
    problems = _layer_problems(layers, config.num_hidden_layers, where)
    if problems:
        raise ModelError(*problems)
    modules = _self_attention_modules(model)
    if [m.layer_idx for m in modules] != list(range(config.num_hidden_layers)):
        raise ModelError(
            f"model: {where}: could not find one self-attention module per layer; "
            "this transformers version lays the model out differently than addrop expects"
        )
    _register()
    hook = AttentionHook(resolve_layers(layers, config.num_hidden_layers))
    for module in modules:
        module.addrop_hook = hook
    model.addrop_hook = hook
    model.set_attn_implementation(ADDROP_ATTENTION)
    return hook
