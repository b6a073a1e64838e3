"""Local back-ends: serial in this process, or a pool of worker processes (K per GPU)."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from addrop_cli.engine.loggers import StepEvent
from addrop_cli.execution.attempt.context import (
    RunContext,
    Summary,
    attempt,
    record_lost,
    with_threads,
)
from addrop_cli.execution.attempt.display import PlainProgress, make_progress
from addrop_cli.execution.backends.base import Backend, Quiet
from addrop_cli.execution.backends.placement import (
    Placement,
    plan_pool,
    runs_sharing,
    spec_run_bytes,
    visible_gpus,
)
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.spec.schema import ExperimentSpec
from addrop_cli.store.records import EpochRecord


class LocalBackend(Quiet):
    """The ``local`` back-end: this process, or a pool of worker processes when more than one
    run fits at once (``executor.workers``, ``runs_per_gpu``)."""

    @classmethod
    def from_spec(
        cls, spec: ExperimentSpec, base_dir: Path, *, plain: bool, console: Console | None
    ) -> Backend:
        executor = spec.executor
        gpus = visible_gpus() if spec.train.device in ("auto", "cuda") else []
        plan = plan_pool(executor, gpus, lambda: spec_run_bytes(spec, base_dir))
        if plan.note and console is not None:
            console.print(f"note: {plan.note}", highlight=False)
        if plan.workers == 1:
            return SerialBackend(plain=plain, threads=executor.threads)
        return PoolBackend(plan.placement, plain=plain)


class SerialBackend(LocalBackend):
    """Runs one after another in this process, with live progress on a terminal."""

    slots = 1

    def __init__(self, *, plain: bool = True, threads: int | None = None) -> None:
        self.plain = plain
        self.threads = threads

    def execute(
        self, runs: Sequence[RunSpec], context: RunContext, summary: Summary, console: Console
    ) -> None:
        progress = make_progress(console, self.plain)
        progress.experiment_start(len(runs), len(runs), runs=runs)
        try:
            for index, run in enumerate(runs):
                outcome = attempt(with_threads(run, self.threads), context, progress, index)
                progress.settled(run)
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
        return f"{gpus}; {threads} {_threads(threads)} each"
    return f"{threads} {_threads(threads)} each"


def _threads(shown: str) -> str:
    return "torch thread" if shown == "1" else "torch threads"


class PoolBackend(LocalBackend):
    """N worker processes pulling runs from a queue; the parent shows their events (one live
    table on a terminal, else one line per event)."""

    def __init__(self, placement: Placement, *, plain: bool = True):
        self.placement = placement
        self.plain = plain

    @property
    def slots(self) -> int:
        return len(self.placement)

    def execute(
        self, runs: Sequence[RunSpec], context: RunContext, summary: Summary, console: Console
    ) -> None:
        if len(runs) == 1:  # a process would only add its start-up time
            serial = SerialBackend(plain=self.plain, threads=self.placement[0][1])
            serial.execute(runs, context, summary, console)
            return
        spawn = multiprocessing.get_context("spawn")  # no forked torch or CUDA state
        tasks: Any = spawn.Queue()
        events: Any = spawn.Queue()
        stop: Any = spawn.Event()
        for index, run in enumerate(runs):
            tasks.put((index, run))
        workers = min(len(self.placement), len(runs))
        for _ in range(workers):
            tasks.put(None)
        pool = _Pool(events, _Spawner(spawn, context, tasks, events, stop))
        sharing = runs_sharing(self.placement[:workers])
        for worker in range(workers):
            gpu, threads = self.placement[worker]
            pool.start(worker, (gpu, threads, sharing[worker]))
        console.print(
            f"local pool: {workers} worker processes ({_placement_text(self.placement[:workers])})",
            highlight=False,
        )
        progress = make_progress(console, self.plain)
        progress.experiment_start(len(runs), len(runs), runs=runs, slots=workers)
        try:
            pool.collect(runs, context, progress, summary)
        except KeyboardInterrupt:
            # SIGINT may have reached this process only (kill -INT, a scheduler, a supervisor):
            # no new run starts, the workers' current runs stop, and their outcomes are read
            stop.set()
            pool.interrupt()
            with contextlib.suppress(KeyboardInterrupt):
                pool.collect(runs, context, progress, summary, timeout=_STOP_GRACE_S)
            _stop(pool.procs.values())
            raise
        finally:
            progress.close()


_STOP_GRACE_S = 15.0
"""How long interrupted workers get to stop their runs before they are terminated."""


@dataclass(frozen=True)
class _Spawner:
    """What a worker process is started with (the same for a replacement)."""

    processes: Any
    """multiprocessing's spawn context"""
    context: RunContext
    tasks: Any
    events: Any
    stop: Any

    def spawn(self, worker: int, place: tuple[str | None, int | None, int]) -> Any:
        proc = self.processes.Process(
            target=_pool_worker,
            args=(worker, place, self.context, self.tasks, self.events, self.stop),
            name=f"addrop-worker-{worker}",
            daemon=True,
        )
        proc.start()
        return proc


class _Pool:
    """The worker processes and what the parent knows of them from their events."""

    def __init__(self, events: Any, spawner: _Spawner) -> None:
        self.events = events
        self.spawner = spawner
        self.places: dict[int, tuple[str | None, int | None, int]] = {}
        self.procs: dict[int, Any] = {}
        self.ready: set[int] = set()
        """Workers whose SIGINT handler is installed (safe to signal)."""
        self.running: dict[int, int] = {}  # worker -> index of its run
        self.alive: set[int] | None = None

    def start(self, worker: int, place: tuple[str | None, int | None, int]) -> None:
        """Start (or start again, in the place of a dead one) worker ``worker`` at ``place``."""
        self.places[worker] = place
        self.procs[worker] = self.spawner.spawn(worker, place)
        if self.alive is not None:
            self.alive.add(worker)

    def interrupt(self) -> None:
        """Forward SIGINT to the workers that can take it (each stops its current run)."""
        for worker in self.ready & (self.alive or set()):
            with contextlib.suppress(OSError):
                os.kill(self.procs[worker].pid, signal.SIGINT)

    def collect(
        self,
        runs: Sequence[RunSpec],
        context: RunContext,
        progress: PlainProgress,
        summary: Summary,
        timeout: float | None = None,
    ) -> None:
        """Relay the workers' events until every worker has exited (or ``timeout`` passed)."""
        if self.alive is None:
            self.alive = set(self.procs)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.alive and (deadline is None or time.monotonic() < deadline):
            try:
                kind, worker, *rest = self.events.get(timeout=0.5)
            except queue.Empty:
                self._reap(runs, context, progress, summary)
                continue
            if kind == "ready":
                self.ready.add(worker)
            elif kind == "start":
                self.running[worker] = rest[0]
                progress.run_start(runs[rest[0]], rest[0])
            elif kind == "step":
                progress.step(runs[rest[0]], rest[1])
            elif kind == "eval":
                progress.evaluated(runs[rest[0]], rest[1])
            elif kind == "end":
                progress.run_end(runs[rest[0]], rest[1], rest[2])
            elif kind == "outcome":
                self.running.pop(worker, None)
                progress.settled(runs[rest[0]])
                summary.record(runs[rest[0]], rest[1], rest[2])
            elif kind == "exit":
                self.alive.discard(worker)
                self.running.pop(worker, None)
                self.procs[worker].join(timeout=10)

    def _reap(
        self,
        runs: Sequence[RunSpec],
        context: RunContext,
        progress: PlainProgress,
        summary: Summary,
    ) -> None:
        """Workers that died without saying so (SIGKILL, the out-of-memory killer): their run
        is recorded FAILED with the reason, and a new worker takes their place."""
        assert self.alive is not None
        for worker in sorted(self.alive):
            if self.procs[worker].is_alive():
                continue
            self.alive.discard(worker)
            self.ready.discard(worker)
            if worker not in self.running:
                continue  # it died between runs, after its last one: nothing of it is lost
            run = runs[self.running.pop(worker)]
            reason = death_reason(self.procs[worker].exitcode)
            outcome = record_lost(run, context, reason)
            progress.run_end(run, outcome.status, outcome.reason)
            summary.record(run, outcome.status, outcome.reason)
            if not self.spawner.stop.is_set():  # its end-of-queue marker is still queued
                self.start(worker, self.places[worker])


def death_reason(exitcode: int | None) -> str:
    """Why a worker process ended in the middle of a run, in words."""
    if exitcode is not None and exitcode < 0:
        sig = signal.Signals(-exitcode)
        likely = "; likely out of memory" if sig == signal.SIGKILL else ""
        return f"worker killed by signal {-exitcode} ({sig.name}{likely}) during the run"
    return f"worker process died (exit code {exitcode}) during the run"


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

    total = "?"  # the parent numbers the runs; a worker's train.log says [i/?]
    step_every_s = 0.5
    """Steps reach the parent's live view at most this often (and each epoch's last)."""

    def __init__(self, events: Any, worker: int) -> None:
        self.events = events
        self.worker = worker
        self.index = -1
        self.sent = 0.0

    def step(self, run: RunSpec, progress: StepEvent) -> None:
        now = time.monotonic()
        if (
            now - self.sent >= self.step_every_s
            or progress.step_in_epoch == progress.steps_per_epoch
        ):
            self.sent = now
            self.events.put(("step", self.worker, self.index, progress))

    def run_start(self, run: RunSpec, index: int) -> None:
        self.index = index
        self.events.put(("start", self.worker, index))

    def evaluated(self, run: RunSpec, record: EpochRecord) -> None:
        self.events.put(("eval", self.worker, self.index, record))

    def run_end(self, run: RunSpec, status: str, detail: str) -> None:
        self.events.put(("end", self.worker, self.index, status, detail))

    def note(self, run: RunSpec, text: str) -> None:
        pass  # a tracker problem in a worker goes to the run's train.log only


def _pool_worker(
    worker: int,
    place: tuple[str | None, int | None, int],
    context: RunContext,
    tasks: Any,
    events: Any,
    stop: Any,
) -> None:
    """A worker process: pin the GPU and threads, then take runs until the queue says stop.

    ``place``: its GPU (or None), torch threads, and how many workers share that GPU (named in
    the advice when a run runs out of memory).
    """
    signal.signal(signal.SIGINT, _interrupt_once)
    gpu, threads, sharing = place
    die_with_parent()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before anything initialises CUDA
    progress = _QueueProgress(events, worker)
    events.put(("ready", worker))
    try:
        while not stop.is_set() and (item := tasks.get()) is not None and not stop.is_set():
            index, run = item
            progress.index = index
            outcome = attempt(with_threads(run, threads), context, progress, index, sharing=sharing)
            events.put(("outcome", worker, index, outcome.status, outcome.reason))
    except KeyboardInterrupt:
        pass  # the parent got the Ctrl-C too and reports what is left
    finally:
        events.put(("exit", worker))


def _interrupt_once(signum: int, frame: Any) -> None:
    """A worker's SIGINT: stop the current run once. A Ctrl-C on a terminal reaches the worker
    and the parent, which forwards it again; the second one must not break the clean exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphans holding run locks)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


# ---------------------------------------------------------------------------------------------
