"""Concurrency: `addrop run` processes on one experiment execute each run exactly once.

"Exactly once" is read from the store: every run has DONE and one line in its attempts log
(``results/<experiment>/attempts/<run_id>.log``, one line per start, kept across restarts).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import run_cli
from fault_helpers import (
    SMOKE,
    attempts,
    check_store,
    expected_run_ids,
    smoke_args,
    start_addrop,
)

from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand

EPOCHS = 3


def test_two_processes_at_once_run_each_run_exactly_once_and_take_over_a_dead_lock(
    tmp_path: Path,
) -> None:
    experiment = tmp_path / "smoke"
    overrides = smoke_args([1, 2, 3], EPOCHS)

    # A process killed while it holds a run's lock: the lock file stays, the lock does not.
    dead = start_addrop(tmp_path, overrides)
    assert dead.wait_for(" started"), dead.output()
    dead.kill()
    killed = re.search(r"\((\w{12})\) started", dead.output()).group(1)  # type: ignore[union-attr]
    assert (experiment / "runs" / f".{killed}.lock").exists()
    assert not (experiment / "runs" / killed / "DONE").exists()
    started_before = len(attempts(experiment, killed))  # 1, unless killed before it logged

    # Two processes started together on the same experiment.
    first, second = start_addrop(tmp_path, overrides), start_addrop(tmp_path, overrides)
    codes = (first.finish(), second.finish())
    assert codes == (0, 0), first.output() + "\n" + second.output()

    done = check_store(experiment, EPOCHS)
    assert set(done) == expected_run_ids(overrides)
    starts = {run_id: attempts(experiment, run_id) for run_id in done}
    for run_id, lines in starts.items():
        # the run the dead process had started ran once more, every other run exactly once
        assert len(lines) == (started_before + 1 if run_id == killed else 1), (run_id, lines)
    assert all(str(dead.proc.pid) in line for line in starts[killed][:started_before])
    finished = [_count(p.output(), "done") for p in (first, second)]
    assert sum(finished) == len(done)  # each run finished in exactly one of the two
    pids = {line.split("pid=")[1].split()[0] for lines in starts.values() for line in lines[-1:]}
    print(f"runs finished per process: {finished}; processes that ran something: {len(pids)}")


def _count(output: str, what: str) -> int:
    """A number from the summary line ``runs: 3 done, 1 skipped, ...``."""
    summary = next(line for line in output.splitlines() if line.startswith("runs: "))
    match = re.search(rf"(\d+) {what}", summary)
    return int(match.group(1)) if match else 0


def _hold_lock(lock_file: Path) -> subprocess.Popen[str]:
    """Another process holding a run's lock (as a running `addrop run` would)."""
    code = (
        "import sys; from filelock import FileLock\n"
        f"lock = FileLock({str(lock_file)!r}); lock.acquire(); print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_held_lock_is_left_alone_and_taken_once_its_holder_dies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    overrides = smoke_args([1], epochs=1)
    runs = expand(load_spec(SMOKE, overrides), SMOKE.parent)
    busy = next(r for r in runs if r.variant == "addrop")
    experiment = tmp_path / "smoke"
    (experiment / "runs").mkdir(parents=True)
    holder = _hold_lock(experiment / "runs" / f".{busy.run_id}.lock")
    try:
        result = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *overrides)
        assert result.code == 0, result.err
        assert "1 running elsewhere" in result.out
        assert not (experiment / "runs" / busy.run_id).exists()  # not touched while held
        assert attempts(experiment, busy.run_id) == []
    finally:
        holder.kill()  # SIGKILL: the holder dies without releasing anything
        holder.wait()
    again = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *overrides)
    assert again.code == 0, again.err
    assert "1 already in" in again.out and "1 to run" in again.out
    done = check_store(experiment, 1)
    assert set(done) == {r.run_id for r in runs}
    assert all(len(attempts(experiment, run_id)) == 1 for run_id in done)


# ---------------------------------------------------------------------------------------------
# Failed runs and signals (issue 13, cases 1 and 2)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("retry", ["--no-retry-failed", "--retry-failed"])
def test_two_processes_never_attempt_a_failed_run_twice(tmp_path: Path, retry: str) -> None:
    """A run that one process just failed is not redone by another one that planned it before:
    with --no-retry-failed never, and with retries on, not within the same invocation either.

    The first process writes slowly (up to 2 s per write), so it plans every run, then works
    through them while the second one, started after its first run began, fails the others
    fast. (With retries on, the second may retry a run that failed before it began, once.)
    """
    overrides = [*smoke_args([1, 2, 3], epochs=1), "model.pretrained=true", retry]
    first = start_addrop(tmp_path, overrides, faults={"slow_writes": 2.0})
    assert first.wait_for(") started"), first.output()
    second = start_addrop(tmp_path, overrides)
    codes = (first.finish(), second.finish())
    assert codes == (1, 1), first.output() + "\n" + second.output()
    experiment = tmp_path / "smoke"
    run_ids = expected_run_ids(overrides[:-1])
    assert all((experiment / "runs" / r / "FAILED").is_file() for r in run_ids)
    by = {first.proc.pid: "first", second.proc.pid: "second"}
    order = {
        run_id: [by[int(line.split("pid=")[1].split()[0])] for line in attempts(experiment, run_id)]
        for run_id in run_ids
    }
    allowed = [["first"], ["second"]]
    if retry == "--retry-failed":
        allowed.append(["first", "second"])  # failed by the first before the second began
    assert all(o in allowed for o in order.values()), order  # never first after second
    failed = [_count(p.output(), "failed") for p in (first, second)]
    assert sum(failed) == sum(map(len, order.values())), failed  # each attempt reported once
    for process in (first, second):  # docs/mistakes.md's row: runs: 0 done, <k> skipped, <m> failed
        assert re.search(r"^runs: 0 done, \d+ skipped, \d+ failed", process.output(), re.M)
    # the race happened: the second process failed runs that the first had planned
    assert any(o[0] == "second" for o in order.values()), (order, "make the first one slower")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_to_the_pool_parent_stops_new_runs_and_counts_from_the_store(
    tmp_path: Path, signum: int
) -> None:
    """SIGINT or SIGTERM to the parent of a worker pool only (kill, a scheduler, a supervisor):
    no run starts after it, the workers stop, and the summary's counts match the store."""
    overrides = [*smoke_args([1, 2, 3, 4], epochs=EPOCHS), "--workers", "2"]
    proc = start_addrop(tmp_path, overrides)
    assert proc.wait_for("] sst2/"), proc.output()  # a worker started a run
    proc.proc.send_signal(signum)
    signalled = time.monotonic()
    code = proc.finish(timeout=60)
    assert code == 130, proc.output()
    late = [line for t, line in proc.lines if t > signalled + 1.0 and ") started" in line]
    assert not late, late  # nothing started after the signal (1 s for events in flight)
    experiment = tmp_path / "smoke"
    done = check_store(experiment, EPOCHS)
    total = len(expected_run_ids(overrides[:-2]))
    assert len(done) < total, "every run finished before the signal; make the runs longer"
    assert _count(proc.output(), "done") == len(done), proc.output()
    assert _count(proc.output(), "left") == total - len(done), proc.output()
    assert (
        f"interrupted: {total - len(done)} runs left; run the same command again to finish them "
        "(finished runs are kept and skipped)"
    ) in proc.output()
    for run_id in done:
        assert len(attempts(experiment, run_id)) == 1
