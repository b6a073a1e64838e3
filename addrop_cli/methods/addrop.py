"""The CLI's ``addrop`` method: a thin adapter over the library step (:mod:`.api`).

The training loop builds the method before the model exists (its mask generator lives on the
run's device, seeded from the run's seed, separate from data order and head initialisation),
attaches it once the model is loaded, and calls :meth:`AddropMethod.training_step`. Everything
AD-DROP does happens in :meth:`AddropHandle.step <addrop_cli.methods.api.AddropHandle.step>`.
"""

from __future__ import annotations

import torch
from torch import nn

from addrop_cli.methods.api import AddropHandle, attach_addrop
from addrop_cli.methods.base import Method, StepOutput
from addrop_cli.methods.config import AddropParams


class AddropMethod(Method):
    """AD-DROP with cross-tuning; see docs/algorithm.md and :mod:`addrop_cli.methods.api`."""

    params: AddropParams

    def __init__(
        self, params: AddropParams, *, is_regression: bool, seed: int, device: torch.device
    ) -> None:
        super().__init__(params, is_regression=is_regression, seed=seed, device=device)
        self.seed = seed
        self.generator = self.own_generator(seed, device)
        self.handle: AddropHandle | None = None

    def attach(self, model: nn.Module) -> None:
        self.handle = attach_addrop(
            model,
            self.params,
            seed=self.seed,
            generator=self.generator,
            is_regression=self.is_regression,
            replace=True,  # the engine may hand over a model another handle hooked
        )
        self.handle.set_epoch(self.epoch)

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        if self.handle is not None:
            self.handle.set_epoch(epoch)

    def epoch_stats(self) -> dict[str, float]:
        active = self.params.active_in(self.epoch)
        return {**super().epoch_stats(), "addrop_epoch": float(active)}

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        step = self.handle_for(model).step(batch)
        self.stats.add(**step.stats)
        return StepOutput(loss=step.loss, logits=step.logits)

    def handle_for(self, model: nn.Module) -> AddropHandle:
        """The handle on ``model``, attaching first if the model carries another (or none)."""
        if self.handle is None or getattr(model, "addrop_hook", None) is not self.handle.hook:
            self.attach(model)
        assert self.handle is not None
        return self.handle
