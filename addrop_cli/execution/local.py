"""Local back-ends: serial in this process, or a pool of worker processes (K per GPU)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from addrop_cli.engine.progress import PlainProgress, make_progress
from addrop_cli.execution.batch import Batch, Status, Summary, attempt, with_threads
from addrop_cli.execution.placement import Placement, runs_sharing
from addrop_cli.spec.matrix import RunSpec


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
# local, N workers: a pool of processes, K on each GPU when there are GPUs
# ---------------------------------------------------------------------------------------------


def _placement_text(placement: Placement) -> str:
    threads = "/".join(str(t) for t in sorted({t for _, t in placement}, key=str))
    per_gpu = Counter(gpu for gpu, _ in placement if gpu is not None)
    if per_gpu:
        gpus = ", ".join(
            f"{n} on GPU {gpu}" if n > 1 else f"GPU {gpu}" for gpu, n in per_gpu.items()
        )
        return f"{gpus}; {threads} torch threads each"
    return f"{threads} torch threads each"


class PoolBackend:
    """N worker processes pulling runs from a queue; the parent prints one line per event."""

    def __init__(self, placement: Placement):
        self.placement = placement

    def execute(
        self, runs: Sequence[RunSpec], batch: Batch, summary: Summary, console: Console
    ) -> None:
        if len(runs) == 1:  # a process would only add its start-up time
            SerialBackend(threads=self.placement[0][1]).execute(runs, batch, summary, console)
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
        sharing = runs_sharing(self.placement[:workers])
        for worker in range(workers):
            gpu, threads = self.placement[worker]
            procs[worker] = context.Process(
                target=_pool_worker,
                args=(worker, (gpu, threads, sharing[worker]), batch, tasks, events),
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
    place: tuple[str | None, int | None, int],
    batch: Batch,
    tasks: Any,
    events: Any,
) -> None:
    """A worker process: pin the GPU and threads, then take runs until the queue says stop.

    ``place``: its GPU (or None), torch threads, and how many workers share that GPU (named in
    the advice when a run runs out of memory).
    """
    gpu, threads, sharing = place
    die_with_parent()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before anything initialises CUDA
    progress = _QueueProgress(events, worker)
    try:
        while (item := tasks.get()) is not None:
            index, run = item
            progress.index = index
            outcome = attempt(with_threads(run, threads), batch, progress, index, sharing=sharing)
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
