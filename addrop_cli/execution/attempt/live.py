"""The whole experiment at a glance: each active run's place and speed, and when all will be done.

:class:`Board` keeps what the display has heard of the runs (any number of workers report to
one board); :meth:`Board.view` is a consistent snapshot of it with the experiment's ETA;
:func:`board_table` draws a view as one Rich table (the live view on a terminal) and
:func:`summary_line` as one line (``--plain``, at a steady interval).

The ETA comes from measured step times only: every run that has taken at least two steps gives
its seconds per step (over its whole time since its first step, evaluations included), and every
run that reached its first step gives its start-up time. The work left is each active run's
remaining steps and each pending run's steps (its epochs times the steps per epoch measured for
its task and data), shared among the workers; no run can end sooner than its own steps allow.
Before any such measurement the ETA is unknown, and the view says so.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table
from rich.text import Text

from addrop_cli.engine.loggers import StepEvent
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.words import plural

NARROW = 80
"""Below this many columns the table folds task, variant and seed into one column and drops
the loss and the elapsed time."""


def duration(seconds: float) -> str:
    """A short, never truncated duration: ``45s``, ``6m05s``, ``2h07m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _data_key(run: RunSpec) -> str:
    """Runs with the same key take the same number of steps per epoch."""
    return f"{run.task} {run.train.batch_size} {run.data.model_dump_json()}"


@dataclass
class _Active:
    run: RunSpec
    started: float
    event: StepEvent | None = None
    first: tuple[float, int] | None = None
    """(time, steps done) of the first step heard of."""
    last: tuple[float, int] | None = None

    def done_steps(self) -> int:
        e = self.event
        return 0 if e is None else e.epoch * e.steps_per_epoch + e.step_in_epoch

    def step_s(self, now: float | None = None) -> float | None:
        """Seconds per step from its first step to its last (or to ``now``, when it ended)."""
        if self.first is None or self.last is None or self.last[1] <= self.first[1]:
            return None
        end = self.last[0] if now is None else now
        return (end - self.first[0]) / (self.last[1] - self.first[1])


@dataclass(frozen=True)
class Row:
    """One active run as the table shows it."""

    task: str
    variant: str
    seed: int
    epoch: str
    step: str
    samples_per_s: float | None
    loss: float | None
    elapsed_s: float


@dataclass(frozen=True)
class View:
    """A snapshot of the board: counts, the active runs and the ETA (None: unknown)."""

    done: int
    running: int
    left: int
    rows: tuple[Row, ...]
    eta_s: float | None
    step_s: float | None


@dataclass
class Board:
    """What the display knows of the experiment's runs; safe to share with a drawing thread."""

    clock: Callable[[], float] = time.monotonic
    total: int = 0
    slots: int = 1
    pending: dict[str, RunSpec] = field(default_factory=dict)
    active: dict[str, _Active] = field(default_factory=dict)
    done: int = 0
    rates: list[float] = field(default_factory=list)
    """Seconds per step of each finished run."""
    overheads: list[float] = field(default_factory=list)
    """Seconds from each run's start to its first step."""
    steps_per_epoch: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, runs: Sequence[RunSpec], slots: int) -> None:
        with self.lock:
            self.total, self.slots = len(runs), max(1, slots)
            self.pending = {run.run_id: run for run in runs}

    def run_start(self, run: RunSpec) -> None:
        with self.lock:
            self.pending.pop(run.run_id, None)
            self.active[run.run_id] = _Active(run, self.clock())

    def step(self, run: RunSpec, event: StepEvent) -> None:
        with self.lock:
            active = self.active.get(run.run_id)
            if active is None:
                return
            now = self.clock()
            active.event = event
            self.steps_per_epoch[_data_key(run)] = event.steps_per_epoch
            if active.first is None:
                active.first = (now, active.done_steps())
                self.overheads.append(now - active.started)
            active.last = (now, active.done_steps())

    def run_end(self, run: RunSpec) -> None:
        """The run ended (done, failed, busy, pruned, lost), or was found finished."""
        with self.lock:
            if self.pending.pop(run.run_id, None) is None and run.run_id not in self.active:
                return  # already counted
            active = self.active.pop(run.run_id, None)
            rate = active.step_s(self.clock()) if active is not None else None
            if rate is not None:
                self.rates.append(rate)
            self.done += 1

    def view(self) -> View:
        with self.lock:
            now = self.clock()
            rows = tuple(_row(a, now) for a in self.active.values())
            rates = self.rates + [r for a in self.active.values() if (r := a.step_s()) is not None]
            step_s = statistics.fmean(rates) if rates else None
            eta = self._eta(step_s) if step_s is not None else None
            running = len(self.active)
            left = max(0, self.total - self.done - running)
            return View(self.done, running, left, rows, eta, step_s)

    def _planned_steps(self, run: RunSpec) -> int | None:
        per_epoch = self.steps_per_epoch.get(_data_key(run))
        if per_epoch is None and self.steps_per_epoch:
            per_epoch = round(statistics.fmean(self.steps_per_epoch.values()))
        return None if per_epoch is None else per_epoch * run.train.epochs

    def _eta(self, step_s: float) -> float | None:
        """Seconds until the last run ends (see the module docstring), None if unknown."""
        overhead = statistics.fmean(self.overheads) if self.overheads else 0.0
        jobs: list[float] = []  # seconds of work left in each unfinished run
        for a in self.active.values():
            if a.event is not None:
                total = a.event.steps_per_epoch * a.run.train.epochs
                jobs.append(max(0, total - a.done_steps()) * step_s)
        for run in [a.run for a in self.active.values() if a.event is None]:
            jobs.append(-1.0 if (n := self._planned_steps(run)) is None else n * step_s + overhead)
        for run in self.pending.values():
            jobs.append(-1.0 if (n := self._planned_steps(run)) is None else n * step_s + overhead)
        if any(job < 0 for job in jobs):
            return None
        if not jobs:
            return 0.0
        return max(sum(jobs) / min(self.slots, len(jobs)), max(jobs))


def _row(active: _Active, now: float) -> Row:
    run, e = active.run, active.event
    epochs = run.train.epochs
    return Row(
        task=run.task,
        variant=run.variant,
        seed=run.seed,
        epoch=f"{e.epoch + 1}/{epochs}" if e is not None else f"-/{epochs}",
        step=f"{e.step_in_epoch}/{e.steps_per_epoch}" if e is not None else "starting",
        samples_per_s=e.samples_per_s if e is not None else None,
        loss=e.loss if e is not None else None,
        elapsed_s=now - active.started,
    )


def eta_text(view: View) -> str:
    if view.eta_s is None:
        return "ETA unknown (no step time measured yet)"
    return f"ETA {duration(view.eta_s)} ({view.step_s:.2f} s/step measured)"


def summary_line(view: View) -> str:
    """The ``--plain`` summary: runs done, running and left, and the ETA."""
    total = view.done + view.running + view.left
    return (
        f"progress: {view.done} of {plural(total, 'run')} done, {view.running} running, "
        f"{view.left} left; {eta_text(view)}"
    )


def board_table(view: View, width: int) -> Group:
    """The live view: one line of counts and ETA, then one row per active run. Under
    :data:`NARROW` columns task, variant and seed share one folding column."""
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    narrow = width < NARROW
    if narrow:
        table.add_column("run", overflow="fold")
    else:
        table.add_column("task", no_wrap=True)
        table.add_column("variant", overflow="fold")
        table.add_column("seed", justify="right", no_wrap=True)
    for name in ("epoch", "step", "samples/s"):
        table.add_column(name, justify="right", no_wrap=True)
    if not narrow:
        table.add_column("loss", justify="right", no_wrap=True)
        table.add_column("elapsed", justify="right", no_wrap=True)
    for r in view.rows:
        speed = f"{r.samples_per_s:.1f}" if r.samples_per_s is not None else "-"
        if narrow:
            cells = [f"{r.task}/{r.variant}/seed{r.seed}", r.epoch, r.step, speed]
        else:
            loss = f"{r.loss:.4f}" if r.loss is not None else "-"
            cells = [r.task, r.variant, str(r.seed), r.epoch, r.step, speed, loss]
            cells.append(duration(r.elapsed_s))
        table.add_row(*cells)
    head = Text(f"{summary_line(view).removeprefix('progress: ')}", no_wrap=False)
    return Group(head, table)
