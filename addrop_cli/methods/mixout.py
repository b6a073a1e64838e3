"""Mixout (Lee et al., ICLR 2020): each linear layer mixes its weights with a target (the weights
it started fine-tuning from), rescaled so that the expected weights are the current ones.

The layer is the authors' ``MixLinear`` (github.com/bloodwass/mixout at
18f377d2744597eb7716fc46cf90d87d7db66186, ``mixout/mixout.py``, ``mixout/mixlinear.py``); which
layers and what happens to dropout is the BERT GLUE recipe that ships that layer
(github.com/asappresearch/revisit-bert-finetuning at 0aa4f4e, ``run_glue.py --mixout``): every
``nn.Linear`` (the classifier and the pooler too) mixes with its own weights at the start, every
dropout rate is set to 0, and at p = 0 nothing changes. docs/methods.md lists the deviations.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from addrop_cli.methods.base import Method, StepOutput
from addrop_cli.methods.config import MixoutParams


class _Mix(torch.autograd.Function):
    """((1 - keep) x target + keep x weight - p x target) / (1 - p); at p = 1 the target.

    The gradient is the authors': the incoming gradient times ``keep``, without the forward's
    1 / (1 - p) factor (their ``Mixout.backward``)."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, target: torch.Tensor, keep: torch.Tensor, p: float):
        ctx.save_for_backward(keep)
        if p == 1:
            return target.clone()
        return ((1 - keep) * target + keep * weight - p * target) / (1 - p)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad * keep, None, None, None


def mix_weights(
    weight: torch.Tensor, target: torch.Tensor, keep: torch.Tensor, p: float
) -> torch.Tensor:
    """The mixed weights for a ``keep`` mask (1: the current weight, 0: the target)."""
    return _Mix.apply(weight, target, keep.expand_as(weight), p)


class MixLinear(nn.Linear):
    """``nn.Linear`` whose weight is mixed with ``target`` in training; the bias is not mixed,
    and evaluation uses the weight as it is (deterministic)."""

    p: float
    target: torch.Tensor

    @classmethod
    def wrapping(cls, linear: nn.Linear, p: float) -> MixLinear:
        """The same parameters (not copies) behind a MixLinear, its target a frozen copy of the
        weight now. Built without an initialiser, so no random number is drawn."""
        weight = linear.weight
        mixed = nn.utils.skip_init(
            cls, linear.in_features, linear.out_features, bias=linear.bias is not None,
            device=weight.device, dtype=weight.dtype,
        )  # fmt: skip
        mixed.weight, mixed.bias = weight, linear.bias
        mixed.p = p
        # not persistent: checkpoints and saved models keep the stock keys; setup re-creates it
        mixed.register_buffer("target", weight.detach().clone(), persistent=False)
        mixed.train(linear.training)
        return mixed

    def draw_keep(self) -> torch.Tensor:
        """One Bernoulli(1 - p) draw per input feature, shared by every output row: the authors'
        ``noise[0].bernoulli_(1 - p)`` repeated over the rows (global generator, as dropout)."""
        return self.weight.new_empty(self.weight.shape[1:]).bernoulli_(1 - self.p)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.p == 0 or not self.training:
            return F.linear(input, self.weight, self.bias)
        return F.linear(input, mix_weights(self.weight, self.target, self.draw_keep(), self.p),
                        self.bias)  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mixout={self.p}"


def apply_mixout(model: nn.Module, p: float) -> int:
    """The recipe: every ``nn.Linear`` becomes a :class:`MixLinear` mixing with its present
    weights, every dropout rate 0. Returns how many layers were wrapped."""
    wrapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Dropout):
                child.p = 0.0
            if isinstance(child, nn.Linear) and not isinstance(child, MixLinear):
                setattr(parent, name, MixLinear.wrapping(child, p))
                wrapped += 1
    return wrapped


class MixoutMethod(Method):
    """The baseline step on a model whose linear layers are :class:`MixLinear`; at p = 0 the
    model is left as it is (the recipe's ``if args.mixout > 0``)."""

    params: MixoutParams

    def config_overrides(self) -> dict:
        if self.params.p == 0:
            return {}
        return {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}

    def attach(self, model: nn.Module) -> None:
        if self.params.p > 0:
            apply_mixout(model, self.params.p)

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        return self.plain_step(model, batch)  # the masks are drawn inside the layers
