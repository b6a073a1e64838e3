"""Hook kind 1: transformers' attention-function registry (BERT-like families, ModernBERT and
the decoders).

A family whose attention module calls ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``
is switched to the implementation registered here under :data:`ADDROP_ATTENTION`. It hands
untargeted layers (and every layer outside an AD-DROP block) straight to the stock fused SDPA
function, and computes attention explicitly only in the target layers while the model's
:class:`~addrop_cli.models.hook.AttentionHook` asks for it.

transformers 5 builds the padding mask per attention implementation, so the registered name also
gets a mask builder: the stock SDPA one (boolean, True = attend; for ModernBERT's local layers it
also carries the sliding window). Untargeted layers therefore see exactly the mask the stock
``sdpa`` model sees, and the explicit path turns it into the score dtype's minimum. Where the
builder returns no mask for a decoder (no padding: SDPA's ``is_causal`` does the work), the
explicit path builds the causal one; grouped-query keys and values are repeated per head as SDPA
does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations import sdpa_attention
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from addrop_cli.models.hook import AttentionHook, explicit_attention

ADDROP_ATTENTION = "addrop"
"""The name the hook registers in transformers' attention and mask registries."""


def stock_attention(module: nn.Module, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
    """The fused SDPA path every layer takes unless the hook wants it (a seam for tests)."""
    return sdpa_attention.sdpa_attention_forward(module, *args, **kwargs)  # type: ignore[arg-type]


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
    layer = hook.layer_of(module) if hook is not None and hook.mode != "off" else -1
    if hook is None or not hook.explicit(layer):
        return stock_attention(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = query.size(-1) ** -0.5 if scaling is None else scaling
    groups = getattr(module, "num_key_value_groups", 1)  # grouped-query attention (decoders)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    mask = attention_mask if attention_mask is not None else _causal(module, query, kwargs)
    probs = hook.probabilities(
        layer,
        lambda drop: explicit_attention(query, key, mask, scale, drop),
        lambda p: F.dropout(p, p=dropout, training=module.training),
    )
    out = torch.matmul(probs.to(value.dtype), value)
    return out.transpose(1, 2).contiguous(), probs


def _causal(module: nn.Module, query: torch.Tensor, kwargs: dict) -> torch.Tensor | None:
    """The mask SDPA's ``is_causal`` stands for when transformers skipped building one (a
    decoder batch without padding), as ``sdpa_attention_forward`` decides it; else None."""
    causal = kwargs.get("is_causal")
    causal = getattr(module, "is_causal", True) if causal is None else causal
    length = query.shape[2]
    if not (causal and length > 1):
        return None
    return torch.ones(length, length, dtype=torch.bool, device=query.device).tril()


def register() -> None:
    """Make :data:`ADDROP_ATTENTION` a valid ``attn_implementation`` (idempotent)."""
    AttentionInterface.register(ADDROP_ATTENTION, _addrop_attention)
    AttentionMaskInterface.register(ADDROP_ATTENTION, sdpa_mask)
