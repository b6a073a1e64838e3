"""Damaged records in `addrop status`, `addrop track` and the report (issue 36): one line per
damaged file (never a raw decoding error or a Python warning with its source line), one word
for a run's state in every command, nothing exported as fine that is not, and identical
seed scores called what they are."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import run_cli
from fixtures.store import make_store

from addrop_cli.report import build_report, write_markdown_report

NOT_UTF8 = b"\xff\xfe\x00 not text\n"


def _experiment(tmp_path: Path, scores: dict[str, tuple[float, ...]] | None = None) -> Path:
    """RTE, baseline and addrop, seeds 1-3, every run done."""
    exp = tmp_path / "exp"
    scores = scores or {"baseline": (0.60, 0.62, 0.64), "addrop": (0.61, 0.65, 0.63)}
    for variant, params in (("baseline", make_store.BASELINE), ("addrop", make_store.ADDROP)):
        for seed, acc in enumerate(scores[variant], 1):
            config = make_store.run_config(
                "exp", task="rte", variant=variant, params=params, seed=seed
            )
            make_store.write_run(exp, config, {"accuracy": acc})
    make_store.write_spec(exp, "exp", ["baseline", "addrop"])
    return exp


def _runs(exp: Path) -> list[Path]:
    return sorted(p for p in (exp / "runs").iterdir() if p.is_dir())


def _no_raw_warning(text: str) -> None:
    assert "Traceback" not in text and "StoreWarning" not in text, text
    assert "warnings.warn" not in text and "UnicodeDecodeError" not in text, text


def test_status_calls_a_run_with_damaged_metrics_corrupt_as_the_report_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    exp = _experiment(tmp_path)
    damaged = _runs(exp)[0]
    (damaged / "metrics.json").write_bytes(NOT_UTF8)
    report = build_report([exp], resamples=10)
    (record,) = [r for r in report.records if r.path == damaged]
    assert record.status == "corrupt"
    result = run_cli(capsys, "status", exp, "--all")
    assert result.code == 0, result.err
    assert "5 done, 1 corrupt" in result.out
    (row,) = [line for line in result.out.splitlines() if line.startswith(f"│ {damaged.name}")]
    assert "│ corrupt │ metrics.json unreadable: not UTF-8" in row
    _no_raw_warning(result.out + result.err)


def test_status_reads_a_non_utf8_failure_and_attempts_log_as_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    exp = _experiment(tmp_path)
    failed = _runs(exp)[1]
    (failed / "DONE").unlink()
    (failed / "FAILED").write_bytes(b"RuntimeError: \xff\xfe out of memory\n")
    (exp / "slurm").mkdir()
    (exp / "slurm" / "jobs.jsonl").write_bytes(NOT_UTF8)
    result = run_cli(capsys, "status", exp)
    assert result.code == 0, result.err
    assert "1 failed" in result.out and "out of memory" in result.out
    _no_raw_warning(result.out + result.err)


@pytest.mark.parametrize("damage", ["not utf-8", "missing", "no evaluation"])
def test_track_leaves_out_a_done_run_without_its_evaluations_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: str
) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard not installed (extra: tensorboard)")
    exp = _experiment(tmp_path)
    damaged = _runs(exp)[0]
    epochs = damaged / "epochs.jsonl"
    if damage == "not utf-8":
        epochs.write_bytes(NOT_UTF8)
    elif damage == "missing":
        epochs.unlink()
    else:
        epochs.write_text('{"epoch": "one"}\n')
    result = run_cli(capsys, "track", exp, "--to", "tensorboard")
    assert result.code == 0, result.err
    _no_raw_warning(result.out + result.err)
    assert "exported 5 finished runs to tensorboard; left out: 1 done without evaluations" in (
        result.out
    )
    lines = [line for line in result.out.splitlines() if damaged.name in line]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {epochs}")
    assert "not exported" in lines[0] and f"delete {damaged}" in lines[0]
    exported = {p.name for p in (exp / "tracking" / "tensorboard").iterdir()}
    assert len(exported) == 5 and not any(damaged.name in name for name in exported)


def test_track_names_damaged_and_unfinished_runs_in_the_store_words(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard not installed (extra: tensorboard)")
    exp = _experiment(tmp_path)
    corrupt, unfinished = _runs(exp)[:2]
    (corrupt / "metrics.json").write_bytes(NOT_UTF8)
    (unfinished / "DONE").unlink()
    result = run_cli(capsys, "track", exp, "--to", "tensorboard")
    assert result.code == 0, result.err
    _no_raw_warning(result.out + result.err)
    assert "exported 4 finished runs to tensorboard; left out: 1 corrupt, 1 unfinished" in (
        result.out
    )
    (line,) = [line for line in result.err.splitlines() if corrupt.name in line]
    assert line.startswith(f"warning: {corrupt / 'metrics.json'}: unreadable (not UTF-8")


@pytest.mark.tracking
def test_exporting_twice_to_mlflow_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow", reason="mlflow not installed (extra: mlflow)")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    exp = _experiment(tmp_path)
    first = run_cli(capsys, "track", exp, "--to", "mlflow")
    assert first.code == 0, first.err
    assert "before" not in first.out
    again = run_cli(capsys, "track", exp, "--to", "mlflow")
    assert again.code == 0, again.err
    assert "warning: 6 of these runs had been sent to mlflow before" in again.out
    assert "two runs for each" in again.out


def test_a_report_on_damaged_files_and_the_commands_print_the_same_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    exp = _experiment(tmp_path)
    damaged = _runs(exp)[0]
    (damaged / "metrics.json").write_text('{"format": 1, "best"')
    (exp / "spec.yaml").write_bytes(NOT_UTF8)
    report = build_report([exp], resamples=10)
    (said,) = [w for w in report.warnings if str(damaged) in w]
    result = run_cli(capsys, "track", exp, "--to", "tensorboard")
    _no_raw_warning(result.out + result.err)
    assert f"warning: {said}" in result.err.splitlines()


def test_identical_seed_scores_are_not_called_too_few_seeds(tmp_path: Path) -> None:
    same = (0.5, 0.5, 0.5)  # a model that predicts one class whatever the method
    exp = _experiment(tmp_path, {"baseline": same, "addrop": same})
    md = write_markdown_report(tmp_path / "report.md", build_report([exp], resamples=10))
    text = md.read_text()
    assert "not enough seeds" not in text
    assert "no spread: all seeds differ by the same amount" in text


def test_experiment_json_not_utf8_is_one_line_for_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    smoke = Path(__file__).resolve().parents[2] / "experiments" / "smoke.yaml"
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "experiment.json").write_bytes(NOT_UTF8)
    args = ["tasks=[sst2]", "seeds=[1]", "train.epochs=1", "--plain", "--results", tmp_path]
    result = run_cli(capsys, "run", smoke, *args)
    assert result.code == 2
    _no_raw_warning(result.out + result.err)
    (line,) = result.err.strip().splitlines()
    assert f"{tmp_path / 'smoke' / 'experiment.json'}: unreadable" in line
    assert "delete the file" in line
    shutil.rmtree(tmp_path / "smoke")
