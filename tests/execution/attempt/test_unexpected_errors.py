"""A run that raises an error addrop does not know (the ``fail_at`` fault point): contained as a
FAILED run with its reason and traceback, the rest of the experiment goes on, and the next
`addrop run` retries it from a clean start. And the fault helper refuses a point it lacks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import run_cli
from fault_helpers import SMOKE, smoke_args
from fault_points import fault_env

from addrop_cli.store.reader import load_runs
from addrop_cli.store.state import TrainingStateFiles


def test_a_run_that_raises_fails_alone_and_is_retried_from_a_clean_start(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    faults: Callable[..., None],
) -> None:
    args = [*smoke_args([1], epochs=2), "train.checkpoint_every_steps=2", "train.keep_state=true"]
    faults(fail_at="addrop:1:5")
    first = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *args)
    monkeypatch.undo()
    assert first.code == 1, first.out + first.err  # a failed run: exit 1, not a crash
    assert "Traceback" not in first.out + first.err
    runs = {r.variant: r for r in load_runs(tmp_path / "smoke")}
    failed = runs["addrop"]
    assert failed.status == "failed"
    assert failed.reason == "InjectedFault: injected fault at step 5"
    trace = json.loads((failed.path / "traceback.json").read_text())["traceback"]
    assert "fault_points.py" in trace and trace.rstrip().endswith(failed.reason)
    assert TrainingStateFiles(failed.path).load() is None  # states at steps 2 and 4: dropped
    assert runs["baseline"].status == "done"

    again = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *args)
    assert again.code == 0, again.out + again.err
    assert "resuming" not in again.out  # a failed run starts over, it does not resume
    runs = {r.variant: r for r in load_runs(tmp_path / "smoke")}
    assert runs["addrop"].status == "done" and runs["addrop"].path == failed.path
    assert not (failed.path / "FAILED").exists()


def test_an_unknown_fault_point_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault points \\['kill_after'\\]"):
        fault_env(kill_after="baseline:3")
