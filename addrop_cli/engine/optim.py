"""The optimiser and the learning-rate schedule of a run."""

from __future__ import annotations

import torch

from addrop_cli.spec.schema import TrainSpec


def build_optimizer(model: torch.nn.Module, train: TrainSpec) -> torch.optim.AdamW:
    """AdamW with the usual no-decay group: biases and LayerNorm weights are not decayed."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lowered = name.lower()
        if param.ndim < 2 or "layernorm" in lowered or "layer_norm" in lowered:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # the fused kernel (one op for all parameters) is what transformers' Trainer uses by default;
    # it exists for CPU and CUDA tensors
    device = next(model.parameters()).device
    return torch.optim.AdamW(groups, lr=train.lr, fused=device.type in ("cpu", "cuda"))


def build_schedule(
    optimizer: torch.optim.Optimizer, train: TrainSpec, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """constant (the AD-DROP reference) or linear decay, each with optional linear warmup:
    transformers' own schedules, so a run's learning rate is the Trainer's at every step."""
    from transformers import get_scheduler

    warmup = int(train.warmup_ratio * total_steps)
    name = "constant_with_warmup" if train.schedule == "constant" and warmup else train.schedule
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)  # type: ignore[return-value]
