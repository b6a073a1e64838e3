"""A rough estimate of one training run's accelerator memory, from the model's config alone.

Used to pick how many runs share a GPU (``executor.runs_per_gpu: auto``). It errs high: a run
that still does not fit fails alone with advice (``engine.failures``), never its neighbours.
"""

from __future__ import annotations

from typing import Any

# CUDA context, cuBLAS workspaces and the caching allocator's slack, per process
PROCESS_OVERHEAD = 1 << 30
# fp32 weights, gradients and AdamW's two moments (mixed precision keeps fp32 master weights)
BYTES_PER_PARAMETER = 16


def parameter_count(config: Any) -> int:
    """Parameters of the sequence-classification model ``config`` describes (no weights read)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return sum(p.numel() for p in model.parameters())


def activation_bytes(
    config: Any, batch_size: int, length: int, *, mixed_precision: bool, passes: int
) -> int:
    """Activations kept for backward: per layer about ``b s (34 h + 5 a s)`` bytes in half
    precision (Korthikanti et al., 2022), twice that in fp32, times the forward passes a step
    keeps alive (a method's ``forward_graphs``: AD-DROP's attribution and masked passes, R-Drop's
    two dropout passes)."""
    hidden = config.hidden_size
    heads = config.num_attention_heads
    per_layer = batch_size * length * (34 * hidden + 5 * heads * length)
    scale = 1 if mixed_precision else 2
    return config.num_hidden_layers * per_layer * scale * passes


def run_memory_bytes(
    config: Any, batch_size: int, length: int, *, mixed_precision: bool, passes: int = 1
) -> int:
    """One run's estimated peak: optimiser state, activations, and the process's overhead."""
    state = BYTES_PER_PARAMETER * parameter_count(config)
    acts = activation_bytes(
        config, batch_size, length, mixed_precision=mixed_precision, passes=passes
    )
    return state + acts + PROCESS_OVERHEAD
