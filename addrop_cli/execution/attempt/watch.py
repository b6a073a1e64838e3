"""Who follows one attempt at a run: the store's epochs.jsonl, the progress display, the run's
own ``train.log`` (the ``--plain`` lines), the attempt's clock, a search's trial judge and the
trackers of the spec's ``tracking`` list, all :class:`~addrop_cli.engine.loggers.RunLogger`
behind one fan-out."""

from __future__ import annotations

import time

from addrop_cli.engine.loggers import Loggers, QuietLogger, StepEvent
from addrop_cli.execution.attempt.display import PlainProgress, RunDisplay, TrainLog
from addrop_cli.execution.trackers.tracking import RunInfo, start_trackers
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.store.folders import RunFolder
from addrop_cli.store.records import EpochRecord, RunConfig, RunMetrics
from addrop_cli.store.status import EndStatus


class EpochFileLogger(QuietLogger):
    """Appends each evaluation to the run folder's epochs.jsonl (the store's record)."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder

    def on_eval(self, record: EpochRecord) -> None:
        self.folder.append_epoch(record)


def follow(
    run: RunSpec,
    folder: RunFolder,
    config: RunConfig,
    trackers: tuple[str, ...],
    progress: PlainProgress,
    index: int,
    resume_at: tuple[int, int] | None = None,
    track_every: int = 1,
) -> Loggers:
    """The run's loggers, opened once its folder is started (a restart wipes it): required,
    the store, the display and train.log; optional, the trackers (one that does not start is a
    note on the display and in train.log). The caller adds a search run's trial judge and ends
    them with the run's status (:meth:`Loggers.on_end`). ``resume_at``: the training state's
    (step, epoch) when the attempt resumes one (the trackers continue their runs from it);
    ``track_every``: every how many steps the trackers get the training metrics."""
    train_log = TrainLog(folder.path / "train.log", run, index, progress.total)
    shown = RunDisplay(progress, run)
    loggers = Loggers(required=[EpochFileLogger(folder), shown, train_log])
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
        resume_step=resume_at[0] if resume_at is not None else None,
        log_every_steps=track_every,
    )
    loggers.optional = list(start_trackers(trackers, info, loggers.on_note))
    if resume_at is not None:  # to the console and train.log
        loggers.on_note(f"resuming from step {resume_at[0]} (epoch {resume_at[1] + 1})")
    return loggers


class AttemptClock(QuietLogger):
    """This attempt's time, written to the run folder at each evaluation and every
    ``tick_s`` seconds between, so that a killed attempt's cost is still counted when the run
    resumes (the run's ``wall_time_s`` sums every attempt since it last started clean)."""

    tick_s = 1.0

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.earlier = folder.attempt_times()
        self.attempt = max(self.earlier, default=0) + 1
        self.started = self.ticked = time.monotonic()
        self.final = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def costed(self, metrics: RunMetrics) -> RunMetrics:
        """``metrics`` with the wall time of every attempt and their number; this attempt's time
        is recorded as it is counted here (its end, for the store), and not moved later."""
        total = sum(self.earlier.values()) + self._tick(sync=True)
        self.final = True
        return metrics.model_copy(update={"wall_time_s": total, "attempts": self.attempt})

    def on_step(self, event: StepEvent) -> None:
        if time.monotonic() - self.ticked >= self.tick_s:
            self._tick(sync=False)  # survives a killed process; only a lost machine loses it

    def on_eval(self, record: EpochRecord) -> None:
        self._tick(sync=True)

    def on_end(self, status: EndStatus, detail: str) -> None:
        if not self.final:  # a failed, pruned or interrupted attempt: its time up to here
            self._tick(sync=True)

    def _tick(self, *, sync: bool) -> float:
        self.ticked = time.monotonic()
        elapsed = round(self.elapsed(), 3)
        self.folder.record_attempt_time(self.attempt, elapsed, sync=sync)
        return elapsed
