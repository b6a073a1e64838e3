"""What a resumed run keeps of its earlier attempts: their train.log lines and (issue 23) their
cost. One real `addrop run` is killed with SIGKILL late in its run (the kill_at fault point)
and a plain `addrop run` resumes it; every optimiser step is made 0.1 s slower, so that most of
the run's time is spent before the kill."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from fault_helpers import run_until_killed, smoke_args, start_addrop

from addrop_cli.store.folders import RunFolder

ARGS = [*smoke_args([1], epochs=3), "methods={baseline: {}}", "train.checkpoint_every_steps=4"]
KILL_AT = 42  # of 45 steps; the last state is at step 40

pytestmark = pytest.mark.resume


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a run killed at step 42 of 45, then resumed to DONE."""
    results = tmp_path_factory.mktemp("attempts")
    slow = {"slow_steps": 0.1}
    folder = run_until_killed(results, ARGS, kill_at=f"baseline:{KILL_AT}", **slow)
    resumed = start_addrop(results, ARGS, faults=slow)
    assert resumed.finish() == 0, resumed.output()
    assert (folder / "DONE").is_file()
    return folder


def test_every_attempts_train_log_survives_with_a_header_each(resumed: Path) -> None:
    log = (resumed / "train.log").read_text()
    headers = [line for line in log.splitlines() if line.startswith("==== attempt")]
    assert len(headers) == 2, log
    assert "attempt 1:" in headers[0] and "starting from step 0" in headers[0]
    assert "attempt 2:" in headers[1] and "resuming from step 40" in headers[1]
    first, second = log.split(headers[1])
    assert "epoch 1: loss" in first, log  # the killed attempt's own lines
    assert "resuming from step 40 (epoch 3)" in second, log  # the note reaches the file too
    assert "epoch 3: loss" in second and ": done best" in second, log


def _span_s(lines: list[str]) -> float:
    """Seconds from the first to the last time-stamped line of one attempt in train.log."""
    stamps = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in lines]
    return (stamps[-1] - stamps[0]).total_seconds()


def test_a_resumed_runs_wall_time_counts_every_attempt(resumed: Path) -> None:
    """The cost table reads wall_time_s: a resumed or requeued run costs all its attempts."""
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["attempts"] == 2
    log = (resumed / "train.log").read_text().split("==== attempt")[1:]
    spans = [_span_s(attempt.splitlines()[1:]) for attempt in log]
    assert len(spans) == 2 and all(span > 0 for span in spans)
    assert metrics["wall_time_s"] >= sum(spans), (metrics["wall_time_s"], spans)
    assert metrics["wall_time_s"] >= metrics["train_time_s"]  # training is part of the time
    recorded = RunFolder(resumed).attempt_times()
    assert set(recorded) == {1, 2}
    assert metrics["wall_time_s"] >= sum(recorded.values())
