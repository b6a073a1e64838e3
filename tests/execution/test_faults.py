"""Fault injection: SIGKILL at random moments, out of memory, a full disk.

The kill test drives real `addrop run` processes on the tiny model and checks the store's
invariants (``fault_helpers.check_store``) after every kill. By default it kills 5 processes
(about 30 s); ``ADDROP_SOAK=20`` kills 20 and prints where the kills landed. The random timing
is seeded from ``ADDROP_FAULT_SEED`` when set, else from the clock (printed, to replay a failure).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from fault_helpers import (
    SMOKE,
    attempts,
    check_store,
    expected_run_ids,
    kill_phase,
    smoke_args,
    start_addrop,
)

from addrop_cli.engine.loop import run_one
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand
from addrop_cli.store.folders import RunFolder
from addrop_cli.store.reader import load_runs
from addrop_cli.store.state import TrainingStateFiles

EPOCHS = 3
KILLS = int(os.environ.get("ADDROP_SOAK") or 5)
EARLY_KILL_P = 0.15
"""Share of kills at any moment from launch (start-up, opening the store); the rest land while
runs are pending."""


def test_random_sigkills_leave_a_consistent_store(tmp_path: Path) -> None:
    """Kill `addrop run` at random; after each kill the store is consistent; a re-run finishes.

    Kill i runs seeds 1..i, so every process has new work plus whatever earlier kills left
    unfinished, while the DONE runs of earlier processes must stay untouched. Runs write their
    training state every 3 steps, so most kills land mid-epoch after a state: the next attempt
    must start from exactly that state, and every run that resumed must end with the same
    losses, metrics and predictions as an uninterrupted run. Every other process slows its file
    writes (the slow_writes fault point) so that kills also land inside writes.
    """
    seed = int(os.environ.get("ADDROP_FAULT_SEED") or time.time_ns() % 2**32)
    print(f"ADDROP_FAULT_SEED={seed}")
    rng = random.Random(seed)
    experiment = tmp_path / "smoke"
    done_before: dict = {}
    phases: Counter[str] = Counter()
    per_run_s = 0.6  # refined from what the processes print
    expected_starts: dict[tuple[str, int], int] = {}  # (run id, attempt index) -> its first step
    for kill in range(1, KILLS + 1):
        process = start_addrop(
            tmp_path,
            _args(range(1, kill + 1)),
            faults={"slow_writes": 0.03} if kill % 2 == 0 else None,
        )
        if rng.random() < EARLY_KILL_P:
            time.sleep(rng.uniform(0.0, 4.0))
        elif process.wait_for(" to run") and process.wait_for(" started"):
            header = next(line for _, line in process.lines if " to run" in line)
            pending = int(re.search(r"(\d+) to run", header).group(1))  # type: ignore[union-attr]
            process.sleep(rng.uniform(0.0, max(pending, 1) * per_run_s))
        process.kill()
        # on a loaded machine a run takes far longer than 0.6 s: until a run's time was seen,
        # aim later each time so that kills reach training
        per_run_s = _observed_run_time(process.lines) or per_run_s * 2
        if (experiment / "runs").is_dir():
            phases[kill_phase(experiment)] += 1
        done_now = check_store(experiment, EPOCHS)
        for run_id, before in done_before.items():
            assert done_now.get(run_id) == before, f"DONE run {run_id} changed after kill {kill}"
        done_before = done_now
        expected_starts.update(_resumable(experiment))

    overrides = _args(range(1, KILLS + 1))
    final = start_addrop(tmp_path, overrides)
    assert final.finish() == 0, final.output()
    done = check_store(experiment, EPOCHS)
    assert set(done) == expected_run_ids(overrides)
    for run_id, before in done_before.items():
        assert done[run_id] == before, f"DONE run {run_id} was redone by the final run"
    records = load_runs(experiment)
    assert {r.status for r in records} == {"done"} and len(records) == 2 * KILLS
    resumed = _check_resumes(experiment, expected_starts)
    print(f"{KILLS} kills landed: {dict(phases)}; {len(resumed)} runs resumed mid-run")


def _args(seeds: range) -> list[str]:
    return [*smoke_args(seeds, EPOCHS), "train.checkpoint_every_steps=3"]


def _resumable(experiment: Path) -> dict[tuple[str, int], int]:
    """For each unfinished run with a training state: the step its next attempt must start at."""
    found: dict[tuple[str, int], int] = {}
    if not (experiment / "runs").is_dir():  # killed before the store held any run
        return found
    for folder in (experiment / "runs").iterdir():
        if folder.is_dir() and RunFolder(folder).status == "unfinished":
            manifest = TrainingStateFiles(folder).manifest()
            if manifest is not None:
                found[(folder.name, len(attempts(experiment, folder.name)))] = manifest["step"]
    return found


def _check_resumes(experiment: Path, expected: dict[tuple[str, int], int]) -> set[str]:
    """Every attempt after a kill that left a state began at its step; every resumed run
    ended as an uninterrupted run of the same seed does (losses, metrics, predictions)."""
    for (run_id, index), step in expected.items():
        lines = attempts(experiment, run_id)
        if index < len(lines):  # a later process got to the run
            assert f" step={step} " in lines[index], (run_id, step, lines)
    resumed = {run_id for run_id, _ in expected}
    spec = load_spec(SMOKE, _args(range(1, KILLS + 1)))
    by_id = {run.run_id: run for run in expand(spec, SMOKE.parent)}
    for run_id in sorted(resumed):
        reference = run_one(by_id[run_id])
        folder = experiment / "runs" / run_id
        lines = (folder / "epochs.jsonl").read_text().splitlines()
        losses = [json.loads(line)["train_loss"] for line in lines]
        assert losses == [record.train_loss for record in reference.epochs], run_id
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["best"] == reference.metrics.best.model_dump(mode="json"), run_id
        stored = json.loads((folder / "predictions.json").read_text())
        assert stored == {k: v.model_dump(mode="json") for k, v in reference.predictions.items()}
    return resumed


def _observed_run_time(lines: list[tuple[float, str]]) -> float | None:
    """Seconds a run takes: between consecutive 'started' lines of one process, else EPOCHS
    times the first epoch's (from 'started' to its epoch line; None before either is seen)."""
    starts = [t for t, line in lines if line.endswith(" started")]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    if gaps:
        return sum(gaps) / len(gaps)
    epochs = [t for t, line in lines if " epoch 1: " in line]
    return EPOCHS * (epochs[0] - starts[0]) if starts and epochs else None


# ---------------------------------------------------------------------------------------------
# Out of memory: the run is recorded as failed with the reason; the rest continue
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        MemoryError(),
        RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)"),
    ],
    ids=["cuda-oom", "host-memory-error", "mps-oom"],
)
def test_out_of_memory_fails_the_run_with_advice_and_the_rest_continue(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
) -> None:
    """Needs the executors change that records ``failures.describe_failure(err)``."""
    from addrop_cli.methods.addrop import AddropMethod

    original = AddropMethod.training_step
    raised = {"n": 0}

    def out_of_memory_once(self, model, batch):  # type: ignore[no-untyped-def]
        if raised["n"] == 0:
            raised["n"] += 1
            raise error
        return original(self, model, batch)

    monkeypatch.setattr(AddropMethod, "training_step", out_of_memory_once)
    args = smoke_args([1, 2], epochs=2)
    result = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *args)
    assert result.code == 1, result.err  # some runs failed; not a crash
    assert "Traceback" not in result.err
    by_label = {(r.variant, r.seed): r for r in load_runs(tmp_path / "smoke")}
    failed = by_label["addrop", 1]
    assert failed.status == "failed"
    assert "out of memory" in failed.reason and "train.batch_size" in failed.reason
    assert "max_length" in failed.reason
    metrics = json.loads((failed.path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "out of memory" in metrics["error"]
    others = {key: r.status for key, r in by_label.items() if key != ("addrop", 1)}
    assert others == {("baseline", 1): "done", ("baseline", 2): "done", ("addrop", 2): "done"}
    assert "out of memory" in result.out  # the summary names the reason


def test_failure_reasons_name_out_of_memory_only_when_it_is() -> None:
    from addrop_cli.engine.failures import describe_failure, is_out_of_memory

    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert describe_failure(ValueError("bad value")) == "ValueError: bad value"
    reason = describe_failure(MemoryError())
    assert reason.startswith("out of memory (MemoryError)") and "\n" not in reason


# ---------------------------------------------------------------------------------------------
# Full disk: no corrupted or partial file, a one-line error, and a re-run finishes
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder where seed 1 (baseline and AD-DROP) finished."""
    from addrop_cli import cli

    results = tmp_path_factory.mktemp("finished")
    code = _run_in_process(cli, ["run", str(SMOKE), "--plain", "--results", str(results)])
    assert code == 0
    return results


def _run_in_process(cli, args: list[str]) -> int:  # type: ignore[no-untyped-def]
    import sys

    old = sys.argv
    sys.argv = ["addrop", *args, *smoke_args([1], epochs=2)]
    try:
        cli.main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = old
    return 0


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name open files")
@pytest.mark.parametrize(
    "target",
    [
        "experiment.json",
        "run.json",
        "epochs.jsonl",
        "state.pt",
        "predictions.json",
        "metrics.json",
        "DONE",
    ],
)
def test_full_disk_leaves_no_partial_file_and_says_so(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    finished_store: Path,
    target: str,
    faults: Callable[..., None],
) -> None:
    results = tmp_path / "results"
    shutil.copytree(finished_store, results)
    experiment = results / "smoke"
    before = check_store(experiment, 2)
    assert len(before) == 2
    args = smoke_args([1, 2], epochs=2)
    faults(disk_full=target)
    result = run_cli(capsys, "run", SMOKE, "--plain", "--results", results, *args)
    monkeypatch.undo()
    assert result.code == 2, result.out + result.err
    errors = result.err.strip().splitlines()
    assert len(errors) == 1 and "Traceback" not in result.err
    assert errors[0].startswith(f"error: {experiment}") and "disk full" in errors[0]
    assert not list(results.rglob("*.tmp")), "a temporary file was left behind"
    assert check_store(experiment, 2) == before  # finished runs intact, nothing half-written

    again = run_cli(capsys, "run", SMOKE, "--plain", "--results", results, *args)
    assert again.code == 0, again.err
    done = check_store(experiment, 2)
    assert set(done) == expected_run_ids(args)
    for run_id, snapshot in before.items():
        assert done[run_id] == snapshot and len(attempts(experiment, run_id)) == 1
