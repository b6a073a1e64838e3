"""tools/study_records.py (``make study-records``): stages exactly the finished runs' records of
a study, in a scratch git repository with finished, unfinished and failed run folders."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "study_records.py"
RECORDS = ("run.json", "metrics.json", "epochs.jsonl", "predictions.json", "env.json", "DONE")
NEVER = ("train.log", "attempt_times.jsonl", "state/state.pt", "state/manifest.json",
         "checkpoint/model.safetensors", "checkpoint-last/config.json")  # fmt: skip

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout


def _touch(path: Path, text: str = "{}\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _study(repo: Path, gitignore: str) -> tuple[Path, set[str]]:
    """results/curve: 2 finished runs, 1 unfinished, 1 failed; returns the files to stage."""
    _git(repo, "init", "-q")
    _touch(repo / ".gitignore", gitignore)
    exp = repo / "results" / "curve"
    expected = set()
    for name in ("experiment.json", "spec.yaml", "REPORT.md", "factor_sst2.png", "bars.svg"):
        _touch(exp / name)
        expected.add(f"results/curve/{name}")
    for run_id, marker in (("aaa", "DONE"), ("bbb", "DONE"), ("ccc", None), ("ddd", "FAILED")):
        run = exp / "runs" / run_id
        for name in (*RECORDS[:-1], *NEVER):
            _touch(run / name)
        _touch(exp / "attempts" / f"{run_id}.log", "2026 pid=1 host=h step=0 epoch=1\n")
        _touch(exp / "runs" / f".{run_id}.lock", "")
        if marker:
            _touch(run / marker, "")
        if marker == "DONE":
            expected |= {f"results/curve/runs/{run_id}/{n}" for n in RECORDS}
            expected.add(f"results/curve/attempts/{run_id}.log")
    for other in ("tracking/events.out", "report/report.md", "report/bars.png", "slurm/jobs.jsonl"):
        _touch(exp / other)
    return exp, expected


def _tool(exp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), str(exp), *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "gitignore",
    ["", "results/*/runs/\nresults/*/attempts/\n*.json\n"],
    ids=["nothing-ignored", "records-ignored"],
)
def test_stages_exactly_the_finished_runs_records(tmp_path: Path, gitignore: str) -> None:
    exp, expected = _study(tmp_path, gitignore)
    plan = _tool(exp, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert set(plan.stdout.splitlines()[:-1]) == expected
    assert "would stage 19 files (2 finished runs)" in plan.stdout
    assert _git(tmp_path, "diff", "--cached", "--name-only") == ""  # a dry run stages nothing

    done = _tool(exp)
    assert done.returncode == 0, done.stderr
    assert set(_git(tmp_path, "diff", "--cached", "--name-only").split()) == expected
    again = _tool(exp)  # staging twice changes nothing
    assert again.returncode == 0, again.stderr
    assert set(_git(tmp_path, "diff", "--cached", "--name-only").split()) == expected


def test_uses_force_only_for_ignored_paths(tmp_path: Path) -> None:
    """A file ignored outside the record list (train.log) stays unstaged, and a run that
    finishes later is staged by the next call."""
    exp, expected = _study(tmp_path, "train.log\nresults/*/runs/\n")
    assert _tool(exp).returncode == 0
    _touch(exp / "runs" / "ccc" / "DONE", "")
    assert _tool(exp).returncode == 0
    staged = set(_git(tmp_path, "diff", "--cached", "--name-only").split())
    later = {f"results/curve/runs/ccc/{n}" for n in RECORDS} | {"results/curve/attempts/ccc.log"}
    assert staged == expected | later
    assert not [p for p in staged if p.endswith(("train.log", ".lock")) or "/state/" in p]


def test_a_folder_that_is_no_study_is_one_line(tmp_path: Path) -> None:
    done = _tool(tmp_path / "nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope'}: not a results folder (no runs/); e.g. results/peers"
    ]
