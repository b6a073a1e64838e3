"""Where a run's progress goes: one small protocol, many listeners.

The training loop reports each optimiser step and each evaluation to a :class:`RunLogger` and
knows nothing else about where they end up: the run's epochs.jsonl, the progress display, a
tracker. :class:`Loggers` fans out to several; a logger marked optional (a tracker) that fails
is reported once and dropped, so it never fails the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from addrop_cli.store.folders import RunFolder
from addrop_cli.store.records import EpochRecord

log = logging.getLogger(__name__)


@dataclass
class StepEvent:
    """One optimiser step, as loggers see it."""

    epoch: int
    step_in_epoch: int
    steps_per_epoch: int
    global_step: int
    loss: float
    samples_per_s: float
    lr: float = 0.0
    method: dict[str, float] = field(default_factory=dict)
    """The method's statistics of this step (AD-DROP's dropped fraction per target layer);
    filled only when a logger sets ``wants_method_stats`` (reading them costs a device copy)."""


class RunLogger(Protocol):
    """What the training loop calls. Implementations keep their own state; none may raise to
    stop training (a required logger, such as the store's, may: its failure fails the run)."""

    def on_step(self, event: StepEvent) -> None: ...

    def on_eval(self, record: EpochRecord) -> None: ...

    def close(self) -> None: ...


class EpochFileLogger:
    """Appends each evaluation to the run folder's epochs.jsonl (the store's record)."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder

    def on_step(self, event: StepEvent) -> None:
        pass

    def on_eval(self, record: EpochRecord) -> None:
        self.folder.append_epoch(record)

    def close(self) -> None:
        pass


class Loggers:
    """Fans each call out to several loggers. Required loggers' errors propagate; an optional
    logger that raises is logged once and dropped for the rest of the run."""

    def __init__(self, required: Iterable[RunLogger] = (), optional: Iterable[RunLogger] = ()):
        self.required = list(required)
        self.optional = list(optional)

    def _each(self, call: str, *args: object) -> None:
        for logger in self.required:
            getattr(logger, call)(*args)
        for logger in list(self.optional):
            try:
                getattr(logger, call)(*args)
            except Exception as err:  # noqa: BLE001 - a tracker must never fail the run
                log.warning("%s stopped logging: %s", type(logger).__name__, err)
                self.optional.remove(logger)

    @property
    def wants_method_stats(self) -> bool:
        return any(getattr(x, "wants_method_stats", False) for x in self.required + self.optional)

    def on_step(self, event: StepEvent) -> None:
        self._each("on_step", event)

    def on_eval(self, record: EpochRecord) -> None:
        self._each("on_eval", record)

    def close(self) -> None:
        self._each("close")
