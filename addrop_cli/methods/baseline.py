"""Plain fine-tuning with the model's own dropout."""

from __future__ import annotations

import torch
from torch import nn

from addrop_cli.methods.base import Method, StepOutput
from addrop_cli.methods.config import BaselineParams, DropoutParams


class BaselineMethod(Method):
    """One forward pass, the task loss; the model's config decides its dropout."""

    params: BaselineParams | DropoutParams

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        return self.plain_step(model, batch)
