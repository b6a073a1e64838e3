"""Where a run's progress goes: one protocol, one fan-out.

The training loop reports each optimiser step and each evaluation to a :class:`RunLogger` and
knows nothing else about where they end up. Everything that follows a run implements it: the
run's epochs.jsonl, its train.log, the live display, a search's trial judge and each tracker.
:class:`Loggers` is the one fan-out: the loop calls it for steps and evaluations, the caller
that knows how the run ended calls :meth:`Loggers.on_end`. A logger marked optional (a tracker)
that raises is reported once, as a note to the others, and dropped: it never fails the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from addrop_cli.errors import one_line

if TYPE_CHECKING:
    from addrop_cli.store.records import EpochRecord
    from addrop_cli.store.status import EndStatus


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
    """What follows one run. Implementations keep their own state; a required logger (the
    store's, a trial judge) may raise to fail or stop the run, an optional one (a tracker) is
    dropped when it raises. ``wants_method_stats`` (optional attribute, default False) asks for
    :attr:`StepEvent.method`."""

    def on_step(self, event: StepEvent) -> None: ...

    def on_eval(self, record: EpochRecord) -> None: ...

    def on_note(self, text: str) -> None:
        """Something about the run that is not an event of its training (a tracker problem)."""

    def on_end(self, status: EndStatus, detail: str) -> None:
        """The last call: how the run ended, in the store's words (``done``, ``failed``,
        ``pruned``, ``interrupted``: :mod:`addrop_cli.store.status`) and the run-end line's
        detail."""


class QuietLogger:
    """A :class:`RunLogger` that ignores every call: subclass it and override what you use."""

    def on_step(self, event: StepEvent) -> None:
        pass

    def on_eval(self, record: EpochRecord) -> None:
        pass

    def on_note(self, text: str) -> None:
        pass

    def on_end(self, status: EndStatus, detail: str) -> None:
        pass


class Loggers:
    """The one fan-out: each call to every logger, required ones first, in order; ``on_end``
    in reverse order (last opened, first closed: a tracker's closing problem still reaches the
    display and train.log). A required logger's error propagates; an optional logger that
    raises is named in one note to the others and dropped for the rest of the run."""

    def __init__(self, required: Iterable[RunLogger] = (), optional: Iterable[RunLogger] = ()):
        self.required = list(required)
        self.optional = list(optional)

    def _each(self, call: str, *args: object, reverse: bool = False) -> None:
        order = [(x, False) for x in self.required] + [(x, True) for x in self.optional]
        for logger, optional in reversed(order) if reverse else order:
            if not optional:
                getattr(logger, call)(*args)
                continue
            try:
                getattr(logger, call)(*args)
            except Exception as err:  # noqa: BLE001 - a tracker must never fail the run
                self.optional.remove(logger)
                self.on_note(_dropped(logger, call, err))

    @property
    def wants_method_stats(self) -> bool:
        return any(getattr(x, "wants_method_stats", False) for x in self.required + self.optional)

    def on_step(self, event: StepEvent) -> None:
        self._each("on_step", event)

    def on_eval(self, record: EpochRecord) -> None:
        self._each("on_eval", record)

    def on_note(self, text: str) -> None:
        self._each("on_note", text)

    def on_end(self, status: EndStatus, detail: str) -> None:
        self._each("on_end", status, detail, reverse=True)


def _dropped(logger: RunLogger, call: str, err: BaseException) -> str:
    """The note for an optional logger (a tracker, named by its ``name``) that raised."""
    name = getattr(logger, "name", type(logger).__name__)
    what = "close" if call == "on_end" else "log"
    return f"tracking: {name} failed ({what}: {tracker_error(err)}); stopped it, the run goes on"


def tracker_error(err: BaseException) -> str:
    """A tracker's error as a short line: its type and the first line of its message."""
    return one_line(err, limit=160, typed=True)
