"""Committed reports are regenerated, not hand-kept: every study whose run records are in git
reproduces its committed REPORT.md from those records alone, and a study whose records are not
in git says so at the top of its report."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from addrop_cli.report import write_markdown_report

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
NO_RECORDS = "Records not in git"
MAX_BYTES = 1_000_000


def _tracked(*paths: str) -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--", *paths], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the committed records cannot be told apart")
    return out.stdout.splitlines()


def _studies() -> list[str]:
    """The committed studies: results folders with a REPORT.md and a spec in experiments/."""
    return sorted(
        p.parent.name
        for p in RESULTS.glob("*/REPORT.md")
        if (ROOT / "experiments" / f"{p.parent.name}.yaml").is_file()
    )


@pytest.mark.full_aso  # the committed reports were made with deepsig's own iteration count
@pytest.mark.parametrize("study", _studies())
def test_a_committed_report_is_what_its_committed_records_make(
    study: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [f for f in _tracked(f"results/{study}/runs") if f.endswith("/run.json")]
    committed = (RESULTS / study / "REPORT.md").read_text(encoding="utf-8")
    if not records:
        assert NO_RECORDS in committed.split("\n## ")[0], (
            f"results/{study}/REPORT.md has no run records in git and does not say so"
        )
        return
    for name in _tracked(f"results/{study}"):  # the committed files only, as a fresh clone has
        if name.endswith((".png", ".svg", "REPORT.md")):
            continue
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    monkeypatch.chdir(tmp_path)  # the report names runs by the path it was given
    out = write_markdown_report(Path(f"results/{study}/REPORT.md"), [Path(f"results/{study}")])
    assert out.read_text(encoding="utf-8") == committed, (
        f"results/{study}/REPORT.md differs from what its committed records make: "
        f"run `make study-report STUDY={study}` and commit the result"
    )


def test_committed_results_are_small_records_never_weights_or_state() -> None:
    files = _tracked("results")
    assert files, "results/ holds committed reports"
    for name in files:
        path = ROOT / name
        assert os.path.getsize(path) < MAX_BYTES, f"{name} is over 1 MB"
        parts = Path(name).parts
        assert not {"state", "checkpoint", "checkpoint-last", "tracking"} & set(parts), name
        assert path.suffix not in {".pt", ".bin", ".safetensors", ".ckpt", ".log"} or (
            "attempts" in parts
        ), name


def test_gitignore_keeps_records_and_drops_weights_state_and_logs() -> None:
    run = "results/any-study/runs/0123456789ab"
    kept = [f"{run}/{f}" for f in ("run.json", "metrics.json", "epochs.jsonl", "predictions.json")]
    kept += [f"{run}/DONE", "results/any-study/attempts/0123456789ab.log"]
    dropped = [f"{run}/state/state.pt", f"{run}/checkpoint/model.safetensors", f"{run}/train.log"]
    dropped += [f"{run}/attempt_times.jsonl", "results/any-study/runs/.0123456789ab.lock"]
    dropped += ["results/any-study/tracking/mlflow.db", "results/smoke/REPORT.md"]
    try:
        out = subprocess.run(
            ["git", "check-ignore", "--no-index", *kept, *dropped],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
    except OSError:
        pytest.skip("git is not installed")
    ignored = set(out.stdout.splitlines())
    assert not ignored & set(kept), sorted(ignored & set(kept))
    assert set(dropped) <= ignored, sorted(set(dropped) - ignored)
