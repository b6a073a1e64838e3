"""How `addrop run` shows runs: one live Rich table on a terminal, one line per event elsewhere
(and a summary line at a steady interval), and the same lines in each run's ``train.log``.

:class:`PlainProgress` and :class:`LiveProgress` show the whole experiment (the back-ends call
them as runs start and end); :class:`RunDisplay` is one run on them and :class:`TrainLog` is its
train.log, both :class:`~addrop_cli.engine.loggers.RunLogger`: the training code never prints.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.live import Live

from addrop_cli.engine.loggers import QuietLogger, StepEvent
from addrop_cli.execution.attempt.live import Board, board_table, summary_line
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.store.records import EpochRecord
from addrop_cli.store.status import EndStatus

SHOWN = {"failed": "FAILED", "pruned": "PRUNED"}
"""A run's end in the lines, from the store's word (:mod:`addrop_cli.store.status`): a failed or
pruned run stands out in upper case. An interrupted run's end goes to train.log only (the
experiment prints a summary)."""


def format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


# The lines, the same on the console and in train.log


def start_line(run: RunSpec, index: int, total: int | str) -> str:
    return f"[{index + 1}/{total}] {run.label} ({run.run_id}) started"


def eval_line(run: RunSpec, record: EpochRecord) -> str:
    return (
        f"  {run.label} epoch {record.epoch}: loss {record.train_loss:.4f} "
        f"dev {format_metrics(record.dev)} "
        f"({record.train_samples_per_s:.1f} samples/s, {record.epoch_time_s:.1f}s)"
    )


def end_line(run: RunSpec, status: str, detail: str) -> str:
    return f"  {run.label}: {SHOWN.get(status, status)} {detail}".rstrip()


def note_line(run: RunSpec, text: str) -> str:
    return f"  {run.label}: {text}"


SUMMARY_EVERY_S = 60.0
"""How often ``--plain`` prints its one-line summary (runs done, running, left; the ETA);
the environment variable ``ADDROP_SUMMARY_EVERY_S`` overrides it (0: never)."""


def summary_every_s() -> float:
    value = os.environ.get("ADDROP_SUMMARY_EVERY_S", "").strip()
    try:
        return float(value) if value else SUMMARY_EVERY_S
    except ValueError:
        return SUMMARY_EVERY_S


class PlainProgress:
    """One line per run start, evaluation and run end, for CI logs and pipes; and, when
    ``every`` is set, a summary line of the whole experiment every ``every`` seconds."""

    def __init__(self, console: Console, every: float | None = None) -> None:
        self.console = console
        self.total: int | str = 0
        self.board = Board()
        self.every = every
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def experiment_start(
        self, total: int, pending: int, *, runs: Sequence[RunSpec] = (), slots: int = 1
    ) -> None:
        """``runs``: the runs to carry out (the ETA counts their steps); ``slots``: how many
        run at once."""
        self.total = pending
        self.board.begin(runs, slots)
        if self.every and runs:
            self._ticker = threading.Thread(target=self._tick, name="addrop-summary", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        assert self.every
        while not self._stop.wait(self.every):
            self._print(summary_line(self.board.view()))

    def run_start(self, run: RunSpec, index: int) -> None:
        self.board.run_start(run)
        self._print(start_line(run, index, self.total))

    def step(self, run: RunSpec, progress: StepEvent) -> None:
        self.board.step(run, progress)

    def evaluated(self, run: RunSpec, record: EpochRecord) -> None:
        self._print(eval_line(run, record))

    def run_end(self, run: RunSpec, status: str, detail: str) -> None:
        self.board.run_end(run)
        self._print(end_line(run, status, detail))

    def settled(self, run: RunSpec) -> None:
        """The run's attempt is over, whatever it was (one found finished meanwhile too)."""
        self.board.run_end(run)

    def note(self, run: RunSpec, text: str) -> None:
        """Something about a run that is not an event of its training (resuming, a tracker)."""
        self._print(note_line(run, text))

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()


class LiveProgress(PlainProgress):
    """On a terminal: the same lines, above one live table of every active run (any number of
    workers) with the experiment's ETA (:mod:`~addrop_cli.execution.attempt.live`)."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.live = Live(
            get_renderable=lambda: board_table(self.board.view(), console.width),
            console=console,
            refresh_per_second=2,
            transient=True,
        )

    def _print(self, text: str) -> None:
        self.live.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def experiment_start(
        self, total: int, pending: int, *, runs: Sequence[RunSpec] = (), slots: int = 1
    ) -> None:
        super().experiment_start(total, pending, runs=runs, slots=slots)
        self.live.start()

    def close(self) -> None:
        super().close()
        self.live.stop()


class RunDisplay(QuietLogger):
    """One run on the experiment's display, as a run logger. The end of an interrupted run is
    not shown (the experiment prints its own summary)."""

    def __init__(self, progress: PlainProgress, run: RunSpec) -> None:
        self.progress, self.run = progress, run

    def on_step(self, event: StepEvent) -> None:
        self.progress.step(self.run, event)

    def on_eval(self, record: EpochRecord) -> None:
        self.progress.evaluated(self.run, record)

    def on_note(self, text: str) -> None:
        self.progress.note(self.run, text)

    def on_end(self, status: EndStatus, detail: str) -> None:
        if status != "interrupted":
            self.progress.run_end(self.run, status, detail)


class TrainLog(QuietLogger):
    """The ``--plain`` lines of one run, through Python logging (time-stamped), into its
    folder's ``train.log``: a run that failed on a cluster node can be read afterwards.
    Opened when the run starts (its first line), closed by :meth:`on_end`."""

    def __init__(self, path: Path, run: RunSpec, index: int, total: int | str) -> None:
        self.run = run
        self.logger = logging.getLogger(f"addrop.run.{path.parent.name}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False  # the console has its own copy of these lines
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.logger.addHandler(self.handler)
        # the library's warnings during the run (a resume with another thread count, ...) reach
        # the file too, not only the console; runs in one process are sequential
        self.warnings = logging.FileHandler(path, encoding="utf-8")
        self.warnings.setLevel(logging.WARNING)
        self.warnings.setFormatter(logging.Formatter("%(asctime)s warning: %(message)s"))
        logging.getLogger("addrop_cli").addHandler(self.warnings)
        self.logger.info(start_line(run, index, total))

    def on_eval(self, record: EpochRecord) -> None:
        self.logger.info(eval_line(self.run, record))

    def on_note(self, text: str) -> None:
        self.logger.info(note_line(self.run, text))

    def on_end(self, status: EndStatus, detail: str) -> None:
        self.logger.info(end_line(self.run, status, detail))
        self.logger.removeHandler(self.handler)
        self.handler.close()
        logging.getLogger("addrop_cli").removeHandler(self.warnings)
        self.warnings.close()


def make_progress(console: Console, plain: bool) -> PlainProgress:
    """The live table on a terminal; else lines, with a summary every :func:`summary_every_s`."""
    return PlainProgress(console, summary_every_s()) if plain else LiveProgress(console)
