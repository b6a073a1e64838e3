"""AD-DROP in a transformers ``Trainer`` script: change ``Trainer`` to ``AddropTrainer``.

    trainer = AddropTrainer(model=model, args=args, train_dataset=train, ...,
                            addrop=AddropConfig(p=0.3, q=0.3, layers=[0]))

:class:`AddropTrainerMixin` overrides ``compute_loss``: in training, on AD-DROP epochs, the loss
is the library step's (:meth:`AddropHandle.step <addrop_cli.methods.api.AddropHandle.step>`);
otherwise (evaluation, plain cross-tuning epochs, a disabled handle) it is the stock Trainer's.
:class:`AddropCallback` tells the handle which epoch starts (cross-tuning) and stops it after
training. The mixin's ``log`` adds the handle's per-step means (``addrop_dropped_frac_l0``, ...,
``addrop_epoch``) to every training log, so they reach ``log_history`` and every ``report_to``
integration like the loss does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.modeling_outputs import SequenceClassifierOutput

from addrop_cli.methods.api import AddropConfig, AddropHandle, attach_addrop


class AddropCallback(TrainerCallback):
    """Cross-tuning for a handle: the Trainer's epoch decides whether AD-DROP runs."""

    def __init__(self, handle: AddropHandle) -> None:
        self.handle = handle

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # state.epoch is the float epoch reached so far (fractional when resumed mid-epoch)
        self.handle.set_epoch(int(state.epoch or 0))


class AddropTrainerMixin:
    """Mix into a ``Trainer`` (subclass) to run AD-DROP steps; see the module docstring."""

    addrop: AddropHandle

    def setup_addrop(self, addrop: AddropHandle | AddropConfig | dict | None) -> None:
        """Attach AD-DROP to ``self.model`` (or adopt a handle) and register the callback.

        A config gets a mask generator seeded with ``args.seed``.
        """
        trainer: Trainer = self  # type: ignore[assignment]
        if isinstance(addrop, AddropHandle):
            self.addrop = addrop
        else:
            self.addrop = attach_addrop(trainer.model, addrop, seed=trainer.args.seed)
        trainer.add_callback(AddropCallback(self.addrop))

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        if not (model.training and self.addrop.active and "labels" in inputs):
            return super().compute_loss(  # type: ignore[misc]
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        step = self.addrop.step(inputs, model=model)
        if return_outputs:
            return step.loss, SequenceClassifierOutput(loss=step.loss, logits=step.logits)
        return step.loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # a training log: add AD-DROP's means over the steps it covers
            stats = self.addrop.take_stats()
            logs = {**logs, **{f"addrop_{k}": round(v, 6) for k, v in stats.items()}}
            logs["addrop_epoch"] = float(self.addrop.active)
        super().log(logs, *args, **kwargs)  # type: ignore[misc]


class AddropTrainer(AddropTrainerMixin, Trainer):
    """``Trainer`` with AD-DROP: the same arguments, plus ``addrop`` (a config or a handle;
    the paper's defaults when omitted)."""

    def __init__(
        self, *args: Any, addrop: AddropHandle | AddropConfig | dict | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.setup_addrop(addrop)
