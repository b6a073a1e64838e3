"""What a dry run and a resumed run say matches what happens (issue 23, item 13): "resume" only
with a training state that loads, no runs listed for layers the model lacks, and no "previous
state" to fall back to when there is none."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli

from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.store.state import TrainingStateFiles

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "experiments" / "smoke.yaml"
ONE = ("tasks=[sst2]", "seeds=[1]", "methods.addrop.layers=[0]")


def one_run_dir(results: Path) -> Path:
    spec = load_spec(SMOKE, list(ONE))
    runs = [r for r in expand(spec, SMOKE.parent) if r.variant == "addrop"]
    folder = ExperimentStore.located(spec.name, spec.results_dir, results).run(runs[0].run_id).path
    folder.mkdir(parents=True)
    return folder


def plan(capsys: pytest.CaptureFixture[str], results: Path, *extra: str) -> str:
    result = run_cli(capsys, "run", SMOKE, "--dry-run", "--results", results, *ONE, *extra)
    assert result.code == 0, result.err
    return result.out


def test_dry_run_says_resume_only_for_a_state_that_loads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    states = TrainingStateFiles(one_run_dir(tmp_path))
    states.write({"x": torch.arange(4)}, step=6, epoch=0)
    assert "resume at step 6" in plan(capsys, tmp_path)
    restart = plan(capsys, tmp_path, "--restart")
    assert "resume at" not in restart and "from step 0" in restart, "--restart: from step 0"
    (states.current / "state.pt").write_bytes(b"half-written")  # what load() discards
    out = plan(capsys, tmp_path)
    assert "resume at" not in out and "from step 0" in out


def test_dry_run_does_not_promise_a_resume_from_a_truncated_state(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    states = TrainingStateFiles(one_run_dir(tmp_path))
    states.write({"x": torch.arange(64)}, step=6, epoch=0)
    data = (states.current / "state.pt").read_bytes()
    (states.current / "state.pt").write_bytes(data[: len(data) // 2])
    out = plan(capsys, tmp_path)
    assert "resume at" not in out and "from step 0" in out
    assert states.load() is None, "the run indeed starts from step 0"


def test_status_agrees_with_the_dry_run_on_a_damaged_state(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    states = TrainingStateFiles(one_run_dir(tmp_path))
    states.write({"x": torch.arange(64)}, step=6, epoch=0)
    (states.current / "state.pt").write_bytes(b"")
    spec = load_spec(SMOKE, list(ONE))
    status = run_cli(
        capsys, "status", ExperimentStore.located(spec.name, spec.results_dir, tmp_path).root
    )
    assert "starts again from step 0" in status.out and "resumes from step" not in status.out


def test_dry_run_refuses_layers_the_model_does_not_have(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = run_cli(
        capsys, "run", SMOKE, "--dry-run", "--results", tmp_path, "methods.addrop.layers=[0,7]"
    )
    assert result.code == 2 and "to run" not in result.out
    assert "7" in result.err and "layer" in result.err and len(result.err.splitlines()) == 1


def test_no_previous_state_to_fall_back_to_is_not_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    states = TrainingStateFiles(tmp_path)
    states.write({"x": torch.arange(4)}, step=4, epoch=0)
    (states.current / "state.pt").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        assert states.load() is None
    assert "training state discarded" in caplog.text
    assert "previous state" not in caplog.text and "a clean start" in caplog.text


def test_status_says_where_a_run_resumes_and_why_an_old_state_does_not(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    states = TrainingStateFiles(one_run_dir(tmp_path))
    states.write({"x": torch.arange(4)}, step=6, epoch=1)  # the loop's position: second epoch
    spec = load_spec(SMOKE, list(ONE))
    store = ExperimentStore.located(spec.name, spec.results_dir, tmp_path).root
    assert "resumes from step 6 (epoch 2) of its training state" in run_cli(
        capsys, "status", store
    ).out.replace("\n", "")
    manifest = states.current / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"format": 2', '"format": 1'))
    old = run_cli(capsys, "status", store).out
    assert "resumes from" not in old and "unusable training state" in old
