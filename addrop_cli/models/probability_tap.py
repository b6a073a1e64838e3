"""Hook kind 2: a tap on the softmax output, for families outside the attention registry.

DeBERTa's disentangled attention (content-to-position and position-to-content terms added to
the scores) computes its softmax inline and never consults transformers' attention-function
registry. What it does expose is the module it calls on the probabilities right after the
softmax: ``self.dropout`` (attention-probability dropout). A :class:`ProbabilityTap` replaces that
module in the target layers only. Outside an AD-DROP block it just calls the original dropout,
so the model is bit-identical to the stock one; inside one it records, replaces, or masks the
probabilities. Masking happens after the softmax: the dropped keys are zeroed and each row is
renormalised, which is the softmax with those logits at -inf (the dropped probabilities are
exactly 0, the rows sum to 1 up to rounding). Untargeted layers are not touched at all.
"""

from __future__ import annotations

import torch
from torch import nn

from addrop_cli.models.hook import AttentionHook, renormalised


class ProbabilityTap(nn.Module):
    """Stands in for one layer's attention-probability dropout module."""

    def __init__(self, dropout: nn.Module, hook: AttentionHook, layer: int) -> None:
        super().__init__()
        self.dropout = dropout
        self.layer = layer
        # Not a submodule attribute: the hook is plain state shared by every tapped layer.
        self.__dict__["hook"] = hook

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        hook: AttentionHook = self.__dict__["hook"]
        if not hook.explicit(self.layer):
            return self.dropout(probs)
        return hook.probabilities(
            self.layer,
            lambda drop: probs if drop is None else renormalised(probs, drop),
            self.dropout,
        )


def install_taps(modules: list[nn.Module], hook: AttentionHook) -> None:
    """Tap the ``dropout`` of each attention module (list index = layer), target layers only."""
    for layer, module in enumerate(modules):
        if layer in hook.layers and not isinstance(module.dropout, ProbabilityTap):
            module.dropout = ProbabilityTap(module.dropout, hook, layer)


def remove_taps(modules: list[nn.Module]) -> None:
    """Put the original dropout modules back."""
    for module in modules:
        if isinstance(module.dropout, ProbabilityTap):
            module.dropout = module.dropout.dropout
