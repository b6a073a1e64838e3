"""How `addrop run` shows runs: live Rich bars on a terminal, one line per event elsewhere, and
the same lines in each run's ``train.log``.

:class:`PlainProgress` and :class:`RichProgress` show the whole experiment (the back-ends call
them as runs start and end); :class:`RunDisplay` is one run on them and :class:`TrainLog` is its
train.log, both :class:`~addrop_cli.engine.loggers.RunLogger`: the training code never prints.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from addrop_cli.engine.loggers import QuietLogger, StepEvent
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


class PlainProgress:
    """One line per run start, evaluation and run end: for CI logs and pipes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.total = 0
        self.finished = 0

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def experiment_start(self, total: int, pending: int) -> None:
        self.total = pending

    def run_start(self, run: RunSpec, index: int) -> None:
        self._print(start_line(run, index, self.total))

    def step(self, progress: StepEvent) -> None:
        pass

    def evaluated(self, run: RunSpec, record: EpochRecord) -> None:
        self._print(eval_line(run, record))

    def run_end(self, run: RunSpec, status: str, detail: str) -> None:
        self.finished += 1
        self._print(end_line(run, status, detail))

    def note(self, run: RunSpec, text: str) -> None:
        """Something about a run that is not an event of its training (resuming, a tracker)."""
        self._print(note_line(run, text))

    def close(self) -> None:
        pass


class RichProgress(PlainProgress):
    """Live bars: the whole experiment (with time left) and the current run's epoch and steps."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.bars = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.runs_bar: TaskID | None = None
        self.epoch_bar: TaskID | None = None
        self.step_bar: TaskID | None = None

    def _print(self, text: str) -> None:
        self.bars.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def experiment_start(self, total: int, pending: int) -> None:
        super().experiment_start(total, pending)
        self.bars.start()
        self.runs_bar = self.bars.add_task("runs", total=pending, info="")

    def run_start(self, run: RunSpec, index: int) -> None:
        super().run_start(run, index)
        for bar in (self.epoch_bar, self.step_bar):
            if bar is not None:
                self.bars.remove_task(bar)
        self.epoch_bar = self.bars.add_task(
            f"  {run.label} epochs", total=run.train.epochs, info=""
        )
        self.step_bar = self.bars.add_task("  steps", total=None, info="")

    def step(self, progress: StepEvent) -> None:
        if self.step_bar is None or self.epoch_bar is None:
            return
        self.bars.update(
            self.step_bar,
            completed=progress.step_in_epoch,
            total=progress.steps_per_epoch,
            info=f"loss {progress.loss:.4f} {progress.samples_per_s:.1f} samples/s",
        )
        self.bars.update(self.epoch_bar, completed=progress.epoch)

    def evaluated(self, run: RunSpec, record: EpochRecord) -> None:
        super().evaluated(run, record)
        if self.epoch_bar is not None:
            self.bars.update(
                self.epoch_bar, completed=record.epoch, info=format_metrics(record.dev)
            )

    def run_end(self, run: RunSpec, status: str, detail: str) -> None:
        super().run_end(run, status, detail)
        if self.runs_bar is not None:
            self.bars.update(self.runs_bar, advance=1, info=f"last: {SHOWN.get(status, status)}")

    def close(self) -> None:
        self.bars.stop()


class RunDisplay(QuietLogger):
    """One run on the experiment's display, as a run logger. The end of an interrupted run is
    not shown (the experiment prints its own summary)."""

    def __init__(self, progress: PlainProgress, run: RunSpec) -> None:
        self.progress, self.run = progress, run

    def on_step(self, event: StepEvent) -> None:
        self.progress.step(event)

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
    return PlainProgress(console) if plain else RichProgress(console)
