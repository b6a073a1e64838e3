"""Child-Tuning (Xu et al., EMNLP 2021): each optimiser step updates only a child network.

Reference: github.com/alibaba/AliceMind at c17b177e7e100cac5a3bc9f94c177f22238996f4,
``ChildTuning/ChildTuningOptimizer.py`` (the mask, inside AdamW's step, before the moments) and
``ChildTuning/ChildTuningD.py`` (``calculate_fisher``). As there:

- D masks the parameters whose name contains ``layer`` (the encoder layers), with one global
  threshold: the (1 - reserve) percentile of every masked entry's Fisher information (squared
  gradient, each tensor's gradient clipped to norm 1, averaged over the shuffled training
  batches, dropout on); entries at or above it are kept. No rescaling.
- F masks every parameter's gradient with a fresh Bernoulli(reserve) draw, times 1/reserve.

The mask applies after gradient clipping and before the optimiser's moments, as in the
authors' Trainer; docs/methods.md lists where addrop differs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from addrop_cli.methods.base import Method, StepOutput, model_inputs, task_loss
from addrop_cli.methods.config import ChildtuningParams

FISHER_CLIP = 1.0
"""Each tensor's gradient norm is clipped to this before squaring: the authors clip with
``args.max_grad_norm``, transformers' default 1.0 (their run.sh keeps it)."""


def masked_names(model: nn.Module) -> list[str]:
    """The parameters Child-Tuning_D masks: the authors' ``'layer' in name`` (case-sensitive,
    so the embeddings' LayerNorm, the pooler and the head are always updated)."""
    return [n for n, p in model.named_parameters() if "layer" in n and p.requires_grad]


def fisher_information(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], *, is_regression: bool
) -> dict[str, torch.Tensor]:
    """Mean over the batches of each masked entry's squared (per-tensor clipped) gradient."""
    params = dict(model.named_parameters())
    names = masked_names(model)
    fisher = {n: torch.zeros_like(params[n], dtype=torch.float32) for n in names}
    count = 0
    model.train()
    for batch in batches:
        logits = model(**model_inputs(batch)).logits
        task_loss(logits, batch["labels"], is_regression).backward()
        for name in names:
            grad = params[name].grad
            if grad is not None:
                torch.nn.utils.clip_grad_norm_(params[name], FISHER_CLIP)
                fisher[name] += grad.float() ** 2
        model.zero_grad(set_to_none=True)
        count += 1
    return {n: f / max(count, 1) for n, f in fisher.items()}


def fisher_mask(fisher: dict[str, torch.Tensor], reserve: float) -> dict[str, torch.Tensor]:
    """Keep the entries at or above the global (1 - reserve) percentile (numpy's linear
    interpolation, as the authors' ``np.percentile``)."""
    values = torch.cat([f.reshape(-1) for f in fisher.values()]).cpu().numpy()
    polar = float(np.percentile(values, (1 - reserve) * 100))
    return {n: f >= polar for n, f in fisher.items()}


class ChildtuningMethod(Method):
    """Plain steps; the gradients are masked between backward and the optimiser step."""

    params: ChildtuningParams

    def __init__(
        self, params: ChildtuningParams, *, is_regression: bool, seed: int, device: torch.device
    ) -> None:
        super().__init__(params, is_regression=is_regression, seed=seed, device=device)
        self.generator = self.own_generator(seed, device)
        self.mask: dict[str, torch.Tensor] | None = None

    def prepare(self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> None:
        if self.params.mode != "d" or self.mask is not None:
            return
        started = time.perf_counter()
        fisher = fisher_information(model, batches, is_regression=self.is_regression)
        self.mask = fisher_mask(fisher, self.params.reserve)
        self.prepare_seconds = time.perf_counter() - started

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        return self.plain_step(model, batch)

    def before_optimizer_step(self, model: nn.Module) -> None:
        if self.params.mode == "f":
            self._random_masks(model)
            return
        if self.mask is None:
            raise RuntimeError("Child-Tuning_D: prepare(model, batches) must run before training")
        for name, param in model.named_parameters():
            if param.grad is not None and name in self.mask:
                param.grad.mul_(self.mask[name])

    def _random_masks(self, model: nn.Module) -> None:
        reserve = self.params.reserve
        for param in model.parameters():
            if param.grad is not None:
                keep = torch.full_like(param.grad, reserve, dtype=torch.float32)
                keep = torch.bernoulli(keep, generator=self.generator)
                param.grad.mul_(keep.to(param.grad.dtype) / reserve)

    def epoch_stats(self) -> dict[str, float]:
        """The Fisher pass's seconds (D; once per run, repeated in every epoch's record)."""
        extra = {"fisher_seconds": self.prepare_seconds or 0.0} if self.params.mode == "d" else {}
        return {**super().epoch_stats(), **extra}

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "mask": self.mask,
            "fisher_seconds": self.prepare_seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.mask, self.prepare_seconds = state["mask"], state["fisher_seconds"]
