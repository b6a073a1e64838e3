"""Local back-ends: serial in this process, or a pool of worker processes (one per GPU)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from addrop_cli.engine.progress import PlainProgress, make_progress
from addrop_cli.execution.batch import Batch, Status, Summary, attempt, with_threads
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
