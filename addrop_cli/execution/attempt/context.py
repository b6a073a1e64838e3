"""The run context every back-end shares, and one attempt at one run."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from addrop_cli.data.tasks import get_task
from addrop_cli.engine.environment import describe_environment
from addrop_cli.engine.failures import describe_failure, release_accelerator_memory
from addrop_cli.engine.pruning import RunPruned
from addrop_cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNS_FAILED,
    StoreError,
    first_line,
)
from addrop_cli.execution.attempt.display import PlainProgress
from addrop_cli.execution.attempt.watch import AttemptClock, follow
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.spec.trackers import LOG_EVERY_STEPS
from addrop_cli.store.folders import ExperimentStore, RunFolder
from addrop_cli.store.records import FailedMetrics, RunConfig
from addrop_cli.store.status import AttemptStatus, needs_attempt, settled

if TYPE_CHECKING:
    from addrop_cli.engine.loggers import RunLogger
    from addrop_cli.engine.loop import RunOutcome


@dataclass
class Summary:
    """What happened to each run of an experiment in this invocation."""

    skipped: list[RunSpec] = field(default_factory=list)
    done: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)
    busy: list[RunSpec] = field(default_factory=list)
    left: list[RunSpec] = field(default_factory=list)
    lost: list[tuple[RunSpec, str]] = field(default_factory=list)
    """Runs whose worker or job vanished without a DONE or FAILED marker (rerun to retry)."""
    pruned: list[RunSpec] = field(default_factory=list)
    """Runs a search's pruner stopped (not results, never retried; not a failure)."""
    interrupted: bool = False

    def record(self, run: RunSpec, status: AttemptStatus, reason: str = "") -> None:
        """File one run's outcome under its status."""
        if status == "done":
            self.done.append(run)
        elif status == "failed":
            self.failed.append((run, reason))
        elif status == "busy":
            self.busy.append(run)
        elif status == "pruned":
            self.pruned.append(run)
        elif status == "lost":
            self.lost.append((run, reason))
        else:
            self.skipped.append(run)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_RUNS_FAILED if self.failed or self.lost else EXIT_OK


def no_judges(run: RunSpec) -> list[RunLogger]:  # noqa: ARG001 - the judges' signature
    """A run judged by nobody but its own metrics (every run outside a search)."""
    return []


@dataclass(frozen=True)
class RunContext:
    """What every back-end needs to carry out runs: the store, the spec version, the spec folder."""

    store: ExperimentStore
    spec_hash: str
    base_dir: Path
    retry_failed: bool = True
    """False: a run found FAILED is left alone (--no-retry-failed)."""
    started: float = field(default_factory=time.time)
    """When this invocation began: a run that FAILED after it was failed by a concurrent
    process (or an earlier job of this one) and is not attempted again."""
    tracking: tuple[str, ...] = ()
    """Trackers that follow each run (spec ``tracking``, ``--track``)."""
    track_every: int = LOG_EVERY_STEPS
    """Training metrics go to them every this many steps (``tracking.log_every_steps``)."""
    judges: Callable[[RunSpec], Sequence[RunLogger]] = no_judges
    """The loggers that judge a run beyond the store: a search passes its trial judges in (the
    attempt knows nothing of studies); a module-level function, so a pool worker or a Slurm job
    can take it along."""


@dataclass(frozen=True)
class Outcome:
    """How one attempt at a run ended."""

    status: AttemptStatus
    reason: str = ""


# ---------------------------------------------------------------------------------------------


# One attempt at one run: the same in this process, a pool worker or a Slurm job
# ---------------------------------------------------------------------------------------------


def run_config(run: RunSpec, spec_hash: str) -> RunConfig:
    """run.json: the resolved run and its identity (what its id is the hash of)."""
    return RunConfig(
        run_id=run.run_id,
        identity=run.identity(),
        experiment=run.experiment,
        spec_hash=spec_hash,
        task=run.task,
        variant=run.variant,
        method=run.params.method,
        method_params=run.params.model_dump(mode="json"),
        seed=run.seed,
        model=run.model.model_dump(mode="json"),
        train=run.train.model_dump(mode="json"),
        data=run.data.model_dump(mode="json"),
        sweep=run.sweep,
        factors=run.factors,
    )


def attempt(
    run: RunSpec, context: RunContext, progress: PlainProgress, index: int, *, sharing: int = 1
) -> Outcome:
    """Take the run's lock, skip it if finished meanwhile, else run it start to end.

    ``sharing``: how many runs share this run's GPU (named in out-of-memory advice).
    """
    with context.store.lock(run.run_id) as locked:
        if not locked:
            progress.run_end(run, "busy", "(another addrop process is running it)")
            return Outcome("busy")
        folder = context.store.run(run.run_id)
        # finished by another process meanwhile, or failed and not to be retried
        retry, lately = context.retry_failed, _failed_lately(folder, context)
        if not needs_attempt(folder.status, retry_failed=retry, failed_lately=lately):
            return Outcome("skipped")
        progress.run_start(run, index)
        return _execute(run, folder, context, progress, index, sharing)


def _failed_lately(folder: RunFolder, context: RunContext) -> bool:
    """FAILED after this invocation began: by a concurrent process, or by its own attempt (an
    earlier failure is what this invocation retries)."""
    return folder.status == "failed" and folder.failed_at() >= context.started


def settled_outcome(folder: RunFolder, context: RunContext) -> Outcome | None:
    """What the store holds of a run this invocation handed out (:func:`settled`): done, pruned,
    or failed after the invocation began, with its reason; None while it has no outcome."""
    final = settled(folder.status, failed_lately=_failed_lately(folder, context))
    if final is None:
        return None
    return Outcome(final, folder.failure_reason() if final == "failed" else "")


def record_lost(run: RunSpec, context: RunContext, reason: str) -> Outcome:
    """A run whose process vanished without DONE or FAILED (a pool worker killed, a Slurm job
    gone from the queue): recorded FAILED with ``reason`` and retried from a clean start by the
    next `addrop run`, like any failed run. "busy" when another process holds it meanwhile."""
    with context.store.lock(run.run_id) as locked:
        if not locked:
            return Outcome("busy")
        folder = context.store.run(run.run_id)
        known = settled_outcome(folder, context)  # it finished, or recorded its own failure
        if known is not None:
            return known
        if folder.status != "absent":  # an absent folder: it died before starting; still pending
            folder.fail(_failed_metrics(run, reason))
            folder.state.discard()  # a failed run is retried from a clean start
        return Outcome("failed", reason)


def _failed_metrics(run: RunSpec, reason: str) -> FailedMetrics:
    return FailedMetrics(task=run.task, variant=run.variant, seed=run.seed, error=reason)


def with_threads(run: RunSpec, threads: int | None) -> RunSpec:
    """The run with ``threads`` torch threads, unless its spec sets them (not part of its id)."""
    if threads is None or run.train.threads is not None:
        return run
    return run.model_copy(update={"train": run.train.model_copy(update={"threads": threads})})


def _execute(
    run: RunSpec,
    folder: RunFolder,
    context: RunContext,
    progress: PlainProgress,
    index: int,
    sharing: int = 1,
) -> Outcome:
    """One run, contained: any exception becomes a FAILED run, never a crash of the experiment.

    An unfinished run with a valid training state goes on from it; otherwise it starts clean.
    """
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.engine.loop import run_one
    from addrop_cli.engine.resume import epochs_of

    config = run_config(run, context.spec_hash)
    loaded = folder.state.load() if folder.status == "unfinished" else None
    at = (loaded.step, loaded.epoch) if loaded else None
    folder.start(config, resume_at=at, epochs=epochs_of(loaded.payload) if loaded else None)
    loggers = follow(
        run, folder, config, context.tracking, progress, index, at, context.track_every
    )
    clock = AttemptClock(folder)
    loggers.required.append(clock)
    try:
        loggers.required += context.judges(
            run
        )  # inside: a study that cannot be opened fails the run
        outcome = run_one(
            run,
            loggers=loggers,
            keep_best_state=run.train.save_checkpoint,
            state=folder.state,
            resume=loaded.payload if loaded is not None else None,
        )
    except (KeyboardInterrupt, StoreError):
        # the folder stays unfinished (with its latest training state) and goes on next time;
        # a store that cannot be written (full disk) stops the experiment with its one-line error
        loggers.on_end("interrupted", "")
        raise
    except RunPruned as pruned:
        folder.prune(pruned.epochs_run, pruned.reason)
        folder.state.discard()  # never resumed: a pruned run is final
        loggers.on_end("pruned", pruned.reason)
        return Outcome("pruned", pruned.reason)
    except Exception as err:  # noqa: BLE001 - containment is the point
        reason = describe_failure(err, sharing=sharing)
        folder.write_json("traceback.json", {"traceback": traceback.format_exc()})
        folder.fail(_failed_metrics(run, reason))
        folder.state.discard()  # a failed run is retried from a clean start
        release_accelerator_memory()
        loggers.on_end("failed", first_line(reason))
        return Outcome("failed", reason)
    outcome.metrics = clock.costed(outcome.metrics)  # earlier attempts' time included
    _store_outcome(run, folder, context, outcome)
    loggers.on_end("done", _done_detail(outcome))
    return Outcome("done")


def _done_detail(outcome: RunOutcome) -> str:
    """The run-end line's detail."""
    metrics = outcome.metrics
    main = metrics.main_metric
    return (
        f"best {main}={metrics.best.dev[main]:.4f} "
        f"(epoch {metrics.best_epoch}, {metrics.wall_time_s:.0f}s)"
    )


def _store_outcome(
    run: RunSpec, folder: RunFolder, context: RunContext, outcome: RunOutcome
) -> None:
    """Results, checkpoints, then DONE; the training state goes last (unless kept)."""
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.engine.checkpoints import BEST, LAST, model_card, save_checkpoint

    metrics = outcome.metrics
    environment = describe_environment(context.base_dir, metrics.device, run.train.threads)
    folder.write_json("env.json", environment)
    folder.write_predictions(outcome.predictions)
    task = get_task(run.task, run.data)
    labels = None if task.is_regression else list(task.label_names)
    if run.train.save_last:
        card = model_card(run, metrics, "last")
        save_checkpoint(folder.path / LAST, outcome.model, outcome.tokenizer, None, card, labels)
    if outcome.best_state is not None:
        card = model_card(run, metrics, "best")
        weights = outcome.best_state
        save_checkpoint(folder.path / BEST, outcome.model, outcome.tokenizer, weights, card, labels)
    folder.finish(metrics)
    if not run.train.keep_state:
        folder.state.discard()
