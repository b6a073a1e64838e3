"""What :class:`~addrop_cli.engine.loop.RunLoop` keeps between steps, and how a restored state
takes up its position again.

:class:`LoopState` holds the counters (optimiser steps, epochs, the position inside the epoch),
early stopping, the epochs log and the best and last evaluations; its ``state_dict`` is the
loop's part of the training-state payload (see :mod:`addrop_cli.engine.resume` for the rest).
A new counter is a field here and a key in ``state_dict``/``load_state_dict``, nowhere else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from addrop_cli.engine.evaluation import Best
from addrop_cli.engine.resume import pack_best, restore_rng, unpack_best
from addrop_cli.engine.stopping import EarlyStopping
from addrop_cli.methods.base import Method
from addrop_cli.store.records import EpochRecord

log = logging.getLogger(__name__)


@dataclass
class EpochTally:
    """Running sums of the epoch in progress. Its clocks (wall and process CPU time) count
    training only: a mid-epoch evaluation or state write runs :meth:`paused`."""

    started: float = field(default_factory=time.perf_counter)
    cpu_started: float | None = field(default_factory=time.process_time)
    """``time.process_time()`` at the epoch's start, shifted by the pauses; None when the epoch
    was resumed from a state that did not count CPU time."""
    loss_sum: float = 0.0
    loss_count: int = 0
    samples: int = 0
    steps: int | None = 0
    """Optimiser steps taken in the epoch; None when resumed from a state that did not count
    them."""
    paused_at: tuple[float, float] | None = None
    """(wall, CPU) clock when the pause in progress began; the clocks read it while paused."""

    @property
    def elapsed(self) -> float:
        now = self.paused_at[0] if self.paused_at else time.perf_counter()
        return now - self.started

    @property
    def cpu_seconds(self) -> float | None:
        """Process CPU seconds (every thread) of training in the epoch so far."""
        if self.cpu_started is None:
            return None
        now = self.paused_at[1] if self.paused_at else time.process_time()
        return now - self.cpu_started

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(1, self.loss_count)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside is not training: neither clock counts it."""
        if self.paused_at is not None:  # already paused: the outer pause counts it
            yield
            return
        self.paused_at = (time.perf_counter(), time.process_time())
        try:
            yield
        finally:
            wall, cpu = self.paused_at
            self.paused_at = None
            self.started += time.perf_counter() - wall
            if self.cpu_started is not None:
                self.cpu_started += time.process_time() - cpu

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "loss_count": self.loss_count,
                "samples": self.samples, "elapsed": self.elapsed,
                "cpu_seconds": self.cpu_seconds, "steps": self.steps}  # fmt: skip

    def load_state_dict(self, sums: dict[str, Any]) -> None:
        self.started = time.perf_counter() - sums["elapsed"]
        cpu = sums.get("cpu_seconds")  # states written before CPU time was counted lack it
        self.cpu_started = None if cpu is None else time.process_time() - cpu
        self.loss_sum, self.loss_count = sums["loss_sum"], sums["loss_count"]
        self.samples = sums["samples"]
        self.steps = sums.get("steps")


@dataclass
class LoopState:
    """Everything the loop carries from one step to the next."""

    stopping: EarlyStopping
    threads: int
    """The torch threads the run trains with: another count changes the losses bit for bit."""
    global_step: int = 0
    epochs_run: int = 0
    train_time: float = 0.0
    samples_seen: int = 0
    epochs_log: list[EpochRecord] = field(default_factory=list)
    best: Best | None = None
    last: Best | None = None
    stopped: bool = False
    epoch: int = 0
    """The position: the epoch, the batches consumed in it (0: it has not begun), the data-order
    generator's state when it began, and its running sums."""
    batches_done: int = 0
    order_at_epoch_start: torch.Tensor | None = None
    tally: EpochTally | None = None

    def at_epoch_start(self, epoch: int, order: torch.Tensor, tally: EpochTally | None) -> None:
        self.epoch, self.batches_done = epoch, 0
        self.order_at_epoch_start, self.tally = order, tally

    def state_dict(self) -> dict[str, Any]:
        """The loop's part of the payload (its "position", "tally" and "loop" entries)."""
        return {
            "position": {"epoch": self.epoch, "batches_done": self.batches_done,
                         "order": self.order_at_epoch_start},
            "tally": None if self.tally is None else self.tally.state_dict(),
            "loop": {
                "global_step": self.global_step,
                "epochs_run": self.epochs_run,
                "train_time": self.train_time,
                "samples_seen": self.samples_seen,
                "threads": self.threads,
                "stopping": self.stopping.state_dict(),
                "epochs": [record.model_dump(mode="json") for record in self.epochs_log],
                "best": pack_best(self.best),
                "last": pack_best(self.last),
            },
        }  # fmt: skip

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        """The counters, stopping and evaluations of ``payload``; the position is applied when
        its epoch begins (:class:`Pending`)."""
        state = payload["loop"]
        self.global_step = state["global_step"]
        self.epochs_run = state["epochs_run"]
        self.train_time = state["train_time"]
        self.samples_seen = state["samples_seen"]
        self.stopping.load_state_dict(state["stopping"])
        self.epochs_log = [EpochRecord.model_validate(r) for r in state["epochs"]]
        self.best = unpack_best(state["best"])
        self.last = unpack_best(state["last"])
        saved = state.get("threads")  # states written before the count was recorded lack it
        if saved is not None and saved != self.threads:
            log.warning(
                f"resuming with {self.threads} torch threads where the state was written with "
                f"{saved}: the losses from step {self.global_step} on will differ from an "
                f"uninterrupted run (pass --threads {saved} to keep them identical)"
            )


@dataclass
class Pending:
    """The position of a restored state, applied when the loop begins its epoch.

    The random generators are restored last: for a state taken between epochs before the epoch's
    data order is drawn, for one taken inside an epoch after the permutation was drawn again from
    the data-order generator's state at the epoch's start and the consumed batches skipped
    (whatever creating the loader's iterator draws is then undone too).
    """

    position: dict[str, Any]
    tally: dict[str, Any] | None
    method: dict[str, Any]
    rng: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.position["epoch"])

    @property
    def batches_done(self) -> int:
        return int(self.position["batches_done"])

    def begin_epoch(self, method: Method, order: torch.Generator, tally: EpochTally) -> int:
        """Start the epoch as the state left it (``tally`` gets its running sums); returns the
        number of batches to skip."""
        if self.batches_done == 0:  # taken between epochs: the method starts its epoch afresh
            method.load_state_dict(self.method)
            method.on_epoch_start(self.epoch)
            restore_rng(self.rng, order)
            return 0
        method.on_epoch_start(self.epoch)
        method.load_state_dict(self.method)
        order.set_state(self.position["order"])
        tally.load_state_dict(self.tally or {})
        return self.batches_done

    def after_skip(self, order: torch.Generator) -> None:
        if self.batches_done:
            restore_rng(self.rng, order)
