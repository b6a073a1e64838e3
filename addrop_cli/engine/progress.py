"""Progress displays for `addrop run`: live Rich bars on a terminal, one line per event elsewhere.

Both take the same calls from the executor, so the training code never prints.
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

from addrop_cli.engine.loggers import StepEvent
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.store.records import EpochRecord


def format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


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
        self._print(f"[{index + 1}/{self.total}] {run.label} ({run.run_id}) started")

    def step(self, progress: StepEvent) -> None:
        pass

    def evaluated(self, run: RunSpec, record: EpochRecord) -> None:
        self._print(
            f"  {run.label} epoch {record.epoch}: loss {record.train_loss:.4f} "
            f"dev {format_metrics(record.dev)} "
            f"({record.train_samples_per_s:.1f} samples/s, {record.epoch_time_s:.1f}s)"
        )

    def run_end(self, run: RunSpec, status: str, detail: str) -> None:
        self.finished += 1
        self._print(f"  {run.label}: {status} {detail}".rstrip())

    def note(self, run: RunSpec, text: str) -> None:
        """Something about a run that is not an event of its training (resuming, a tracker)."""
        self._print(f"  {run.label}: {text}")

    def close(self) -> None:
        pass


class RunLog(PlainProgress):
    """The ``--plain`` lines of one run, through Python logging (time-stamped), into its
    folder's ``train.log``: a run that failed on a cluster node can be read afterwards."""

    def __init__(self, path: Path, total: int) -> None:
        super().__init__(Console(quiet=True))
        self.total = total
        self.logger = logging.getLogger(f"addrop.run.{path.parent.name}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False  # the console has its own copy of these lines
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.logger.addHandler(self.handler)

    def _print(self, text: str) -> None:
        self.logger.info(text)

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()


class Tee(PlainProgress):
    """Every event to two displays (the console's and the run's train.log)."""

    def __init__(self, first: PlainProgress, second: PlainProgress) -> None:
        self.displays = (first, second)

    def run_start(self, run: RunSpec, index: int) -> None:
        for d in self.displays:
            d.run_start(run, index)

    def step(self, progress: StepEvent) -> None:
        for d in self.displays:
            d.step(progress)

    def evaluated(self, run: RunSpec, record: EpochRecord) -> None:
        for d in self.displays:
            d.evaluated(run, record)

    def run_end(self, run: RunSpec, status: str, detail: str) -> None:
        for d in self.displays:
            d.run_end(run, status, detail)

    def note(self, run: RunSpec, text: str) -> None:
        for d in self.displays:
            d.note(run, text)


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
                self.epoch_bar, completed=record.epoch + 1, info=format_metrics(record.dev)
            )

    def run_end(self, run: RunSpec, status: str, detail: str) -> None:
        super().run_end(run, status, detail)
        if self.runs_bar is not None:
            self.bars.update(self.runs_bar, advance=1, info=f"last: {status}")

    def close(self) -> None:
        self.bars.stop()


class ProgressLogger:
    """The training loop's logger protocol, shown on a progress display for one run."""

    def __init__(self, progress: PlainProgress, run: RunSpec) -> None:
        self.progress, self.run = progress, run

    def on_step(self, event: StepEvent) -> None:
        self.progress.step(event)

    def on_eval(self, record: EpochRecord) -> None:
        self.progress.evaluated(self.run, record)

    def close(self) -> None:
        pass


def make_progress(console: Console, plain: bool) -> PlainProgress:
    return PlainProgress(console) if plain else RichProgress(console)
