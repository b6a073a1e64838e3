"""The slurm back-end against a real Slurm cluster (``.ci/start-slurm.sh`` starts one here).

Skipped, with the reason, where no cluster answers. Jobs run the tiny model; each test takes
well under a minute on the one-node, 2-CPU cluster of CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_cli
from fault_helpers import child_env, default_sigint, smoke_command
from fault_points import fault_env

from addrop_cli.execution.backends.slurm import (
    SlurmBackend,
    slurm_available,
    squeue_states,
    submitted_jobs,
)
from addrop_cli.execution.sweeps.plan import plan_sweep
from addrop_cli.report import load_runs
from addrop_cli.spec.load import load_spec
from addrop_cli.store.folders import ExperimentStore, RunFolder

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "experiments" / "smoke.yaml"


def _why_no_cluster() -> str | None:
    if shutil.which("sinfo") is None:
        return "sinfo not found: Slurm is not installed (.ci/start-slurm.sh installs it)"
    if not slurm_available():
        return "the Slurm controller does not answer (start it with .ci/start-slurm.sh)"
    nodes = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout
    if not any(state.strip() in ("idle", "mix", "alloc") for state in nodes.split()):
        return f"no Slurm node is up (sinfo states: {nodes.split() or 'none'})"
    return None


_NO_CLUSTER = _why_no_cluster()
pytestmark = pytest.mark.skipif(_NO_CLUSTER is not None, reason=str(_NO_CLUSTER))


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SlurmBackend, "poll_s", 0.5)


def test_a_sweep_through_slurm_lands_every_run_exactly_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = [
        "tasks=[sst2]",
        "train.epochs=2",
        "sweep.grid.methods.addrop.p=[0.1, 0.5]",
        "sweep.select_seeds=[1]",
        "sweep.report_seeds=[2]",
    ]
    options = ["--backend", "slurm", "--cpus", "1", "--mem-gb", "2", "--time-min", "10"]
    result = run_cli(capsys, "sweep", SMOKE, *args, *options, "--results", tmp_path, "--no-report")
    assert result.code == 0, result.err + result.out
    assert "slurm: submitted job" in result.out
    experiment = tmp_path / "smoke"
    plan = plan_sweep(load_spec(SMOKE, args), SMOKE.parent)
    records = [r for r in load_runs(experiment) if r.status == "done"]
    assert len(records) == len({r.run_id for r in records}) == len(plan.stage1()) + 1
    assert {r.run_id for r in plan.stage1()} <= {r.run_id for r in records}
    for record in records:
        attempts = RunFolder(record.path).attempts()
        assert len(attempts) == 1, attempts
        assert f"pid={os.getpid()} " not in attempts[0] + " "  # ran in a Slurm job
    jobs = submitted_jobs(ExperimentStore(experiment))
    assert set(jobs) == {r.run_id for r in records}
    assert len({job["job_id"].split("_")[0] for job in jobs.values()}) == 2  # one per stage
    status = run_cli(capsys, "status", experiment)
    assert "4 runs: 0 queued, 0 running, 4 done, 0 failed" in status.out
    again = run_cli(capsys, "sweep", SMOKE, *args, *options, "--results", tmp_path, "--no-report")
    assert again.code == 0 and "slurm: submitted" not in again.out  # nothing to submit


def test_a_preempted_job_is_requeued_and_its_run_resumes(tmp_path: Path) -> None:
    overrides = ["tasks=[sst2]", "seeds=[1]", "methods={baseline: {}}", "train.epochs=150"]
    proc, _ = _start_on_slurm(tmp_path, overrides)
    experiment = tmp_path / "smoke"
    try:
        job_id = _wait_for_training(experiment)
        # what Slurm sends before a pre-emption or the time limit (sbatch --signal=USR2@...)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        _release_requeued(job_id)
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    (record,) = load_runs(experiment)
    assert record.status == "done"
    assert len([e for e in record.epochs()]) == 150  # each epoch logged once across attempts
    starts = RunFolder(record.path).attempts()
    assert len(starts) == 2  # interrupted once, then finished once
    assert " step=0 " not in starts[1]  # from the state of the last finished epoch
    logs = "".join(p.read_text() for p in (experiment / "slurm").rglob("*_log.err"))
    assert "this job is preempted" in logs


def test_a_run_longer_than_the_time_limit_finishes_after_requeues(tmp_path: Path) -> None:
    """time_min 1: Slurm signals the job 10 s before its minute is up, submitit requeues it,
    and every later attempt goes on from the latest state (written every 5 steps)."""
    overrides = ["tasks=[sst2]", "seeds=[1]", "methods={baseline: {}}", "train.epochs=60"]
    overrides += ["train.checkpoint_every_steps=5", "executor.slurm.max_requeues=20"]
    # the tiny run must outlive its one-minute job on any machine: every optimiser step is made
    # to take at least 0.1 s (900 steps), through a fault point the job inherits
    proc, _ = _start_on_slurm(tmp_path, overrides, "--time-min", "1", slow_steps=0.1)
    deadline = time.monotonic() + 900
    pending_since: dict[str, float] = {}
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            queue = squeue_states()
            jobs = submitted_jobs(ExperimentStore(tmp_path / "smoke")).values()
            for job_id in {job["job_id"] for job in jobs}:
                if queue.get(job_id) != "PENDING":
                    pending_since.pop(job_id, None)
                elif (
                    time.monotonic() - pending_since.setdefault(job_id, time.monotonic()) > SETTLE_S
                ):
                    _release(job_id)
                    pending_since.pop(job_id)
            time.sleep(1)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    (record,) = load_runs(tmp_path / "smoke")
    assert record.status == "done"
    assert [e.epoch for e in record.epochs()] == list(range(1, 61))
    starts = RunFolder(record.path).attempts()
    assert len(starts) >= 2, starts  # the run outlived one job
    assert starts[0].endswith(" step=0 epoch=1")
    assert all(" step=0 " not in line for line in starts[1:]), starts


def test_ctrl_c_while_waiting_leaves_the_jobs_running_and_a_rerun_waits_for_them(
    tmp_path: Path,
) -> None:
    """Ctrl-C stops the waiting, not the jobs (exit 130, with what to do next); the same
    command again finds its job still queued or running and waits for it, submitting nothing."""
    overrides = ["tasks=[sst2]", "seeds=[1]", "methods={baseline: {}}", "train.epochs=6"]
    # the job is held mid-training (a fault point) until the rerun has seen it running: a job
    # that finished in the meantime would leave the rerun nothing to wait for (seen on a fast CI)
    gate = tmp_path / "hold"
    proc, command = _start_on_slurm(tmp_path, overrides, slow_steps=0.1, hold_while=str(gate))
    experiment = tmp_path / "smoke"
    job_id = None
    release = threading.Timer(240, gate.unlink, kwargs={"missing_ok": True})  # never hang
    try:
        job_id = _wait_for_training(experiment)
        gate.touch()  # at least 75 steps of 0.1 s are left: the job cannot have finished
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, out
        assert "slurm: stopped waiting; the jobs keep running" in out and "Traceback" not in out
        assert job_id in squeue_states()  # the job goes on without us
        again = _popen(command, child_env())  # unbuffered: its lines arrive as printed
        release.start()
        seen = []
        for line in again.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if "from an earlier submission" in line:
                break
        gate.unlink(missing_ok=True)
        rest, _ = again.communicate(timeout=300)
    finally:
        release.cancel()
        gate.unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
        if job_id is not None:
            subprocess.run(["scancel", job_id], capture_output=True)
    output = "".join(seen) + rest
    assert again.returncode == 0, output
    assert "1 run already queued or running from an earlier submission" in output
    jobs_file = (experiment / "slurm" / "jobs.jsonl").read_text().splitlines()
    assert len(jobs_file) == 1  # submitted once: the rerun waited for the same job
    (record,) = load_runs(experiment)
    assert record.status == "done"


def _start_on_slurm(
    results: Path, overrides: list[str], *options: str, **faults: Any
) -> tuple[subprocess.Popen[str], list[str]]:
    """``addrop run`` of the smoke spec on the slurm back-end (one CPU per job), with fault
    points its jobs inherit; returns the process and its command."""
    command = smoke_command(results, overrides, "--backend", "slurm", "--cpus", "1", *options)
    return _popen(command, fault_env(**faults)), command


def _popen(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``command`` started from the checkout, its output and errors in one text pipe."""
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=default_sigint,
    )


def _wait_for_training(experiment: Path, timeout: float = 120) -> str:
    """The job id, once its run has logged an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = submitted_jobs(ExperimentStore(experiment)) if experiment.exists() else {}
        logged = list((experiment / "runs").glob("*/epochs.jsonl"))
        if jobs and logged and logged[0].read_text().strip():
            (job,) = jobs.values()
            return str(job["job_id"])
        time.sleep(0.2)
    raise TimeoutError("the Slurm job did not start training in time")


SETTLE_S = 15.0
"""How long a requeued job stays pending before a test releases it: started again while its last
step is still being torn down (srun waits up to 12 s), Slurm kills it at once ("Job credential
revoked"), and the job is gone without its run (seen on CI, releasing it 0.2 s after the
requeue). Left alone, Slurm holds a requeued job back for a while (its BeginTime)."""


def _release(job_id: str) -> None:
    """Start a pending job now instead of at its BeginTime."""
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)


def _release_requeued(job_id: str, timeout: float = 60) -> None:
    """Slurm holds a requeued job back for a while (BeginTime): let it start once it has
    settled (:data:`SETTLE_S`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if squeue_states().get(job_id) == "PENDING":
            time.sleep(SETTLE_S)
            _release(job_id)
            return
        time.sleep(0.2)


def test_jobs_record_is_read_back_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    store = ExperimentStore(tmp_path / "x")
    record = store.root / "slurm" / "jobs.jsonl"
    record.parent.mkdir(parents=True)
    lines = [{"run_id": "a", "job_id": "7_0"}, {"run_id": "a", "job_id": "9"}]
    record.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"run_id": "b", "jo')
    assert {k: v["job_id"] for k, v in submitted_jobs(store).items()} == {"a": "9"}
