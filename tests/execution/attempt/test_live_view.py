"""One live view across workers (issue 38): the table of active runs with the experiment's ETA,
rendered at a wide and a narrow width, and --plain's summary line at its interval in a real
two-worker run."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from addrop_cli.engine.loggers import StepEvent
from addrop_cli.execution.attempt.live import Board, board_table, duration, summary_line
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "experiments" / "smoke.yaml"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _event(epoch: int, step: int, per_epoch: int = 50) -> StepEvent:
    return StepEvent(epoch, step, per_epoch, epoch * per_epoch + step, 0.6931, 123.4)


def _two_workers() -> tuple[Board, list]:
    """Five sst2 runs of 2 epochs on two workers: runs 0 and 1 active (A at 1 s/step, B at
    2 s/step, both 21 steps in), three pending."""
    spec = load_spec(SMOKE, ["tasks=[sst2]", "seeds=[1,2,3]", "train.epochs=2"])
    runs = expand(spec, SMOKE.parent)[:5]
    clock = Clock()
    board = Board(clock=clock)
    board.begin(runs, slots=2)
    board.run_start(runs[0])
    board.run_start(runs[1])
    clock.now = 10.0
    board.step(runs[0], _event(0, 1))  # A: first step 10 s after its start
    clock.now = 12.0
    board.step(runs[1], _event(0, 1))  # B: 12 s
    clock.now = 30.0
    board.step(runs[0], _event(0, 21))  # A: 20 steps in 20 s
    clock.now = 52.0
    board.step(runs[1], _event(0, 21))  # B: 20 steps in 40 s
    return board, runs


def _expected_eta() -> float:
    """The same model, worked by hand: seconds per step = mean(1, 2); start-up = mean(10, 12);
    each active run has 2 x 50 - 21 steps left, each pending run 100 steps and a start-up."""
    step_s, startup = (1.0 + 2.0) / 2, (10.0 + 12.0) / 2
    jobs = [79 * step_s, 79 * step_s] + [100 * step_s + startup] * 3
    return max(sum(jobs) / 2, max(jobs))


def _render(board: Board, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(board_table(board.view(), width))
    return console.export_text()


def test_the_eta_is_the_measured_step_times_arithmetic() -> None:
    board, _ = _two_workers()
    view = board.view()
    assert view.eta_s == pytest.approx(_expected_eta())  # 360 s
    assert (view.done, view.running, view.left) == (0, 2, 3)


@pytest.mark.parametrize("width", [120, 60])
def test_the_table_shows_every_active_run_and_the_eta(width: int) -> None:
    board, runs = _two_workers()
    text = _render(board, width)
    assert f"ETA {duration(_expected_eta())}" in text and "6m00s" in text
    assert "0 of 5 runs done, 2 running, 3 left" in text
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text  # nothing cut short
    body = [line for line in text.splitlines() if "1/2" in line and "21/50" in line]
    assert len(body) == 2  # one row per active run: epoch 1 of 2, step 21 of 50
    for run in runs[:2]:
        row = "\n".join(text.splitlines())
        assert run.variant in row and str(run.seed) in row
    assert "123.4" in text  # samples/s
    if width >= 80:
        header = next(line for line in text.splitlines() if "variant" in line)
        assert re.search(r"task\s+variant\s+seed\s+epoch\s+step\s+samples/s", header)
    else:  # task, variant and seed in one column
        assert f"{runs[0].task}/{runs[0].variant}/seed{runs[0].seed}" in text.replace("\n", "")


def test_without_a_measured_step_the_eta_is_unknown_and_says_so() -> None:
    board, runs = _two_workers()
    fresh = Board()
    fresh.begin(runs, slots=2)
    fresh.run_start(runs[0])
    fresh.step(runs[0], _event(0, 1))  # one step: no step time yet
    assert fresh.view().eta_s is None
    assert "ETA unknown" in summary_line(fresh.view())
    assert "ETA unknown" in _render(fresh, 120)


def test_finished_runs_keep_their_step_time_and_the_eta_falls() -> None:
    board, runs = _two_workers()
    board.clock.now = 60.0  # type: ignore[attr-defined]
    board.run_end(runs[0])  # A: 50 s since its first step over 20 steps: 2.5 s/step
    view = board.view()
    assert (view.done, view.running, view.left) == (1, 1, 3)
    step_s, startup = (2.5 + 2.0) / 2, 11.0
    jobs = [79 * step_s] + [100 * step_s + startup] * 3
    assert view.eta_s == pytest.approx(max(sum(jobs) / 2, max(jobs)))


def test_durations_are_short_and_whole() -> None:
    assert [duration(s) for s in (0, 45.4, 125, 3600 * 2 + 7 * 60)] == [
        "0s",
        "45s",
        "2m05s",
        "2h07m",
    ]


@pytest.mark.slow
def test_plain_prints_a_summary_line_at_its_interval_with_two_workers(tmp_path: Path) -> None:
    env = {**os.environ, "ADDROP_SUMMARY_EVERY_S": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "addrop_cli", "run", str(SMOKE), "--workers", "2", "--plain"]
        + ["train.threads=1", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("progress: ")]
    assert lines, done.stdout
    assert all(
        re.fullmatch(r"progress: \d+ of 8 runs done, \d+ running, \d+ left; ETA .+", x)
        for x in lines
    ), lines
    assert any(re.search(r"ETA \d+(s|m\d\ds)", x) for x in lines), lines  # measured at last
    # about one every 2 s for the whole run: more than one, and the counts move forward
    assert len(lines) >= 3
    done_counts = [int(x.split()[1]) for x in lines]
    assert done_counts == sorted(done_counts)


def test_the_live_progress_draws_the_table_on_a_terminal_and_prints_the_lines_above() -> None:
    from addrop_cli.execution.attempt.display import LiveProgress

    _, runs = _two_workers()
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, color_system=None)
    progress = LiveProgress(console)
    progress.experiment_start(2, 2, runs=runs[:2], slots=2)
    progress.run_start(runs[0], 0)
    progress.run_start(runs[1], 1)
    for step in (1, 2, 3):
        progress.step(runs[0], _event(0, step))
    progress.live.refresh()
    shown = out.getvalue()
    assert "2 running, 0 left" in shown and "3/50" in shown  # the table, as drawn
    progress.run_end(runs[0], "done", "best accuracy=0.5000")
    progress.settled(runs[0])  # counted once
    progress.close()
    shown = out.getvalue()
    assert f"[1/2] {runs[0].label} ({runs[0].run_id}) started" in shown
    assert f"{runs[0].label}: done best accuracy=0.5000" in shown
    assert progress.board.view().done == 1
