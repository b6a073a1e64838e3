"""AD-DROP as a library: attach it to a loaded model, then take AD-DROP steps in any loop.

    handle = attach_addrop(model, AddropConfig(p=0.3, q=0.3, layers=[0]), seed=42)
    for epoch in range(epochs):
        handle.set_epoch(epoch)                 # cross-tuning: AD-DROP on odd epochs
        for batch in loader:                    # input_ids, attention_mask, ..., labels
            step = handle.step(batch)           # both passes; step.loss is not yet backpropagated
            step.loss.backward(); optimizer.step(); optimizer.zero_grad()

One AD-DROP step (docs/algorithm.md): a first pass in the model's current (train) mode records
the target layers' attention probabilities; the attribution (gradient of the pseudo- or
gold-label logit, integrated gradient, attention itself, or nothing for the random control)
ranks each row's real keys; a boolean mask per target layer drops candidates with probability q;
the second pass applies the masks and its loss is the one returned. Gradients for attribution
are taken with ``torch.autograd.grad`` on a pass whose parameters are frozen, so no parameter
gradient is ever computed or accumulated there, and the backward stops at the first target
layer's attention.

The CLI's ``addrop`` method (:mod:`addrop_cli.methods.addrop`) and the transformers ``Trainer``
integration (:mod:`addrop_cli.methods.trainer`) both run this step; there is no other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from addrop_cli.errors import UsageError
from addrop_cli.methods import addrop_ops as ops
from addrop_cli.methods import usage
from addrop_cli.methods.base import EpochStats, model_inputs, task_loss
from addrop_cli.methods.config import AddropConfig
from addrop_cli.models.attention import (
    AttentionHook,
    attach_attention_hook,
    detach_attention_hook,
)
from addrop_cli.models.causal import allowed_keys

Scores = dict[int, torch.Tensor | None]


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


@dataclass
class AddropStep:
    """One training step's result."""

    loss: torch.Tensor
    """Scalar task loss of the (second) pass, not yet back-propagated."""
    logits: torch.Tensor
    """The logits the loss came from (detached)."""
    addrop: bool
    """Whether AD-DROP ran (False: disabled, or a plain cross-tuning epoch)."""
    masks: dict[int, torch.Tensor] = field(default_factory=dict)
    """The boolean drop mask (True = dropped) per target layer, B x H x T x T."""
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)
    """``forward_passes``, ``backward_passes`` and ``dropped_frac_l<layer>`` (0-d tensors, so
    reading them is the caller's choice of when to wait for the device)."""


def _is_regression(model: nn.Module) -> bool:
    config = model.config
    return config.problem_type == "regression" or (
        config.problem_type is None and config.num_labels == 1
    )


class AddropHandle:
    """AD-DROP attached to one model: switch it on and off, step, read statistics, detach."""

    def __init__(
        self,
        model: nn.Module,
        config: AddropConfig,
        hook: AttentionHook,
        *,
        seed: int,
        generator: torch.Generator | None,
        is_regression: bool,
    ) -> None:
        self.model = model
        self.config = config
        self.hook = hook
        self.seed = seed
        self.generator = generator
        self.is_regression = is_regression
        self.enabled = True
        self.detached = False
        self.epoch = 0
        self.stats = EpochStats()
        """Per-step statistics accumulated since the last :meth:`take_stats`."""

    # ----------------------------------------------------------------- control

    @property
    def active(self) -> bool:
        """Whether the next training step runs AD-DROP (enabled, and an AD-DROP epoch)."""
        return self.enabled and self.config.active_in(self.epoch)

    def enable(self) -> None:
        self._check_attached("enable")
        self.enabled = True

    def disable(self) -> None:
        """Plain steps from now on (the hook stays attached and idle: stock numbers)."""
        self.enabled = False

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch about to run; with cross-tuning, AD-DROP runs on odd ones."""
        usage.check_epoch(epoch)
        self.epoch = epoch

    def detach(self) -> None:
        """Remove the hook: the model is the stock model again."""
        if getattr(self.model, "addrop_hook", None) is self.hook:  # not another handle's
            detach_attention_hook(self.model)
        self.enabled = False
        self.detached = True

    def _check_attached(self, what: str) -> None:
        if self.detached:
            raise UsageError(
                f"{what}: this handle was detached; attach again with attach_addrop(model, ...) "
                "and use the new handle (or call disable() instead of detach() for plain steps)"
            )

    def take_stats(self) -> dict[str, float]:
        """Per-step means since the last call (dropped fractions, passes), then reset."""
        means = self.stats.means()
        self.stats = EpochStats()
        return means

    # ----------------------------------------------------------------- the step

    def step(self, batch: dict[str, torch.Tensor], model: nn.Module | None = None) -> AddropStep:
        """One training step on ``batch`` (model inputs and ``labels``), AD-DROP when active.

        ``model`` is what to call for the passes (a wrapper of the attached model, e.g. the
        Trainer's); the attached model by default.
        """
        self._check_attached("step")
        usage.check_batch(batch)
        net = self.model if model is None else model
        inputs, labels = model_inputs(batch), batch["labels"]
        if not self.active:
            logits = net(**inputs).logits
            plain: dict[str, torch.Tensor | float] = {"forward_passes": 1, "backward_passes": 1}
            self.stats.add(**plain)
            loss = task_loss(logits, labels, self.is_regression)
            return AddropStep(loss=loss, logits=logits.detach(), addrop=False, stats=plain)
        key_real = self._key_real(inputs)
        scores, forwards, backwards = self.attribution(inputs, labels, net)
        masks = self.masks(scores, key_real, self._shape(inputs))
        with self.hook.masking(masks):
            logits = net(**inputs).logits
        loss = task_loss(logits, labels, self.is_regression)
        stats: dict[str, torch.Tensor | float] = {
            "forward_passes": forwards + 1,
            "backward_passes": backwards + 1,
            **{
                f"dropped_frac_l{layer}": ops.dropped_fraction(mask, key_real)
                for layer, mask in masks.items()
            },
        }
        self.stats.add(**stats)
        return AddropStep(loss=loss, logits=logits.detach(), addrop=True, masks=masks, stats=stats)

    def attribution(
        self,
        inputs: dict[str, torch.Tensor],
        labels: torch.Tensor,
        model: nn.Module | None = None,
    ) -> tuple[Scores, int, int]:
        """Attribution scores per target layer, and the forward and backward passes spent.

        The first pass runs in the model's current (train) mode, so ordinary dropout is on.
        """
        net = self.model if model is None else model
        hook, layers, kind = self.hook, self.hook.layers, self.config.attribution
        if kind == "random":
            return dict.fromkeys(layers), 0, 0
        if kind == "attention":
            return {**self._recorded(net, inputs)}, 1, 0
        if kind == "integrated_gradient":
            # Dropout-free: the baseline attention and every step run in eval mode, so no
            # dropout zero enters the product (such a position could never be a candidate).
            with evaluation_mode(net):
                attention = self._recorded(net, inputs)
                scores: Scores = {
                    layer: self._integrated(net, inputs, labels, layer, attention[layer])
                    for layer in layers
                }
            steps = self.config.ig_steps * len(layers)
            return scores, 1 + steps, steps
        with torch.enable_grad(), frozen_parameters(net), hook.recording(leaf_grad=True) as probs:
            logits = net(**inputs).logits
        grads = torch.autograd.grad(
            self._objective(logits, labels), [probs[layer] for layer in layers]
        )
        return dict(zip(layers, grads, strict=True)), 1, 1

    def masks(
        self, scores: Scores, key_real: torch.Tensor, shape: torch.Size
    ) -> dict[int, torch.Tensor]:
        """One boolean drop mask per target layer, drawn from the handle's own generator."""
        c = self.config
        generator = self._generator(key_real.device)
        return {
            layer: ops.drop_mask(
                s, key_real, p=c.p, q=c.q, generator=generator, drop=c.drop, shape=shape
            )
            for layer, s in scores.items()
        }

    # ----------------------------------------------------------------- helpers

    def _recorded(
        self, model: nn.Module, inputs: dict[str, torch.Tensor]
    ) -> dict[int, torch.Tensor]:
        """The target layers' attention probabilities of one pass in the model's current mode."""
        with torch.no_grad(), self.hook.recording() as probs:
            model(**inputs)
        return {layer: probs[layer] for layer in self.hook.layers}

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
        steps = self.config.ig_steps
        grad_sum = torch.zeros_like(attention, dtype=torch.float32)
        for k in range(1, steps + 1):
            leaf, used = ops.integrated_step(attention, k / steps, self.config.ig)
            with torch.enable_grad(), frozen_parameters(model), self.hook.replacing({layer: used}):
                logits = model(**inputs).logits
            (grad,) = torch.autograd.grad(self._objective(logits, labels), leaf)
            grad_sum += grad.float()
        return ops.integrated_attribution(attention.float(), grad_sum, steps)

    def _objective(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.is_regression:
            return ops.regression_objective(logits, labels)
        if self.config.labels == "gold":
            return ops.gold_label_objective(logits, labels)
        return ops.pseudo_label_objective(logits)

    def _generator(self, device: torch.device) -> torch.Generator:
        """The mask generator: the one given, else one seeded with ``seed`` on first use, on
        the batch's device (so a model moved after attaching draws its masks where it runs)."""
        if self.generator is None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.seed)
        return self.generator

    def _key_real(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The keys each row may attend to: B x T real keys (encoders), or B x T x T for causal
        families (own and earlier real keys); AD-DROP's candidates are among these."""
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(inputs["input_ids"], dtype=torch.bool)
        return allowed_keys(self.model.config, mask)

    def _shape(self, inputs: dict[str, torch.Tensor]) -> torch.Size:
        batch, length = inputs["input_ids"].shape
        return torch.Size((batch, self.model.config.num_attention_heads, length, length))


def attach_addrop(
    model: nn.Module,
    config: AddropConfig | dict | None = None,
    *,
    seed: int = 0,
    generator: torch.Generator | None = None,
    is_regression: bool | None = None,
    replace: bool = False,
) -> AddropHandle:
    """Attach AD-DROP to a loaded sequence-classification ``model`` and return its handle.

    ``config`` defaults to the paper's defaults (gradient attribution, layer 0, p 0.3, q 0.2,
    cross-tuning); a dict is validated into an :class:`AddropConfig`. Masks come from
    ``generator`` if given, else from a generator seeded with ``seed``. ``is_regression``
    defaults to the model's config (``problem_type``, one label). A model that already carries
    AD-DROP is refused unless ``replace``. Refuses model families and layers it cannot hook with
    a one-line :class:`~addrop_cli.errors.ModelError` (``addrop list models`` shows the
    families), and other misuse (not a model, no task head, a bad seed or config) with a
    :class:`~addrop_cli.errors.UsageError`.
    """
    usage.check_model(model, replace=replace)
    usage.check_seed(seed, generator)
    config = usage.checked_config(config)
    hook = attach_attention_hook(model, config.layers)  # type: ignore[arg-type]
    return AddropHandle(
        model,
        config,
        hook,
        seed=seed,
        generator=generator,
        is_regression=_is_regression(model) if is_regression is None else is_regression,
    )
