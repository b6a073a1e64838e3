"""``addrop track RESULTS --to NAME``: finished runs stored without tracking are exported to a
tracker from the store's records, and read back with the tracker's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli
from tracking_readers import mlflow_runs, tensorboard_hparam_metrics, tensorboard_scalars

from addrop_cli.execution.trackers.tracking import mlflow_store

pytestmark = pytest.mark.tracking

SMOKE = Path(__file__).resolve().parents[3] / "experiments" / "smoke.yaml"
ONE_RUN = ["tasks=[sst2]", "seeds=[1]", "train.epochs=2", "methods={baseline: {}}", "--plain"]


def test_finished_runs_are_exported_and_read_back(capsys, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("mlflow", reason="mlflow not installed (extra: mlflow)")
    pytest.importorskip("tensorboard", reason="tensorboard not installed (extra: tensorboard)")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ran = run_cli(capsys, "run", SMOKE, *ONE_RUN, "--results", tmp_path)
    assert ran.code == 0, ran.out + ran.err
    experiment = tmp_path / "smoke"
    assert not (experiment / "tracking").exists()  # stored without any tracker
    (folder,) = [p for p in (experiment / "runs").iterdir() if p.is_dir()]
    epochs = [json.loads(line) for line in (folder / "epochs.jsonl").read_text().splitlines()]
    dev = {e["step"]: e["dev"]["accuracy"] for e in epochs}

    for name in ("mlflow", "tensorboard"):
        result = run_cli(capsys, "track", experiment, "--to", name)
        assert result.code == 0, result.out + result.err
        assert f"exported 1 finished run to {name}" in result.out
        assert f"trackers: {name} -> {experiment / 'tracking'}" in result.out

    (found,) = mlflow_runs(mlflow_store(experiment), "smoke")
    assert found["status"] == "FINISHED" and found["tags"]["run_id"] == folder.name
    assert found["metrics"]["dev/accuracy"] == pytest.approx(dev, rel=1e-6)
    assert found["params"]["train.lr"] == "0.001"
    (events,) = (experiment / "tracking" / "tensorboard").iterdir()
    assert tensorboard_scalars(events)["dev/accuracy"] == pytest.approx(dev, rel=1e-6)
    assert "best_dev/accuracy" in tensorboard_hparam_metrics(events)
