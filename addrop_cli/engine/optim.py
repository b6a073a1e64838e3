"""The optimiser and the learning-rate schedule of a run."""

from __future__ import annotations

import torch

from addrop_cli.models.layerwise import parameter_depths
from addrop_cli.spec.schema import TrainSpec


def _decays(name: str, param: torch.nn.Parameter) -> bool:
    """Biases and LayerNorm weights are not decayed (the usual no-decay group)."""
    lowered = name.lower()
    return not (param.ndim < 2 or "layernorm" in lowered or "layer_norm" in lowered)


def build_optimizer(model: torch.nn.Module, train: TrainSpec) -> torch.optim.AdamW:
    """AdamW with the usual no-decay group. With ``train.layer_lr_decay`` below 1 each depth
    (head and pooler, every layer, the embeddings) has its own pair of groups at
    lr x decay^depth (:func:`~addrop_cli.models.layerwise.parameter_depths`), head first."""
    depths = parameter_depths(model) if train.layer_lr_decay != 1.0 else {}
    grouped: dict[tuple[int, bool], list[torch.nn.Parameter]] = {(0, True): [], (0, False): []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            grouped.setdefault((depths.get(name, 0), _decays(name, param)), []).append(param)
    groups = [
        {
            "params": params,
            "weight_decay": train.weight_decay if decays else 0.0,
            "lr": train.lr * train.layer_lr_decay**depth,
        }
        for (depth, decays), params in sorted(grouped.items(), key=lambda g: (g[0][0], not g[0][1]))
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
