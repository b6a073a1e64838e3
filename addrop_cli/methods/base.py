"""The one interface every fine-tuning method implements.

The training loop calls :meth:`Method.training_step` and back-propagates the loss it returns;
it never knows which method runs. A method owns its per-epoch statistics, so the loop can log
whatever the method thinks a user needs to trust it. Every hook a driver (the loop,
:class:`~addrop_cli.methods.trainer.MethodTrainer`) may call is declared here, with the
constructor the registry calls; the facts a caller needs before a method exists (its forward
passes kept alive, the layers it hooks, the epochs it is active in) are on its config
(:class:`~addrop_cli.methods.config.MethodConfig`).
``tests/methods/test_method_conformance.py`` checks every registered method against this contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from addrop_cli.methods.config import MethodConfig

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class StepOutput:
    """What a training step hands back: the loss to back-propagate, and its logits."""

    loss: torch.Tensor
    """Scalar, not yet back-propagated: the loop calls backward on it."""
    logits: torch.Tensor
    """The logits the loss came from (detached)."""


def task_loss(logits: torch.Tensor, labels: torch.Tensor, is_regression: bool) -> torch.Tensor:
    """Cross-entropy for classification, MSE on the squeezed logits for regression (fp32)."""
    if is_regression:
        return F.mse_loss(logits.float().squeeze(-1), labels.float())
    return F.cross_entropy(logits.float(), labels.long())


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without its labels: what the model's forward takes."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUTS}


class EpochStats:
    """Per-step numbers accumulated since the epoch started, reported as per-step means."""

    def __init__(self) -> None:
        self.sums: dict[str, float | torch.Tensor] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.last: dict[str, float | torch.Tensor] = {}

    def add(self, **values: float | torch.Tensor) -> None:
        """Tensors are summed where they live and read back only in :meth:`means`."""
        for key, value in values.items():
            value = value.detach() if torch.is_tensor(value) else value
            self.sums[key] = self.sums[key] + value
            self.counts[key] += 1
            self.last[key] = value

    def means(self) -> dict[str, float]:
        return {k: float(self.sums[k]) / self.counts[k] for k in self.sums if self.counts[k]}

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.sums.update(state["sums"])
        self.counts.update(state["counts"])

    def latest(self) -> dict[str, float]:
        """The numbers of the last :meth:`add` (tensors read back in one copy)."""
        tensors = {k: v for k, v in self.last.items() if torch.is_tensor(v)}
        values = (
            torch.stack([v.float().reshape(()) for v in tensors.values()]).tolist()
            if tensors
            else []
        )
        return {k: float(v) for k, v in self.last.items() if k not in tensors} | dict(
            zip(tensors, values, strict=True)
        )


class Method(ABC):
    """A fine-tuning method: how one batch becomes a loss."""

    generator: torch.Generator | None = None
    """Set by :meth:`own_generator` in methods that draw their own random numbers."""
    prepare_seconds: float | None = None
    """Wall seconds of :meth:`prepare`'s pass, in methods that have one (the run's cost table
    shows it); keep it in :meth:`state_dict`, as a resumed run does not prepare again."""

    def __init__(
        self, params: MethodConfig, *, is_regression: bool, seed: int, device: torch.device
    ) -> None:
        """What :func:`~addrop_cli.methods.registry.build_method` calls: the method's parameters,
        the task's kind, the run's seed and device (for a generator of its own:
        :meth:`own_generator`). Build nothing from the model here: :meth:`attach` gets it."""
        self.params = params
        self.is_regression = is_regression
        self.epoch = 0
        self.stats = EpochStats()

    @property
    def name(self) -> str:
        """The registered name (its config's ``method``): the prefix of its Trainer logs."""
        return self.params.method_name()

    def config_overrides(self) -> dict:
        """Model config values this method sets before the model is loaded (dropout rates)."""
        return {}

    def attach(self, model: nn.Module) -> None:  # noqa: B027 - optional hook, no-op by default
        """Install whatever the method needs inside the model; nothing by default."""

    def prepare(  # noqa: B027 - optional hook, no-op by default
        self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]
    ) -> None:
        """One pass over the training batches before the first step (Child-Tuning_D's Fisher
        information); nothing by default. A resumed run skips it: keep its result in
        :meth:`state_dict`."""

    def before_optimizer_step(self, model: nn.Module) -> None:  # noqa: B027 - optional hook
        """Between backward (and gradient clipping) and the optimiser step: a method may edit
        the accumulated gradients here (Child-Tuning's masks); nothing by default."""

    def on_epoch_start(self, epoch: int) -> None:
        """Start a new 0-based epoch: statistics restart here."""
        self.epoch = epoch
        self.stats = EpochStats()

    def own_generator(self, seed: int, device: torch.device) -> torch.Generator:
        """A generator of this method's own on ``device``, seeded from the run's seed: its draws
        (masks) neither disturb nor depend on data order and dropout, and its state is saved
        with the method's (:meth:`state_dict`)."""
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        return self.generator

    def state_dict(self) -> dict:
        """What a resumed run needs to continue mid-epoch exactly: the epoch's statistics (and,
        in methods that draw random numbers, their generator's state)."""
        own = {"generator": self.generator.get_state()} if self.generator is not None else {}
        return {"stats": self.stats.state_dict(), **own}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`, after :meth:`on_epoch_start` of the resumed epoch."""
        self.stats.load_state_dict(state["stats"])
        if self.generator is not None:
            self.generator.set_state(state["generator"])

    @abstractmethod
    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        """The loss for one batch (model in train mode); the caller back-propagates it."""

    def epoch_stats(self) -> dict[str, float]:
        """Per-step means since :meth:`on_epoch_start`, JSON-serialisable."""
        return self.stats.means()

    def step_stats(self) -> dict[str, float]:
        """The last training step's statistics (AD-DROP: ``dropped_frac_l<layer>``)."""
        return self.stats.latest()

    def plain_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        """One forward pass and its task loss: plain fine-tuning."""
        logits = model(**model_inputs(batch)).logits
        self.stats.add(forward_passes=1, backward_passes=1)
        loss = task_loss(logits, batch["labels"], self.is_regression)
        return StepOutput(loss=loss, logits=logits.detach())
