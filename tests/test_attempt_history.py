"""What a resumed run keeps of its earlier attempts: their train.log lines and (issue 23) their
cost. One real `addrop run` is killed with SIGKILL late in its run (tests/kill_at_step_addrop.py)
and a plain `addrop run` resumes it; every optimiser step is made 0.1 s slower, so that most of
the run's time is spent before the kill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from fault_helpers import ROOT, SMOKE, smoke_args, start_addrop

from addrop_cli.store.folders import RunFolder

KILLER = Path(__file__).resolve().parent / "kill_at_step_addrop.py"
SLOW_STEPS = """
import time

from addrop_cli.engine import loop

_step = loop.RunLoop._optimizer_step


def _slow_step(self):
    _step(self)
    time.sleep(0.1)


loop.RunLoop._optimizer_step = _slow_step
"""
ARGS = [*smoke_args([1], epochs=3), "methods={baseline: {}}", "train.checkpoint_every_steps=4"]
KILL_AT = 42  # of 45 steps; the last state is at step 40

pytestmark = pytest.mark.resume


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a run killed at step 42 of 45, then resumed to DONE."""
    results = tmp_path_factory.mktemp("attempts")
    site = results / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_STEPS)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(KILLER), "run", str(SMOKE), *ARGS, "--results", str(results)]
    killed = subprocess.run(
        [*command, "--plain"],
        cwd=ROOT,
        env={**os.environ, **env, "ADDROP_KILL_AT": f"baseline:{KILL_AT}", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
    )
    assert killed.returncode == -9, killed.stdout.decode()[-2000:]
    resumed = start_addrop(results, ARGS, env=env)
    assert resumed.finish() == 0, resumed.output()
    (folder,) = [p for p in (results / "smoke" / "runs").iterdir() if p.is_dir()]
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
