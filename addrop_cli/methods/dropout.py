"""Fine-tuning with hidden and attention-probability dropout rates chosen in the spec."""

from __future__ import annotations

from addrop_cli.methods.baseline import BaselineMethod
from addrop_cli.methods.config import DropoutParams


class DropoutMethod(BaselineMethod):
    """The baseline step, on a model whose config carries the spec's dropout rates."""

    params: DropoutParams

    def config_overrides(self) -> dict:
        return {
            "hidden_dropout_prob": self.params.hidden_dropout,
            "attention_probs_dropout_prob": self.params.attention_dropout,
        }
