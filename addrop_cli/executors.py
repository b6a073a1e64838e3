"""Carry out a run list against the results store, through one of several back-ends.

Every back-end is driven by the same run list and the same store, which is what makes them
interchangeable and idempotent: a run is taken under its store lock, skipped when it is already
DONE, started clean otherwise, and ends with DONE or FAILED; so killing and restarting any
back-end never redoes a finished run and never loses one.

* ``local`` with one worker (the default): runs one after another in this process, with live
  progress bars; Ctrl-C stops after what finished is saved.
* ``local`` with N workers: N worker processes pull runs from a queue; on a machine with GPUs each
  worker is pinned to one GPU with ``CUDA_VISIBLE_DEVICES``; on CPU each gets its share of the
  cores as torch threads. Workers die with the parent (a SIGKILL of ``addrop`` leaves no orphan
  holding a lock).
* ``slurm``: one submitit job array per batch (:mod:`addrop_cli.slurm`); jobs that time out or
  are pre-empted are requeued and resume.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from rich.console import Console
from rich.table import Table

from addrop_cli.errors import SpecError, StoreError
from addrop_cli.progress import PlainProgress, make_progress
from addrop_cli.spec import (
    ExecutorSpec,
    ExperimentSpec,
    RunSpec,
    config_hash,
    expand,
    resolve_path,
    spec_to_yaml,
)
from addrop_cli.store import ExperimentStore, RunFolder

EXIT_OK, EXIT_RUNS_FAILED, EXIT_INTERRUPTED = 0, 1, 130

Status = Literal["done", "failed", "busy", "skipped", "lost"]


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
    interrupted: bool = False

    def record(self, run: RunSpec, status: Status, reason: str = "") -> None:
        """File one run's outcome under its status."""
        if status == "done":
            self.done.append(run)
        elif status == "failed":
            self.failed.append((run, reason))
        elif status == "busy":
            self.busy.append(run)
        elif status == "lost":
            self.lost.append((run, reason))
        else:
            self.skipped.append(run)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_RUNS_FAILED if self.failed or self.lost else EXIT_OK


@dataclass(frozen=True)
class Batch:
    """What every back-end needs to carry out runs: the store, the spec version, the spec folder."""

    store: ExperimentStore
    spec_hash: str
    base_dir: Path


@dataclass(frozen=True)
class Outcome:
    """How one attempt at a run ended."""

    status: Status
    reason: str = ""


class Backend(Protocol):
    """Carries out runs; records each outcome in ``summary`` and returns when all have one.

    ``KeyboardInterrupt`` propagates to the caller once the back-end has stopped cleanly.
    """

    def execute(
        self, runs: Sequence[RunSpec], batch: Batch, summary: Summary, console: Console
    ) -> None: ...


# ---------------------------------------------------------------------------------------------
# Store helpers shared by `addrop run` and `addrop sweep`
# ---------------------------------------------------------------------------------------------


def experiment_store(spec: ExperimentSpec, results_root: Path | None) -> ExperimentStore:
    """``<results root>/<name>``: the root from --results, else the spec's results_dir."""
    root = results_root if results_root is not None else resolve_path(spec.results_dir, Path.cwd())
    return ExperimentStore(root.resolve() / spec.name)


def open_batch(spec: ExperimentSpec, spec_path: Path, store: ExperimentStore) -> Batch:
    """Check everything checkable (data, model), then open the store for writing."""
    from addrop_cli.preflight import preflight

    base_dir = spec_path.parent.resolve()
    problems = preflight(spec, base_dir, str(spec_path))
    if problems:
        raise SpecError(*problems)
    spec_yaml = spec_to_yaml(spec)
    spec_hash = config_hash(yaml.safe_load(spec_yaml))
    store.open_for_writing(spec.name, spec_hash, spec_yaml)
    return Batch(store, spec_hash, base_dir)


def run_config(run: RunSpec, spec_hash: str) -> dict:
    """run.json: everything about the run, in plain JSON (the store's format)."""
    return {
        "run_id": run.run_id,
        "experiment": run.experiment,
        "spec_hash": spec_hash,
        "task": run.task,
        "variant": run.variant,
        "method": run.params.method,
        "method_params": run.params.model_dump(mode="json"),
        "seed": run.seed,
        "model": run.model.model_dump(mode="json"),
        "train": run.train.model_dump(mode="json"),
        "data": run.data.model_dump(mode="json"),
        "sweep": run.sweep,
    }


def print_plan(
    spec: ExperimentSpec, runs: list[RunSpec], store: ExperimentStore, console: Console
) -> None:
    """--dry-run: the resolved spec and the whole run matrix with each run's state."""
    console.rule("resolved spec")
    console.print(spec_to_yaml(spec), markup=False, highlight=False)
    table = Table(title=f"{len(runs)} runs -> {store.root}")
    swept = any(run.sweep for run in runs)
    for column in ("run id", "task", "variant", "method", "seed", "state"):
        table.add_column(column)
    if swept:
        table.add_column("sweep point (stage)")
    for run in runs:
        state = store.run(run.run_id).status
        row = [
            run.run_id,
            run.task,
            run.variant,
            run.params.method,
            str(run.seed),
            {"absent": "to run", "unfinished": "to run (restart)"}.get(state, state),
        ]
        if swept:
            sweep = run.sweep or {}
            point = ", ".join(f"{k}={v}" for k, v in (sweep.get("point") or {}).items())
            row.append(f"{point} ({sweep['stage']})" if sweep else "-")
        table.add_row(*row)
    console.print(table)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def run_experiment(
    spec: ExperimentSpec,
    *,
    spec_path: Path,
    results_root: Path | None = None,
    dry_run: bool = False,
    plain: bool = True,
    retry_failed: bool = True,
    console: Console | None = None,
) -> int:
    """Run every pending run of ``spec``; returns the exit code (0, 1 if any failed, 130).

    The back-end (local serial or pool, Slurm) comes from ``spec.executor``.
    """
    console = console or Console()
    runs = expand(spec, spec_path.parent)
    store = experiment_store(spec, results_root)
    if dry_run:
        print_plan(spec, runs, store, console)
        return EXIT_OK
    if spec.sweep is not None:
        console.print(
            "note: this spec has a sweep: block, which `addrop run` ignores (it runs the plain "
            "matrix); use `addrop sweep` to search it",
            highlight=False,
        )
    batch = open_batch(spec, spec_path, store)
    backend = make_backend(spec.executor, spec.train.device, plain=plain)
    summary = execute_runs(
        runs, batch, backend, name=spec.name, console=console, retry_failed=retry_failed
    )
    return summary.exit_code


def execute_runs(
    runs: Sequence[RunSpec],
    batch: Batch,
    backend: Backend,
    *,
    name: str,
    console: Console,
    retry_failed: bool = True,
) -> Summary:
    """Skip what the store already holds, hand the rest to ``backend``, print a summary."""
    summary = Summary()
    pending = []
    for run in runs:
        status = batch.store.run(run.run_id).status
        if status == "done" or (status == "failed" and not retry_failed):
            summary.skipped.append(run)
        else:
            pending.append(run)
    console.print(
        f"{name}: {len(runs)} runs, {len(summary.skipped)} already in {batch.store.root} "
        f"(skipped), {len(pending)} to run",
        highlight=False,
    )
    try:
        if pending:
            backend.execute(pending, batch, summary, console)
    except KeyboardInterrupt:
        summary.interrupted = True
        finished = {r.run_id for r in summary.done + summary.busy + summary.skipped}
        finished |= {r.run_id for r, _ in summary.failed + summary.lost}
        summary.left = [r for r in pending if r.run_id not in finished]
        print_summary(console, summary, batch.store)
        console.print(
            f"interrupted: {len(summary.left)} runs left; run the same command again to "
            "finish them (finished runs are kept and skipped)",
            highlight=False,
        )
        return summary
    print_summary(console, summary, batch.store)
    return summary


def make_backend(executor: ExecutorSpec, device: str = "auto", *, plain: bool = True) -> Backend:
    """The back-end ``executor`` asks for."""
    if executor.backend == "slurm":
        from addrop_cli.slurm import SlurmBackend

        return SlurmBackend(executor.slurm, threads=executor.threads)
    gpus = visible_gpus() if device in ("auto", "cuda") else []
    workers = executor.workers or max(1, len(gpus))
    if workers == 1:
        return SerialBackend(plain=plain, threads=executor.threads)
    return PoolBackend(workers=workers, gpus=gpus, threads=executor.threads)


# ---------------------------------------------------------------------------------------------
# One attempt at one run: the same in this process, a pool worker or a Slurm job
# ---------------------------------------------------------------------------------------------


def attempt(run: RunSpec, batch: Batch, progress: PlainProgress, index: int) -> Outcome:
    """Take the run's lock, skip it if finished meanwhile, else run it start to end."""
    with batch.store.lock(run.run_id) as locked:
        if not locked:
            progress.run_end(run, "busy", "(another addrop process is running it)")
            return Outcome("busy")
        folder = batch.store.run(run.run_id)
        if folder.status == "done":  # finished by another process meanwhile
            return Outcome("skipped")
        progress.run_start(run, index)
        return _execute(run, folder, batch, progress)


def with_threads(run: RunSpec, threads: int | None) -> RunSpec:
    """The run with ``threads`` torch threads, unless its spec sets them (not part of its id)."""
    if threads is None or run.train.threads is not None:
        return run
    return run.model_copy(update={"train": run.train.model_copy(update={"threads": threads})})


def _execute(run: RunSpec, folder: RunFolder, batch: Batch, progress: PlainProgress) -> Outcome:
    """One run, contained: any exception becomes a FAILED run, never a crash of the experiment."""
    from addrop_cli.environment import describe_environment
    from addrop_cli.failures import describe_failure, release_accelerator_memory
    from addrop_cli.train import run_one

    folder.start(run_config(run, batch.spec_hash))
    try:
        outcome = run_one(
            run,
            on_eval=lambda record: (folder.append_epoch(record), progress.evaluated(run, record)),
            on_step=progress.step,
            keep_best_state=run.train.save_checkpoint,
        )
    except (KeyboardInterrupt, StoreError):
        # the folder stays unfinished and is started again next time; a store that cannot be
        # written (full disk) stops the experiment with its one-line error
        raise
    except Exception as err:  # noqa: BLE001 - containment is the point
        reason = describe_failure(err)
        folder.write_json("traceback.json", {"traceback": traceback.format_exc()})
        folder.fail(reason, {"task": run.task, "variant": run.variant, "seed": run.seed})
        release_accelerator_memory()
        progress.run_end(run, "FAILED", reason.splitlines()[0][:200])
        return Outcome("failed", reason)
    folder.write_json("env.json", describe_environment(batch.base_dir, outcome.metrics["device"]))
    folder.write_json("predictions.json", outcome.predictions)
    if outcome.best_state is not None:
        folder.write_checkpoint(outcome.best_state)
    folder.finish(outcome.metrics)
    main = outcome.metrics["main_metric"]
    progress.run_end(
        run,
        "done",
        f"best {main}={outcome.metrics['best']['dev'][main]:.4f} "
        f"(epoch {outcome.metrics['best_epoch']}, {outcome.metrics['wall_time_s']:.0f}s)",
    )
    return Outcome("done")


# ---------------------------------------------------------------------------------------------
# local, one worker: this process
# ---------------------------------------------------------------------------------------------


class SerialBackend:
    """Runs one after another in this process, with live progress on a terminal."""

    def __init__(self, *, plain: bool = True, threads: int | None = None) -> None:
        self.plain = plain
        self.threads = threads

    def execute(
        self, runs: Sequence[RunSpec], batch: Batch, summary: Summary, console: Console
    ) -> None:
        progress = make_progress(console, self.plain)
        progress.experiment_start(len(runs), len(runs))
        try:
            for index, run in enumerate(runs):
                outcome = attempt(with_threads(run, self.threads), batch, progress, index)
                summary.record(run, outcome.status, outcome.reason)
        finally:
            progress.close()


# ---------------------------------------------------------------------------------------------
# local, N workers: a pool of processes, one GPU each when there are GPUs
# ---------------------------------------------------------------------------------------------


def visible_gpus() -> list[str]:
    """The GPU ids this process may use (honouring CUDA_VISIBLE_DEVICES); [] without CUDA."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA is simply no GPU
        return []
    if count == 0:
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        ids = [x.strip() for x in listed.split(",") if x.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def worker_placement(
    workers: int, gpus: Sequence[str], threads: int | None, cpus: int | None = None
) -> list[tuple[str | None, int | None]]:
    """(CUDA_VISIBLE_DEVICES, torch threads) for each worker.

    With GPUs, workers take them round robin (more workers than GPUs share them). On CPU, each
    worker gets ``threads`` torch threads, by default an equal share of the cores.
    """
    if gpus:
        return [(gpus[i % len(gpus)], threads) for i in range(workers)]
    cpus = cpus or os.cpu_count() or 1
    share = threads or max(1, cpus // workers)
    return [(None, share) for _ in range(workers)]


def _placement_text(placement: Sequence[tuple[str | None, int | None]]) -> str:
    gpus = [gpu for gpu, _ in placement if gpu is not None]
    if gpus:
        return "on GPUs " + ", ".join(gpus)
    threads = {t for _, t in placement}
    return f"{'/'.join(str(t) for t in sorted(threads, key=str))} torch threads each"


class PoolBackend:
    """N worker processes pulling runs from a queue; the parent prints one line per event."""

    def __init__(self, *, workers: int, gpus: Sequence[str] = (), threads: int | None = None):
        self.placement = worker_placement(workers, gpus, threads)

    def execute(
        self, runs: Sequence[RunSpec], batch: Batch, summary: Summary, console: Console
    ) -> None:
        if len(runs) == 1:  # a process would only add its start-up time
            gpu, threads = self.placement[0]
            SerialBackend(threads=None if gpu is not None else threads).execute(
                runs, batch, summary, console
            )
            return
        context = multiprocessing.get_context("spawn")  # no forked torch or CUDA state
        tasks: Any = context.Queue()
        events: Any = context.Queue()
        for index, run in enumerate(runs):
            tasks.put((index, run))
        workers = min(len(self.placement), len(runs))
        for _ in range(workers):
            tasks.put(None)
        procs = {}
        for worker in range(workers):
            gpu, threads = self.placement[worker]
            procs[worker] = context.Process(
                target=_pool_worker,
                args=(worker, gpu, threads, batch, tasks, events),
                name=f"addrop-worker-{worker}",
                daemon=True,
            )
            procs[worker].start()
        console.print(
            f"local pool: {workers} worker processes ({_placement_text(self.placement[:workers])})",
            highlight=False,
        )
        progress = PlainProgress(console)
        progress.experiment_start(len(runs), len(runs))
        try:
            self._collect(runs, batch, procs, events, progress, summary)
        except KeyboardInterrupt:
            _stop(procs.values())
            raise

    def _collect(
        self,
        runs: Sequence[RunSpec],
        batch: Batch,
        procs: dict[int, Any],
        events: Any,
        progress: PlainProgress,
        summary: Summary,
    ) -> None:
        """Relay the workers' events until every worker has exited."""
        running: dict[int, int] = {}  # worker -> index of its run
        alive = set(procs)
        while alive:
            try:
                kind, worker, *rest = events.get(timeout=0.5)
            except queue.Empty:
                for worker in sorted(alive):
                    if procs[worker].is_alive():
                        continue
                    alive.discard(worker)
                    if worker in running:
                        run = runs[running.pop(worker)]
                        code = procs[worker].exitcode
                        reason = f"worker process died (exit code {code}) during the run"
                        status = _record_lost(run, batch, reason)
                        progress.run_end(run, status.upper(), reason)
                        summary.record(run, status, reason)
                continue
            if kind == "start":
                running[worker] = rest[0]
                progress.run_start(runs[rest[0]], rest[0])
            elif kind == "eval":
                progress.evaluated(runs[rest[0]], rest[1])
            elif kind == "end":
                progress.run_end(runs[rest[0]], rest[1], rest[2])
            elif kind == "outcome":
                running.pop(worker, None)
                summary.record(runs[rest[0]], rest[1], rest[2])
            elif kind == "exit":
                alive.discard(worker)
                procs[worker].join(timeout=10)


def _record_lost(run: RunSpec, batch: Batch, reason: str) -> Status:
    """Mark a run whose worker died as FAILED (retried by the next invocation), if we can."""
    with batch.store.lock(run.run_id) as locked:
        folder = batch.store.run(run.run_id)
        if not locked or folder.status in ("done", "failed"):
            return "lost"
        if folder.status == "unfinished":
            folder.fail(reason, {"task": run.task, "variant": run.variant, "seed": run.seed})
            return "failed"
    return "lost"


def _stop(procs: Any) -> None:
    """Let workers that got the Ctrl-C exit, then end the rest."""
    for proc in procs:
        proc.join(timeout=5)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)


class _QueueProgress(PlainProgress):
    """A worker's progress calls, sent to the parent as events instead of printed."""

    def __init__(self, events: Any, worker: int) -> None:
        self.events = events
        self.worker = worker
        self.index = -1

    def run_start(self, run: RunSpec, index: int) -> None:
        self.index = index
        self.events.put(("start", self.worker, index))

    def evaluated(self, run: RunSpec, record: dict[str, Any]) -> None:
        self.events.put(("eval", self.worker, self.index, record))

    def run_end(self, run: RunSpec, status: str, detail: str) -> None:
        self.events.put(("end", self.worker, self.index, status, detail))


def _pool_worker(
    worker: int,
    gpu: str | None,
    threads: int | None,
    batch: Batch,
    tasks: Any,
    events: Any,
) -> None:
    """A worker process: pin the GPU or threads, then take runs until the queue says stop."""
    die_with_parent()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before anything initialises CUDA
    progress = _QueueProgress(events, worker)
    try:
        while (item := tasks.get()) is not None:
            index, run = item
            progress.index = index
            outcome = attempt(with_threads(run, threads), batch, progress, index)
            events.put(("outcome", worker, index, outcome.status, outcome.reason))
    except KeyboardInterrupt:
        pass  # the parent got the Ctrl-C too and reports what is left
    finally:
        events.put(("exit", worker))


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphans holding run locks)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------


def print_summary(console: Console, summary: Summary, store: ExperimentStore) -> None:
    parts = [
        f"{len(summary.done)} done",
        f"{len(summary.skipped)} skipped",
        f"{len(summary.failed)} failed",
    ]
    if summary.busy:
        parts.append(f"{len(summary.busy)} running elsewhere")
    if summary.lost:
        parts.append(f"{len(summary.lost)} lost")
    if summary.left:
        parts.append(f"{len(summary.left)} left")
    console.print(f"runs: {', '.join(parts)}; results in {store.root}", highlight=False)
    for run, reason in summary.failed:
        console.print(
            f"  failed: {run.label}: {reason.splitlines()[0][:200]}", markup=False, highlight=False
        )
    for run, reason in summary.lost:
        console.print(
            f"  lost: {run.label}: {reason}; run the same command again to retry it",
            markup=False,
            highlight=False,
        )
