"""Which keys a query row may attend to: AD-DROP's candidate positions come from these.

An encoder's row attends to every real (non-padding) key, so the allowed keys are the batch's
padding mask, B x T. A decoder's row attends to its own and earlier real keys (and, in Mistral,
only the last ``sliding_window`` of them), so they are B x T x T (example, query row, key); a
padding query row has none. Right padding, as addrop batches, keeps every real token's position
ids 0..n-1 and leaves the last real token where the decoder's head pools it (the last token
that is not the pad id). ``tests/models/test_decoders.py`` checks these against the positions the
model's own attention gives weight to.
"""

from __future__ import annotations

from typing import Any

import torch

from addrop_cli.models.families import family_of


def sliding_window(config: Any) -> int | None:
    """The window every layer of the model applies (Mistral), or None.

    Models that mix windowed and full layers (``layer_types``, Qwen2/Qwen3) only let AD-DROP
    target their full layers, so no window applies to a target layer there.
    """
    if getattr(config, "layer_types", None):
        return None
    window = getattr(config, "sliding_window", None)
    return window if isinstance(window, int) else None


def allowed_keys(config: Any, attention_mask: torch.Tensor) -> torch.Tensor:
    """B x T real keys (encoders), or B x T x T allowed (query, key) pairs (causal families)."""
    real = attention_mask.bool()
    family = family_of(config.model_type)
    if family is None or not family.causal:
        return real
    position = torch.arange(real.shape[-1], device=real.device)
    rule = position[None, :] <= position[:, None]  # [query, key]: the key is not in the future
    window = sliding_window(config)
    if window is not None:
        rule &= position[None, :] > position[:, None] - window
    return real[:, :, None] & real[:, None, :] & rule
