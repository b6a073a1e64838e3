"""Who follows one attempt at a run besides the store: the progress display, the run's own
``train.log`` (the ``--plain`` lines) and the trackers of the spec's ``tracking`` list."""

from __future__ import annotations

from typing import TYPE_CHECKING

from addrop_cli.engine.progress import PlainProgress, ProgressLogger, RunLog, Tee
from addrop_cli.engine.tracking import RunInfo, Trackers, TrackingLogger
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.store.folders import RunFolder
from addrop_cli.store.records import RunConfig

if TYPE_CHECKING:
    from addrop_cli.engine.loggers import RunLogger


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
    ) -> None:
        self.run = run
        self.log = RunLog(folder.path / "train.log", progress.total)
        self.log.run_start(run, index)  # the console printed it already
        self.display = Tee(progress, self.log)
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

    def loggers(self) -> tuple[list[RunLogger], list[RunLogger]]:
        """The training loop's loggers this watch adds: (required, optional)."""
        return [ProgressLogger(self.display, self.run)], [TrackingLogger(self.trackers)]

    def end(self, status: str, detail: str, *, console: bool = True) -> None:
        """Close the trackers with ``status``; the run-end line (to train.log only when not
        ``console``: an interrupted experiment prints its own summary)."""
        try:
            self.trackers.close(status)
            (self.display if console else self.log).run_end(self.run, status, detail)
        finally:
            self.log.close()
