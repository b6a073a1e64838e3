"""AD-DROP (docs/algorithm.md): attribution pass, candidate region, masked second pass.

One AD-DROP step: a first pass in train mode records the target layers' attention
probabilities; the attribution (gradient of the pseudo- or gold-label logit, integrated gradient,
attention itself, or nothing for the random control) ranks each row's real keys; a boolean mask
per target layer drops candidates with probability q; the second pass applies the masks and its
loss is the one returned. Gradients for attribution are taken with ``torch.autograd.grad`` on a
pass whose parameters are frozen, so no parameter gradient is ever computed or accumulated there,
and the backward stops at the first target layer's attention.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from addrop_cli.methods import addrop_ops as ops
from addrop_cli.methods.base import Method, StepOutput, model_inputs, task_loss
from addrop_cli.methods.config import AddropParams
from addrop_cli.models.attention import AttentionHook, attach_attention_hook


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring grad for the block: the pass records no weight gradients and
    saves fewer activations; the flags are restored even on error."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode (no dropout) for the block; its mode is restored even on error."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class AddropMethod(Method):
    """AD-DROP with cross-tuning; see the module docstring and docs/algorithm.md."""

    name = "addrop"

    def __init__(
        self, params: AddropParams, *, is_regression: bool, seed: int, device: torch.device
    ) -> None:
        super().__init__(is_regression=is_regression)
        self.params = params
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.hook: AttentionHook | None = None
        self.active = ops.is_addrop_epoch(0, params.cross_tuning)

    # ----------------------------------------------------------------- interface

    def attach(self, model: nn.Module) -> None:
        self.hook = attach_attention_hook(model, self.params.layers)

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self.active = ops.is_addrop_epoch(epoch, self.params.cross_tuning)

    def epoch_stats(self) -> dict[str, float]:
        return {**super().epoch_stats(), "addrop_epoch": float(self.active)}

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        if not self.active:
            return self.plain_step(model, batch)
        hook = self._hook_for(model)
        inputs, labels = model_inputs(batch), batch["labels"]
        key_real = self._key_real(inputs)
        scores, forwards, backwards = self.attribution(model, inputs, labels)
        masks = self.masks(scores, key_real, self._shape(model, inputs))
        with hook.masking(masks):
            logits = model(**inputs).logits
        loss = task_loss(logits, labels, self.is_regression)
        fractions = {
            f"dropped_frac_l{layer}": ops.dropped_fraction(mask, key_real)
            for layer, mask in masks.items()
        }
        self.stats.add(forward_passes=forwards + 1, backward_passes=backwards + 1, **fractions)
        return StepOutput(loss=loss, logits=logits.detach())

    # ----------------------------------------------------------------- the steps

    def attribution(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[dict[int, torch.Tensor | None], int, int]:
        """Attribution scores per target layer, and the forward and backward passes spent.

        The first pass runs in the model's current (train) mode, so ordinary dropout is on.
        """
        hook = self._hook_for(model)
        layers = hook.layers
        kind = self.params.attribution
        if kind == "random":
            return dict.fromkeys(layers), 0, 0
        if kind == "attention":
            return {**self._recorded(model, inputs)}, 1, 0
        if kind == "integrated_gradient":
            # Dropout-free: the baseline attention and every step run in eval mode, so no
            # dropout zero enters the product (such a position could never be a candidate).
            with evaluation_mode(model):
                attention = self._recorded(model, inputs)
                scores = {
                    layer: self._integrated(model, inputs, labels, layer, attention[layer])
                    for layer in layers
                }
            steps = self.params.ig_steps * len(layers)
            return scores, 1 + steps, steps
        with torch.enable_grad(), frozen_parameters(model), hook.recording(leaf_grad=True) as probs:
            logits = model(**inputs).logits
        grads = torch.autograd.grad(
            self._objective(logits, labels), [probs[layer] for layer in layers]
        )
        return dict(zip(layers, grads, strict=True)), 1, 1

    def masks(
        self,
        scores: dict[int, torch.Tensor | None],
        key_real: torch.Tensor,
        shape: torch.Size,
    ) -> dict[int, torch.Tensor]:
        """One boolean drop mask per target layer, drawn from the method's own generator."""
        p = self.params
        return {
            layer: ops.drop_mask(
                s, key_real, p=p.p, q=p.q, generator=self.generator, drop=p.drop, shape=shape
            )
            for layer, s in scores.items()
        }

    def _recorded(
        self, model: nn.Module, inputs: dict[str, torch.Tensor]
    ) -> dict[int, torch.Tensor]:
        """The target layers' attention probabilities of one pass in the model's current mode."""
        hook = self._hook_for(model)
        with torch.no_grad(), hook.recording() as probs:
            model(**inputs)
        return {layer: probs[layer] for layer in hook.layers}

    def _integrated(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        labels: torch.Tensor,
        layer: int,
        attention: torch.Tensor,
    ) -> torch.Tensor:
        """Integrated gradient for one layer: m passes with its attention scaled by k/m.

        ``ig: standard`` differentiates at the scaled attention, ``reference`` w.r.t. the
        unscaled one (docs/algorithm.md); the label is recomputed per step unless it is gold.
        """
        hook = self._hook_for(model)
        steps = self.params.ig_steps
        grad_sum = torch.zeros_like(attention, dtype=torch.float32)
        for k in range(1, steps + 1):
            leaf, used = ops.integrated_step(attention, k / steps, self.params.ig)
            with torch.enable_grad(), frozen_parameters(model), hook.replacing({layer: used}):
                logits = model(**inputs).logits
            (grad,) = torch.autograd.grad(self._objective(logits, labels), leaf)
            grad_sum += grad.float()
        return ops.integrated_attribution(attention.float(), grad_sum, steps)

    # ----------------------------------------------------------------- helpers

    def _objective(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.is_regression:
            return ops.regression_objective(logits, labels)
        if self.params.labels == "gold":
            return ops.gold_label_objective(logits, labels)
        return ops.pseudo_label_objective(logits)

    def _hook_for(self, model: nn.Module) -> AttentionHook:
        if self.hook is None or getattr(model, "addrop_hook", None) is not self.hook:
            self.attach(model)
        assert self.hook is not None
        return self.hook

    @staticmethod
    def _key_real(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs.get("attention_mask")
        if mask is None:
            return torch.ones_like(inputs["input_ids"], dtype=torch.bool)
        return mask.bool()

    @staticmethod
    def _shape(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Size:
        batch, length = inputs["input_ids"].shape
        return torch.Size((batch, model.config.num_attention_heads, length, length))
