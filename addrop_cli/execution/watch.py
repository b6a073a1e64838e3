"""Who follows one attempt at a run besides the store: the progress display, the run's own
``train.log`` (the ``--plain`` lines), the trackers of the spec's ``tracking`` list, and the
attempt's clock."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from addrop_cli.engine.progress import PlainProgress, ProgressLogger, RunLog, Tee
from addrop_cli.engine.tracking import RunInfo, Trackers, TrackingLogger
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.store.folders import RunFolder
from addrop_cli.store.records import EpochRecord, RunConfig, RunMetrics

if TYPE_CHECKING:
    from addrop_cli.engine.loggers import RunLogger, StepEvent


class RunWatch:
    """Opened once the run folder is started (it is wiped on a restart); :meth:`end` closes
    the trackers with the run's status, prints the last line and closes train.log."""

    def __init__(
        self,
        run: RunSpec,
        folder: RunFolder,
        config: RunConfig,
        tracking: tuple[str, ...],
        progress: PlainProgress,
        index: int,
        *,
        resumed_at: tuple[int, int] | None = None,
    ) -> None:
        """``resumed_at``: the (step, epoch) a resumed attempt goes on from, noted on the console
        and in train.log."""
        self.run = run
        self.log = RunLog(folder.path / "train.log", progress.total)
        self.log.run_start(run, index)  # the console printed it already
        self.display = Tee(progress, self.log)
        if resumed_at is not None:
            self.display.note(run, "resuming from step {} (epoch {})".format(*resumed_at))
        info = RunInfo(
            run_id=run.run_id,
            experiment=run.experiment,
            task=run.task,
            variant=run.variant,
            method=run.params.method,
            seed=run.seed,
            folder=folder.path,
            experiment_dir=folder.path.parent.parent,
            config=config.model_dump(mode="json"),
        )
        self.trackers = Trackers(tracking, info, lambda line: self.display.note(run, line))
        self.clock = AttemptClock(folder)

    def loggers(self) -> tuple[list[RunLogger], list[RunLogger]]:
        """The training loop's loggers this watch adds: (required, optional)."""
        return [ProgressLogger(self.display, self.run), self.clock], [TrackingLogger(self.trackers)]

    def end(self, status: str, detail: str, *, console: bool = True) -> None:
        """Close the trackers with ``status``; the run-end line (to train.log only when not
        ``console``: an interrupted experiment prints its own summary)."""
        try:
            self.trackers.close(status)
            (self.display if console else self.log).run_end(self.run, status, detail)
        finally:
            self.log.close()


class AttemptClock:
    """This attempt's time, written to the run folder at each evaluation and every
    ``tick_s`` seconds between, so that a killed attempt's cost is still counted when the run
    resumes (the run's ``wall_time_s`` sums every attempt since it last started clean)."""

    tick_s = 1.0

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.earlier = folder.attempt_times()
        self.attempt = max(self.earlier, default=0) + 1
        self.started = self.ticked = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def total(self) -> float:
        """Every attempt's time, this one's until now included."""
        return sum(self.earlier.values()) + self.elapsed()

    def costed(self, metrics: RunMetrics) -> RunMetrics:
        """``metrics`` with the wall time of every attempt and their number."""
        return metrics.model_copy(
            update={"wall_time_s": round(self.total(), 3), "attempts": self.attempt}
        )

    def on_step(self, event: StepEvent) -> None:
        if time.monotonic() - self.ticked >= self.tick_s:
            self._tick(sync=False)  # survives a killed process; only a lost machine loses it

    def on_eval(self, record: EpochRecord) -> None:
        self._tick(sync=True)

    def close(self) -> None:
        self._tick(sync=True)

    def _tick(self, *, sync: bool) -> None:
        self.ticked = time.monotonic()
        self.folder.record_attempt_time(self.attempt, self.elapsed(), sync=sync)
