"""Local back-ends: serial in this process, or a pool of worker processes (K per GPU)."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.connection import Connection
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
    """N worker processes, each handed one run at a time over its own pipe; the parent shows
    their events (one live table on a terminal, else one line per event)."""

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
        workers = min(len(self.placement), len(runs))
        pool = _Pool(runs, _Spawner(spawn, context))
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
            pool.collect(context, progress, summary)
        except KeyboardInterrupt:
            # SIGINT may have reached this process only (kill -INT, a scheduler, a supervisor):
            # no new run starts, the workers' current runs stop, and their outcomes are read
            pool.stopping = True
            pool.interrupt()
            with contextlib.suppress(KeyboardInterrupt):
                pool.collect(context, progress, summary, timeout=_STOP_GRACE_S)
            _stop(pool.procs.values())
            raise
        finally:
            progress.close()
            pool.close()


_STOP_GRACE_S = 15.0
"""How long interrupted workers get to stop their runs before they are terminated."""

Place = tuple[str | None, int | None, int]
"""A worker's GPU (or None), torch threads, and how many workers share that GPU."""


@dataclass(frozen=True)
class _Spawner:
    """What a worker process is started with (the same for a replacement)."""

    processes: Any
    """multiprocessing's spawn context"""
    context: RunContext

    def spawn(self, worker: int, place: Place, conn: Connection) -> Any:
        proc = self.processes.Process(
            target=_pool_worker,
            args=(worker, place, self.context, conn),
            name=f"addrop-worker-{worker}",
            daemon=True,
        )
        proc.start()
        return proc


class _Pool:
    """The worker processes, the runs not yet handed out, and what the parent knows of the
    workers from their events.

    One pipe per worker, no shared queue or event: those hold named semaphores that Python's
    resource tracker reports as leaked when a SIGKILL ends this process and its workers.
    """

    def __init__(self, runs: Sequence[RunSpec], spawner: _Spawner) -> None:
        self.runs = runs
        self.spawner = spawner
        self.pending = deque(enumerate(runs))
        self.stopping = False
        """Set on Ctrl-C: no run is handed out any more."""
        self.places: dict[int, Place] = {}
        self.procs: dict[int, Any] = {}
        self.conns: dict[int, Connection] = {}
        self.ready: set[int] = set()
        """Workers whose SIGINT handler is installed (safe to signal)."""
        self.given: dict[int, tuple[int, RunSpec]] = {}  # handed out, not started yet
        self.running: dict[int, int] = {}  # worker -> index of its run
        self.alive: set[int] = set()

    def start(self, worker: int, place: Place) -> None:
        """Start (or start again, in the place of a dead one) worker ``worker`` at ``place``."""
        mine, theirs = self.spawner.processes.Pipe()
        self.places[worker] = place
        self.procs[worker] = self.spawner.spawn(worker, place, theirs)
        theirs.close()  # the worker holds its end alone: its death reads as the pipe's end
        self.conns[worker] = mine
        self.alive.add(worker)

    def interrupt(self) -> None:
        """Forward SIGINT to the workers that can take it (each stops its current run)."""
        for worker in self.ready & self.alive:
            with contextlib.suppress(OSError):
                os.kill(self.procs[worker].pid, signal.SIGINT)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()

    def collect(
        self,
        context: RunContext,
        progress: PlainProgress,
        summary: Summary,
        timeout: float | None = None,
    ) -> None:
        """Relay the workers' events until every worker has exited (or ``timeout`` passed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.alive and (deadline is None or time.monotonic() < deadline):
            # a worker's pipe (an event, or its end) or its process sentinel (it exited)
            watched: dict[Any, int] = {self.conns[w]: w for w in self.alive}
            watched |= {self.procs[w].sentinel: w for w in self.alive}
            for ready in connection.wait(list(watched), timeout=0.5):
                if watched[ready] in self.alive:
                    self._read(watched[ready], context, progress, summary)

    def _read(
        self, worker: int, context: RunContext, progress: PlainProgress, summary: Summary
    ) -> None:
        """Relay what ``worker`` sent; a worker that ended without saying so is lost."""
        conn = self.conns[worker]
        try:
            while worker in self.alive and conn.poll():
                self._relay(worker, conn.recv(), progress, summary)
        except (EOFError, OSError):
            pass  # every event it sent was read: it died (reset: with a run it never read)
        else:
            if worker not in self.alive or self.procs[worker].is_alive():
                return
        self._lost(worker, context, progress, summary)

    def _relay(
        self, worker: int, message: tuple, progress: PlainProgress, summary: Summary
    ) -> None:
        kind, *rest = message
        if kind == "ready":
            self.ready.add(worker)
            self._give(worker)
        elif kind == "start":
            self.given.pop(worker, None)
            self.running[worker] = rest[0]
            progress.run_start(self.runs[rest[0]], rest[0])
        elif kind == "step":
            progress.step(self.runs[rest[0]], rest[1])
        elif kind == "eval":
            progress.evaluated(self.runs[rest[0]], rest[1])
        elif kind == "end":
            progress.run_end(self.runs[rest[0]], rest[1], rest[2])
        elif kind == "outcome":
            self.given.pop(worker, None)
            self.running.pop(worker, None)
            progress.settled(self.runs[rest[0]])
            summary.record(self.runs[rest[0]], rest[1], rest[2])
            self._give(worker)
        elif kind == "exit":
            self.alive.discard(worker)
            self.running.pop(worker, None)
            self.procs[worker].join(timeout=10)

    def _give(self, worker: int) -> None:
        """Hand ``worker`` its next run, or None: no more runs, it exits."""
        task = None if self.stopping or not self.pending else self.pending.popleft()
        if task is not None:
            self.given[worker] = task
        with contextlib.suppress(OSError):  # it died: its pipe's end is read next
            self.conns[worker].send(task)

    def _lost(
        self, worker: int, context: RunContext, progress: PlainProgress, summary: Summary
    ) -> None:
        """A worker that died without saying so (SIGKILL, the out-of-memory killer): its run
        is recorded FAILED with the reason, and a new worker takes its place."""
        self.procs[worker].join(timeout=10)  # its exit code
        self.alive.discard(worker)
        self.ready.discard(worker)
        self.conns[worker].close()
        task = self.given.pop(worker, None)
        if task is not None:
            self.pending.appendleft(task)  # handed out, never started: another worker runs it
        if worker not in self.running:
            return  # it died between runs: nothing of it is lost
        run = self.runs[self.running.pop(worker)]
        reason = death_reason(self.procs[worker].exitcode)
        outcome = record_lost(run, context, reason)
        progress.run_end(run, outcome.status, outcome.reason)
        summary.record(run, outcome.status, outcome.reason)
        if self.pending and not self.stopping:
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


class _Link:
    """A worker's end of its pipe. A Ctrl-C raised in the middle of a send would leave half a
    message in the pipe, so it waits until the send is done."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sending = False
        self.interrupted = False

    def send(self, message: tuple) -> None:
        self.sending = True
        try:
            # the parent is gone (this process is SIGKILLed with it): not an error of the run
            with contextlib.suppress(OSError):
                self.conn.send(message)
        finally:
            self.sending = False
        if self.interrupted:
            self.interrupted = False
            raise KeyboardInterrupt

    def interrupt(self, signum: int, frame: Any) -> None:
        """A worker's SIGINT: stop the current run once. A Ctrl-C on a terminal reaches the
        worker and the parent, which forwards it again; the second must not break the exit."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if not self.sending:
            raise KeyboardInterrupt
        self.interrupted = True


class _PipeProgress(PlainProgress):
    """A worker's progress calls, sent to the parent as events instead of printed."""

    total = "?"  # the parent numbers the runs; a worker's train.log says [i/?]
    step_every_s = 0.5
    """Steps reach the parent's live view at most this often (and each epoch's last)."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.index = -1
        self.sent = 0.0

    def step(self, run: RunSpec, progress: StepEvent) -> None:
        now = time.monotonic()
        if (
            now - self.sent >= self.step_every_s
            or progress.step_in_epoch == progress.steps_per_epoch
        ):
            self.sent = now
            self.link.send(("step", self.index, progress))

    def run_start(self, run: RunSpec, index: int) -> None:
        self.index = index
        self.link.send(("start", index))

    def evaluated(self, run: RunSpec, record: EpochRecord) -> None:
        self.link.send(("eval", self.index, record))

    def run_end(self, run: RunSpec, status: str, detail: str) -> None:
        self.link.send(("end", self.index, status, detail))

    def note(self, run: RunSpec, text: str) -> None:
        pass  # a tracker problem in a worker goes to the run's train.log only


def _pool_worker(worker: int, place: Place, context: RunContext, conn: Connection) -> None:
    """A worker process: pin the GPU and threads, then run what the parent hands it until it
    hands None.

    ``place``: its GPU (or None), torch threads, and how many workers share that GPU (named in
    the advice when a run runs out of memory).
    """
    link = _Link(conn)
    signal.signal(signal.SIGINT, link.interrupt)
    gpu, threads, sharing = place
    die_with_parent()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before anything initialises CUDA
    progress = _PipeProgress(link)
    try:
        link.send(("ready",))
        while (task := _next_task(conn)) is not None:
            index, run = task
            progress.index = index
            outcome = attempt(with_threads(run, threads), context, progress, index, sharing=sharing)
            link.send(("outcome", index, outcome.status, outcome.reason))
    except KeyboardInterrupt:
        pass  # the parent got the Ctrl-C too and reports what is left
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            link.send(("exit",))


def _next_task(conn: Connection) -> tuple[int, RunSpec] | None:
    """The next run the parent hands this worker; None: no more, or the parent is gone."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphans holding run locks)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


# ---------------------------------------------------------------------------------------------
