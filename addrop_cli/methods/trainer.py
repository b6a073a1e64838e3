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

Any other method (R-Drop, Child-Tuning, or AD-DROP itself) runs through :class:`MethodTrainer`,
which takes the method's configuration and calls the same :class:`~addrop_cli.methods.base.Method`
step and hooks as ``addrop run``: its pass over the training data before training (Child-Tuning_D's
Fisher information) and its gradient edit after clipping, before the optimiser step:

    trainer = MethodTrainer(model=model, args=args, train_dataset=train, ...,
                            method=RdropParams(alpha=0.5))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.modeling_outputs import SequenceClassifierOutput

from addrop_cli.errors import UsageError
from addrop_cli.methods.api import AddropConfig, AddropHandle, attach_addrop
from addrop_cli.methods.base import Method
from addrop_cli.methods.config import MethodConfig
from addrop_cli.methods.registry import METHODS, build_method


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


class MethodCallback(TrainerCallback):
    """Tells a method which epoch starts (its statistics, AD-DROP's cross-tuning), and lets it
    edit the gradients after clipping, before the optimiser step (Child-Tuning's masks)."""

    def __init__(self, method: Method) -> None:
        self.method = method

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.method.on_epoch_start(int(state.epoch or 0))

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.method.before_optimizer_step(kwargs["model"])


def method_config(method: MethodConfig | dict) -> MethodConfig:
    """A method's configuration, from itself or a dict naming it (``{"method": "rdrop", ...}``)."""
    if isinstance(method, MethodConfig):
        return method
    if not isinstance(method, dict) or method.get("method") not in METHODS:
        raise UsageError(
            f"MethodTrainer: method must be a method's config (e.g. RdropParams(alpha=0.5)) or a "
            f"dict with method: one of {', '.join(METHODS)}; got {method!r}"
        )
    return METHODS[method["method"]].params.model_validate(method)


class MethodTrainer(Trainer):
    """``Trainer`` whose training loss is an addrop method's step (the CLI's own code); the same
    arguments plus ``method`` (a config such as ``RdropParams(alpha=0.5)``, or a dict)."""

    def __init__(self, *args: Any, method: MethodConfig | dict, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        params = method_config(method)
        regression = getattr(self.model.config, "num_labels", 2) == 1
        self.method = build_method(
            params, is_regression=regression, seed=self.args.seed, device=self.args.device
        )
        if self.method.config_overrides():  # dropout rates belong in the model's config
            raise UsageError(
                f"MethodTrainer: {params.method} sets the model's config "
                f"({self.method.config_overrides()}); pass these to from_pretrained and use "
                "method=BaselineParams()"
            )
        self.method.attach(self.model)
        self.add_callback(MethodCallback(self.method))

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """The stock ``train``, after the method's pass over the training data (a Trainer
        checkpoint does not carry the method's state, so a resumed ``train`` repeats it)."""
        self.prepare_method()
        return super().train(*args, **kwargs)

    def prepare_method(self, batches: Iterable[dict[str, torch.Tensor]] | None = None) -> None:
        """The method's pass over ``batches``, by default the Trainer's own training batches."""
        if batches is None:
            batches = (self._prepare_inputs(b) for b in self.get_train_dataloader())
        self.method.prepare(self.model, batches)
        self.model.zero_grad(set_to_none=True)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        if not (model.training and "labels" in inputs):
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        step = self.method.training_step(model, inputs)
        if return_outputs:
            return step.loss, SequenceClassifierOutput(loss=step.loss, logits=step.logits)
        return step.loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # a training log: the method's means over the epoch so far
            stats = self.method.epoch_stats()
            logs = {**logs, **{f"{self.method.name}_{k}": round(v, 6) for k, v in stats.items()}}
        super().log(logs, *args, **kwargs)
