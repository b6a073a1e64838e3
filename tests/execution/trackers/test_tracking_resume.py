"""A run killed mid-epoch and resumed continues its tracker runs: one MLflow run (reopened, not
a second one; none left RUNNING) whose histories hold each step once, TensorBoard's curves
appended to (not wiped) from the resumed step, and the W&B run resumed under the same id. Read
back with each tool's own reader (tests/tracking_readers.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fault_helpers import run_until_killed, smoke_args, start_addrop
from tracking_readers import tensorboard_steps, wandb_run_ids

from addrop_cli.execution.trackers.tracking import RunInfo, mlflow_store, remembered
from addrop_cli.store.state import TrainingStateFiles

pytestmark = [pytest.mark.tracking, pytest.mark.resume]

STEPS_PER_EPOCH = 15  # the sample's 240 SST-2 sentences in batches of 16
ARGS = [*smoke_args([1], 2), "methods={baseline: {}}", "train.checkpoint_every_steps=4"]
ARGS += ["tracking.log_every_steps=1"]  # every step, to see that none is logged twice
TRACKED = ("tensorboard", "mlflow", "wandb")


def test_a_resumed_run_continues_its_tracker_runs(tmp_path: Path, monkeypatch) -> None:
    missing = [n for n in TRACKED if importlib.util.find_spec(n) is None]
    if missing:
        pytest.skip(f"not installed: {missing} (pip install 'addrop-cli[tracking]')")
    # WANDB_SERVICE: a W&B service this test process started (the in-process tracker tests)
    # would otherwise be shared by the runs below, and outlive the killed one's stream
    for name in ("MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    args = [*ARGS, *(arg for name in TRACKED for arg in ("--track", name))]
    kill_at = STEPS_PER_EPOCH + 7  # 3 steps after the state written at step 20 (every 4)
    folder = run_until_killed(tmp_path, args, kill_at=f"baseline:{kill_at}")
    left = TrainingStateFiles(folder).load()
    assert left is not None and left.step == 20

    resumed = start_addrop(tmp_path, args)
    assert resumed.finish() == 0, resumed.output()
    assert "resuming from step 20" in resumed.output()
    assert "tracking:" not in resumed.output()  # every tracker started and ran
    steps = list(range(1, 2 * STEPS_PER_EPOCH + 1))

    tracked = tmp_path / "smoke" / "tracking"
    (events,) = (tracked / "tensorboard").iterdir()
    assert tensorboard_steps(events, "train/loss") == steps  # kept, and 21-22 not twice
    assert tensorboard_steps(events, "dev/accuracy") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store(tmp_path / "smoke"))
    (run,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == steps
    assert run.data.params["train.lr"] == "0.001"

    ids = wandb_run_ids(tracked / "wandb")
    assert len(ids) == 2 and len(set(ids)) == 1  # one offline folder per attempt, one W&B run


def test_an_attempt_that_did_not_track_leaves_nothing_to_continue(tmp_path: Path) -> None:
    """Resuming with a tracker the interrupted attempt did not use: a new tracker run."""
    exp = tmp_path / "exp"
    run = RunInfo("r1", "exp", "rte", "base", "baseline", 1, exp / "runs/r1", exp, {}, 20)
    assert remembered(run, "mlflow") is None
    run.folder.mkdir(parents=True)
    (run.folder / "tracking.json").write_text('{"wandb": "w1"}')
    assert remembered(run, "mlflow") is None and remembered(run, "wandb") == "w1"
