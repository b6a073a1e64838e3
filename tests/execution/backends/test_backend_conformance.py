"""One suite over every registered back-end (``addrop_cli.spec.backends.BACKENDS``): what callers
ask of it has an answer, and finished, failed, killed and interrupted runs give the same summary
and the same store whichever back-end carried them out. Killed and interrupted runs are real
`addrop run` processes (marked ``faults``): a process that trains a run is SIGKILLed mid-run, or
the `addrop` process is sent SIGINT or SIGTERM; no lock is left held and a second `addrop run`
finishes what the first left. A back-end registered anywhere (a test's plugin included,
``tests/throwaway_backends.py``) is checked without being named here.

The Slurm back-end needs a real cluster (``.ci/start-slurm.sh``): its cases are marked ``slurm``
and skip, with the reason, where none answers.
"""

from __future__ import annotations

import io
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fault_helpers import AddropProcess, check_store, child_env, default_sigint
from fault_points import fault_env
from rich.console import Console

from addrop_cli.errors import SpecError
from addrop_cli.execution.attempt.context import RunContext, Summary
from addrop_cli.execution.backends.base import backend_type
from addrop_cli.execution.backends.slurm import slurm_available
from addrop_cli.spec.backends import BACKENDS
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.store.status import RunStatus

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "experiments" / "smoke.yaml"
ONE_EACH = ["tasks=[sst2]", "seeds=[1]", "train.epochs=1", "train.threads=1"]


def _cases() -> list:
    marks = {"slurm": [pytest.mark.slurm]}
    return [pytest.param(name, marks=marks.get(name, []), id=name) for name in BACKENDS]


def _backend(name: str, spec):  # type: ignore[no-untyped-def]
    """The back-end ``name`` for ``spec``, or a skip where this machine cannot run it."""
    if name == BACKENDS["slurm"].name and not slurm_available():
        pytest.skip("no Slurm cluster answers here (.ci/start-slurm.sh starts one)")
    try:
        kind = backend_type(name)
        return kind.from_spec(spec, SMOKE.parent, plain=True, console=Console(file=io.StringIO()))
    except SpecError as err:  # an optional extra that is not installed
        pytest.skip(str(err))


@pytest.mark.parametrize("name", _cases())
def test_a_backend_answers_what_callers_ask(name: str, tmp_path: Path) -> None:
    kind = backend_type(name)
    spec = load_spec(SMOKE, [*ONE_EACH, f"executor.backend={name}"])
    assert isinstance(kind.journal, bool)
    assert kind.spec_problems(spec, "spec") == []
    assert kind.live_runs(ExperimentStore(tmp_path / "none")) == {}
    assert _backend(name, spec).slots >= 1


@pytest.mark.parametrize("name", _cases())
def test_finished_and_failed_runs_give_the_same_summary_and_store(
    name: str, tmp_path: Path, faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(SMOKE, [*ONE_EACH, f"executor.backend={name}"])  # baseline and AD-DROP
    runs = expand(spec, SMOKE.parent)
    bad = next(r for r in runs if r.variant == "addrop")
    points = {"fail_at": f"addrop:{bad.seed}:2"}
    faults(**points)  # in this process, and in the processes a back-end starts
    for key in ("ADDROP_FAULTS", "PYTHONPATH"):
        monkeypatch.setenv(key, fault_env(**points)[key])
    store = ExperimentStore.located(spec.name, spec.results_dir, tmp_path)
    store.open_for_writing(spec.name, "hash", "")
    context = RunContext(store=store, spec_hash="hash", base_dir=SMOKE.parent)
    summary = Summary()
    _backend(name, spec).execute(runs, context, summary, Console(file=io.StringIO()))
    assert [r.run_id for r in summary.done] == [r.run_id for r in runs if r is not bad]
    assert [r.run_id for r, _ in summary.failed] == [bad.run_id]
    assert summary.exit_code == 1 and not (summary.lost or summary.busy or summary.skipped)
    states = {r.run_id: store.run(r.run_id).status for r in runs}
    assert states == {r.run_id: "failed" if r is bad else "done" for r in runs}
    assert not store.run(bad.run_id).state.exists()  # a failed run starts clean next time


def _cases_per_backend(faults: bool) -> int:
    """How many cases this file runs on one back-end: its tests parametrized over back-ends
    (those marked ``faults``, or the others), times their other parameters."""
    count = 0
    for test in (v for k, v in globals().items() if k.startswith("test_")):
        marks = getattr(test, "pytestmark", [])
        params = [m for m in marks if m.name == "parametrize"]
        if not any(m.args[0] == "name" for m in params):
            continue
        if any(m.name == "faults" for m in marks) == faults:
            count += math.prod(len(m.args[1]) for m in params if m.args[0] != "name")
    return count


@pytest.mark.parametrize("marks", ["not faults", pytest.param("faults", marks=pytest.mark.faults)])
def test_a_backend_registered_in_a_test_is_checked_without_being_named(marks: str) -> None:
    """This file again, with tests/throwaway_backends.py loaded as a plugin: its module and its
    one registry line are all the throw-away back-end has, and every case runs on it (the
    killed and interrupted ones with the ``faults`` marker)."""
    env = os.environ | {"PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "throwaway_backends", "-q", "-rA", "-m", marks,
         "-p", "no:cacheprovider", str(Path(__file__)), "-k", "throwaway and not registered"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
    )  # fmt: skip
    passed = [line for line in done.stdout.splitlines() if line.startswith("PASSED")]
    assert done.returncode == 0, done.stdout[-3000:]
    assert len(passed) == _cases_per_backend(marks == "faults") >= 2, done.stdout
    assert all("throwaway" in line for line in passed), done.stdout


# Killed and interrupted: real `addrop run` processes on the back-end
# ---------------------------------------------------------------------------------------------

# `addrop` with the back-end's module imported first (a plugin's registry line runs then)
DRIVER = "import importlib, sys; importlib.import_module(sys.argv.pop(1)); from addrop_cli.cli.main import main; main()"  # noqa: E501


def _start(name: str, results: Path, **faults: object) -> AddropProcess:
    """``addrop run`` of the smoke spec's two runs (baseline, then AD-DROP) on back-end ``name``."""
    module = BACKENDS[name].implementation.partition(":")[0]
    args = [*ONE_EACH, "train.epochs=2", f"executor.backend={name}"]
    command = [sys.executable, "-c", DRIVER, module, "run", str(SMOKE), *args]
    env = child_env(faults)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [*command, "--results", str(results), "--plain"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=default_sigint,
    )  # fmt: skip
    process = AddropProcess(proc)
    process._reader = threading.Thread(target=process._read, daemon=True)
    process._reader.start()
    return process


def _store(name: str, tmp_path: Path) -> tuple[ExperimentStore, list]:  # type: ignore[type-arg]
    spec = load_spec(SMOKE, [*ONE_EACH, "train.epochs=2", f"executor.backend={name}"])
    _backend(name, spec)  # skips where this machine cannot run it
    return ExperimentStore.located(spec.name, spec.results_dir, tmp_path), expand(
        spec, SMOKE.parent
    )


def _wait_until_started(process: AddropProcess, store: ExperimentStore) -> None:
    """Until a run's folder holds its run.json (the run is under way, held by its fault)."""
    deadline = time.monotonic() + 300
    while not any(store.runs_dir.glob("*/run.json")):
        assert process.proc.poll() is None and time.monotonic() < deadline, process.output()
        time.sleep(0.1)
    process.sleep(1.0)


def _no_lock_held(store: ExperimentStore, runs: list) -> None:  # type: ignore[type-arg]
    for run in runs:
        with store.lock(run.run_id) as locked:
            assert locked, f"{run.label}: its lock is still held"


def _summary(process: AddropProcess) -> tuple[int, int, int]:
    """The summary line's counts: (done, skipped, failed)."""
    line = next(x for x in process.output().splitlines() if x.startswith("runs: "))
    found = re.match(r"runs: (\d+) done, (\d+) skipped, (\d+) failed", line)
    assert found, line
    done, skipped, failed = (int(n) for n in found.groups())
    return done, skipped, failed


def _second_run_finishes(name: str, tmp_path: Path, store: ExperimentStore, runs: list) -> None:  # type: ignore[type-arg]
    """A second `addrop run` finishes every unfinished run, keeps the finished ones, exits 0."""
    before = {r.run_id for r in runs if store.run(r.run_id).status == "done"}
    again = _start(name, tmp_path)
    assert again.finish(timeout=600) == 0, again.output()
    done, skipped, failed = _summary(again)
    # a cluster's job may finish between the look above and the second start: then it is skipped
    assert (done + skipped, failed) == (len(runs), 0) and skipped >= len(before), again.output()
    assert set(check_store(store.root, epochs=2)) == {r.run_id for r in runs}
    _no_lock_held(store, runs)


@pytest.mark.faults
@pytest.mark.parametrize("name", _cases())
def test_a_killed_run_leaves_the_same_store_and_a_second_run_finishes_it(
    name: str, tmp_path: Path
) -> None:
    """The process that trains AD-DROP is SIGKILLed after its second step: the `addrop` process
    itself (a back-end that trains in it: no summary) or its worker or job (the run is recorded
    failed with the reason, exit code 1). Either way AD-DROP is not done; the baseline is done
    when the back-end lived on, or wherever it ran before AD-DROP (the order is the back-end's)."""
    store, runs = _store(name, tmp_path)
    first = _start(name, tmp_path, kill_at="addrop:2")
    code = first.finish(timeout=600)
    assert code in (-signal.SIGKILL, 1), first.output()
    states: dict[str, RunStatus] = {r.variant: store.run(r.run_id).status for r in runs}
    assert states["addrop"] == ("unfinished" if code < 0 else "failed"), first.output()
    assert states["baseline"] in (("done", "absent") if code < 0 else ("done",)), first.output()
    if code == 1:  # the parent lived to say so, with the reason (a signal, a job that left)
        assert _summary(first) == (1, 0, 1), first.output()
        assert "failed: sst2/addrop/seed1: " in first.output(), first.output()
    check_store(store.root, epochs=2, failed=code == 1)
    _no_lock_held(store, runs)
    _second_run_finishes(name, tmp_path, store, runs)


@pytest.mark.faults
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("name", _cases())
def test_an_interrupted_experiment_gives_the_same_summary_and_a_second_run_finishes_it(
    name: str, sig: signal.Signals, tmp_path: Path
) -> None:
    """SIGINT or SIGTERM to `addrop` while the baseline trains: exit code 130, both runs left
    (none done, none failed), and a second `addrop run` finishes both."""
    store, runs = _store(name, tmp_path)
    hold = tmp_path / "hold"
    hold.touch()  # every step waits while it exists: the baseline is held mid-run
    first = _start(name, tmp_path, hold_while=str(hold))
    try:
        _wait_until_started(first, store)
        first.proc.send_signal(sig)
        code = first.finish(timeout=120)
    finally:
        if first.proc.poll() is None:
            first.kill()
    assert code == 130, first.output()
    assert "interrupted: 2 runs left" in first.output(), first.output()
    assert "Traceback" not in first.output(), first.output()
    states = {store.run(r.run_id).status for r in runs}
    assert states <= {"unfinished", "absent"}, first.output()
    hold.unlink()  # a job that goes on after the interrupt (a cluster's) may finish now
    _second_run_finishes(name, tmp_path, store, runs)
