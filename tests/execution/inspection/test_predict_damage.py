"""`addrop predict` on damaged input (issue 23, item 11): a half-written or corrupt checkpoint is
one line, and an interrupted prediction leaves no partial submission that looks complete."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from cli_helpers import run_cli
from rich.console import Console

from addrop_cli import cli
from addrop_cli.engine import evaluation

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "experiments" / "smoke.yaml"
ARGS = ("seeds=[1]", "train.epochs=1", "train.save_checkpoint=true", "methods.addrop.layers=[0]")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results of the smoke spec's two tasks, one seed, with checkpoints (made once)."""
    results = tmp_path_factory.mktemp("trained")
    argv = sys.argv
    sys.argv = ["addrop", "run", str(SMOKE), "--plain", "--results", str(results), *ARGS]
    try:
        cli.main()
    except SystemExit as done:
        assert done.code in (0, None)
    finally:
        sys.argv = argv
    return results


def copy_of(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / "results")
    return tmp_path / "results"


def predict(capsys: pytest.CaptureFixture[str], results: Path, out: Path, *more: str):  # type: ignore[no-untyped-def]
    return run_cli(capsys, "predict", SMOKE, *ARGS, *more, f"results_dir={results}", "--out", out)


@pytest.mark.parametrize("damage", ["half-written", "garbage", "empty"])
def test_a_damaged_checkpoint_is_one_line(
    capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path, damage: str
) -> None:
    results = copy_of(trained, tmp_path)
    for weights in (results / "smoke" / "runs").glob("*/checkpoint/model.safetensors"):
        data = weights.read_bytes()
        weights.write_bytes(
            {"half-written": data[: len(data) // 2], "garbage": b"\x00" * 64, "empty": b""}[damage]
        )
    result = predict(capsys, results, tmp_path / "board")
    assert result.code == 2 and "Traceback" not in result.err
    assert "the checkpoint cannot be loaded" in result.err and "delete the run folder" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "board").exists(), "nothing written"


def test_a_failed_or_interrupted_prediction_leaves_the_submission_as_it_was(
    capsys: pytest.CaptureFixture[str],
    trained: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    results, out = copy_of(trained, tmp_path), tmp_path / "board"
    assert predict(capsys, results, out, "tasks=[sst2]").code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"SST-2.tsv", "provenance.json"}
    # both tasks: SST-2 is predicted, then the sample has no STS-B test split
    failed = predict(capsys, results, out)
    assert failed.code == 2 and "STS-B/test.tsv" in failed.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the old submission kept"
    shutil.rmtree(out)
    failed = predict(capsys, results, out)
    assert not out.exists() or not any(out.iterdir()), "no partial submission"

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "predict_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        from addrop_cli.execution.inspection.predict import predict_command
        from addrop_cli.spec.load import load_spec

        spec = load_spec(SMOKE, [*ARGS, "tasks=[sst2]", f"results_dir={results}"])
        predict_command(spec, SMOKE, out=out, variant=None, console=Console())
    assert not out.exists() or not any(out.iterdir()), "no partial submission"
    assert not list(tmp_path.glob(".board*")), "no staging folder left behind"


def _sst2_run(results: Path) -> Path:
    return min(
        p
        for p in (results / "smoke" / "runs").iterdir()
        if p.is_dir() and '"sst2"' in (p / "run.json").read_text()
    )


@pytest.mark.parametrize(
    "text, said",
    [
        ("a fine film\nand a bad one", "holds a line break"),
        ("a fine film\r", "holds a line break"),
        ("", "an empty text"),
        ("   ", "an empty text"),
    ],
)
def test_a_text_that_would_break_the_tsv_or_is_empty_is_one_line(
    capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path, text: str, said: str
) -> None:
    results = trained / "smoke"
    run = _sst2_run(trained).name
    out = tmp_path / "labels.tsv"
    result = run_cli(capsys, "predict", results, "--run", run, "--text", text, "--out", out)
    assert result.code == 2, result.out
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: --text 1: ") and said in line
    assert not out.exists()


def test_an_unfinished_run_is_not_blamed_on_save_checkpoint(
    capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path
) -> None:
    results = copy_of(trained, tmp_path)
    run = _sst2_run(results)
    (run / "DONE").unlink()
    result = run_cli(capsys, "predict", results / "smoke", "--run", run.name, "--text", "good")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert "the run is unfinished" in line and "save_checkpoint" not in line


def test_run_without_text_and_out_folder_get_the_right_hints(
    capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path
) -> None:
    results = trained / "smoke"
    run = _sst2_run(trained).name
    bare = run_cli(capsys, "predict", results, "--run", run)
    assert bare.code == 2
    (line,) = bare.err.strip().splitlines()
    assert "--text" in line and f"--run {run} --text" in line and "YAML" not in line
    folder = run_cli(capsys, "predict", results, "--run", run, "--text", "good", "--out", tmp_path)
    assert folder.code == 2
    (line,) = folder.err.strip().splitlines()
    assert f"--out {tmp_path}: is a folder" in line and "--out labels.tsv" in line
