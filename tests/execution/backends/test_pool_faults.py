"""A pool worker that dies (SIGKILL, as the kernel's out-of-memory killer sends it) or a run
that runs out of memory in a worker: the run is FAILED with its reason, a new worker takes the
dead one's place, and every other run of the experiment finishes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from fault_helpers import SMOKE, smoke_args, start_addrop

from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand
from addrop_cli.store.reader import load_runs

pytestmark = pytest.mark.faults


def _workers(parent: int) -> list[int]:
    """The pool's worker processes among ``parent``'s children (not multiprocessing's helper)."""
    children: list[int] = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return [
        pid
        for pid in children
        if b"--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _wait_for(condition, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds workers through /proc")
def test_a_killed_worker_fails_its_run_and_the_rest_of_the_experiment_goes_on(
    tmp_path: Path,
) -> None:
    overrides = smoke_args([1, 2, 3])
    runs = expand(load_spec(SMOKE, overrides), SMOKE.parent)
    oom = runs[-1]  # queued last: it starts after the kill, on a worker that survives
    # every step 0.1 s slower (a run lasts long enough to be killed in); the last run's fifth
    # step runs out of memory, as on a full GPU
    faults = {"slow_steps": 0.1, "oom_at": f"{oom.variant}:{oom.seed}:5"}
    process = start_addrop(tmp_path, [*overrides, "--workers", "2"], faults=faults)
    experiment = tmp_path / "smoke" / "runs"
    try:
        # both workers are inside a run (its folder started), then one of them is killed
        _wait_for(lambda: len(list(experiment.glob("*/run.json"))) >= 2)
        victim = _workers(process.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        code = process.finish(timeout=600)
    finally:
        if process.proc.poll() is None:
            process.kill()
    output = process.output()
    assert code == 1, output  # some runs failed: the exit code of any failed run
    assert "Traceback" not in output and "TypeError" not in output, output
    by_id = {r.path.name: r for r in load_runs(tmp_path / "smoke")}
    assert set(by_id) == {run.run_id for run in runs}, output
    killed = [r for r in by_id.values() if "signal 9" in r.reason]
    assert len(killed) == 1, output
    assert killed[0].status == "failed"
    assert "SIGKILL; likely out of memory" in killed[0].reason
    out_of_memory = by_id[oom.run_id]
    assert out_of_memory.status == "failed", output
    assert "out of memory" in out_of_memory.reason and "train.batch_size" in out_of_memory.reason
    failed = {killed[0].path.name, oom.run_id}
    assert all(r.status == "done" for name, r in by_id.items() if name not in failed), output
    summary = next(line for line in output.splitlines() if line.startswith("runs: "))
    assert "2 failed" in summary and f"{len(runs) - 2} done" in summary, output


def test_a_lost_run_is_recorded_failed_once_and_left_alone_when_it_finished_or_is_taken(
    tmp_path: Path,
) -> None:
    """The one policy for a dead pool worker and a Slurm job gone from the queue: an unfinished
    run is FAILED with the reason and its state dropped (a failed run is retried from a clean
    start); a run that finished, that failed on its own, that never started or that another
    process holds keeps what it has."""
    from filelock import FileLock

    from addrop_cli.execution.attempt.context import Outcome, RunContext, record_lost
    from addrop_cli.store.folders import ExperimentStore

    runs = expand(load_spec(SMOKE, smoke_args([1, 2])), SMOKE.parent)
    store = ExperimentStore(tmp_path / "smoke")
    context = RunContext(store=store, spec_hash="h", base_dir=SMOKE.parent)
    never_started, unfinished, finished, taken = runs
    assert record_lost(never_started, context, "gone") == Outcome("failed", "gone")
    assert store.run(never_started.run_id).status == "absent"  # still pending: nothing to mark

    folder = store.run(unfinished.run_id)
    folder.state.current.mkdir(parents=True)
    assert record_lost(unfinished, context, "worker killed") == Outcome("failed", "worker killed")
    assert folder.status == "failed" and folder.failure_reason() == "worker killed"
    assert not folder.state.current.exists()
    # a second report of the same death keeps the first reason (written in this invocation)
    assert record_lost(unfinished, context, "again") == Outcome("failed", "worker killed")

    store.run(finished.run_id).path.mkdir(parents=True)
    (store.run(finished.run_id).path / "DONE").write_text("x\n")
    assert record_lost(finished, context, "gone").status == "done"

    with FileLock(store.runs_dir / f".{taken.run_id}.lock"):
        assert record_lost(taken, context, "gone").status == "busy"


def test_a_dead_workers_reason_names_the_signal_or_the_exit_code() -> None:
    from addrop_cli.execution.backends.local import death_reason

    assert "signal 9 (SIGKILL; likely out of memory)" in death_reason(-9)
    assert "signal 15 (SIGTERM)" in death_reason(-15)
    assert "exit code 3" in death_reason(3)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds workers through /proc")
def test_a_killed_sweep_leaves_no_leaked_semaphore_message_and_a_second_run_finishes(
    tmp_path: Path,
) -> None:
    """SIGKILL the parent while both workers are in a run: the workers die with it, and
    multiprocessing's resource tracker, the last to go, has nothing to report (it writes to the
    stderr it inherited, merged into the output read here until every holder closed it)."""
    overrides = smoke_args([1, 2])
    hold = tmp_path / "hold"
    hold.touch()  # every step waits while it exists: the workers stay busy until the kill
    process = start_addrop(
        tmp_path, [*overrides, "--workers", "2"], faults={"hold_while": str(hold)}
    )
    experiment = tmp_path / "smoke"
    try:
        _wait_for(lambda: len(list((experiment / "runs").glob("*/run.json"))) >= 2)
        workers = _workers(process.proc.pid)
        assert len(workers) == 2, process.output()
        process.proc.kill()
        assert process.proc.wait(60) == -signal.SIGKILL
        _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 60)
        assert process._reader is not None
        process._reader.join(60)  # the output's end: the tracker, its last writer, is gone too
        assert not process._reader.is_alive(), process.output()
    finally:
        hold.unlink()
        if process.proc.poll() is None:
            process.kill()
    assert "leaked" not in process.output() and "semaphore" not in process.output()
    assert "resource_tracker" not in process.output(), process.output()
    unfinished = {r.path.name for r in load_runs(experiment) if r.status != "done"}
    assert unfinished, process.output()  # the kill left runs to finish

    again = start_addrop(tmp_path, [*overrides, "--workers", "2"])
    assert again.finish(timeout=600) == 0, again.output()
    assert "leaked" not in again.output(), again.output()
    by_id = {r.path.name: r for r in load_runs(experiment)}
    assert set(by_id) == {run.run_id for run in expand(load_spec(SMOKE, overrides), SMOKE.parent)}
    assert all(r.status == "done" for r in by_id.values()), again.output()


def test_a_ctrl_c_in_the_middle_of_a_workers_send_waits_until_the_message_is_whole() -> None:
    import multiprocessing

    from addrop_cli.execution.backends.local import _Link, _next_task

    parent, child = multiprocessing.Pipe()
    link = _Link(child)
    before = signal.getsignal(signal.SIGINT)
    try:
        link.sending = True  # as if the signal came inside conn.send
        link.interrupt(signal.SIGINT, None)
        link.sending = False
        assert link.interrupted
        with pytest.raises(KeyboardInterrupt):
            link.send(("step", 3, "whole"))
        assert parent.recv() == ("step", 3, "whole")  # the stream is intact
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # once only
        link.send(("exit",))  # the Ctrl-C was raised once
        with pytest.raises(KeyboardInterrupt):
            link.interrupt(signal.SIGINT, None)  # outside a send: at once
        parent.close()  # the parent is gone: no error in the run, and no more runs
        link.send(("step", 4, "unread"))
        assert _next_task(child) is None
    finally:
        signal.signal(signal.SIGINT, before)
        parent.close()
        child.close()


class _DeadProcess:
    """A worker process that died by SIGKILL, for the pool's bookkeeping."""

    exitcode = -signal.SIGKILL
    sentinel = -1

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return False


def test_a_worker_dead_before_its_run_started_hands_the_run_back(tmp_path: Path) -> None:
    """Killed between being handed a run and starting it: nothing of the run is lost or
    recorded; the run goes back to the front of the queue for another worker."""
    import io
    import multiprocessing

    from rich.console import Console

    from addrop_cli.execution.attempt.context import RunContext, Summary
    from addrop_cli.execution.attempt.display import PlainProgress
    from addrop_cli.execution.backends.local import _Pool, _Spawner
    from addrop_cli.store.folders import ExperimentStore

    runs = expand(load_spec(SMOKE, smoke_args([1])), SMOKE.parent)
    context = RunContext(store=ExperimentStore(tmp_path), spec_hash="h", base_dir=SMOKE.parent)
    ends: list[int] = []

    class Spawner(_Spawner):
        def spawn(self, worker, place, conn):  # type: ignore[no-untyped-def]
            ends.append(os.dup(conn.fileno()))  # its end, closed when the test kills it
            return _DeadProcess()

    pool = _Pool(runs, Spawner(multiprocessing.get_context("spawn"), context))
    pool.start(0, (None, 1, 1))
    pool._give(0)  # its first run: sent, never read or started
    os.close(ends[0])  # killed with the run unread: the parent reads a reset, not an end
    summary = Summary()
    progress = PlainProgress(Console(file=io.StringIO()))
    pool._read(0, context, progress, summary)  # the pipe's end: the worker is gone
    assert pool.alive == set() and pool.given == {} and pool.running == {}
    assert [index for index, _ in pool.pending] == list(range(len(runs)))
    assert len(ends) == 1  # no replacement for a worker that died between runs
    assert summary == Summary()  # nothing recorded
    pool.close()
