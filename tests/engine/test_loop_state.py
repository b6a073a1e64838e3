"""What the training loop keeps between steps: evaluations every N steps, and the torch thread
count a resumed run trains with."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from addrop_cli.data.metrics import higher_is_better
from addrop_cli.engine.loop import run_one
from addrop_cli.engine.stopping import EarlyStopping
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import RunSpec, expand
from addrop_cli.store.state import TrainingStateFiles

SMOKE = Path(__file__).resolve().parents[2] / "experiments" / "smoke.yaml"


def _baseline(*overrides: str) -> RunSpec:
    spec = load_spec(SMOKE, ["tasks=[sst2]", "seeds=[1]", *overrides])
    return next(r for r in expand(spec, SMOKE.parent) if r.variant == "baseline")


def test_an_eval_every_that_divides_the_epoch_evaluates_its_last_step_once() -> None:
    # every 1 step divides any epoch; patience above the steps of an epoch cannot stop in it
    patience = 20
    run = _baseline("train.epochs=2", "train.eval_every_steps=1", f"train.patience={patience}")
    outcome = run_one(run)
    points = [(record.epoch, record.step) for record in outcome.epochs]
    assert len(points) == len(set(points)), "an (epoch, step) evaluated twice"
    steps = [step for _, step in points]
    assert steps == list(range(1, len(steps) + 1))  # every step once, none left out

    # Early stopping saw each evaluation once: replaying the log stops where the run stopped.
    metric = outcome.metrics.main_metric
    replay = EarlyStopping(metric, higher_is_better(metric), patience)
    stops = []
    for record in outcome.epochs:
        replay.update(record.select[metric])
        stops.append(replay.should_stop)
    assert not any(stops[:-1]) and stops[-1] == outcome.metrics.stopped_early


def test_resuming_with_another_thread_count_warns_naming_both(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = TrainingStateFiles(tmp_path)
    run_one(_baseline("train.epochs=2", "train.threads=1"), state=files)  # a state after epoch 0

    def resume_with(threads: int) -> list[str]:
        loaded = files.load()
        assert loaded is not None
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="addrop_cli"):
            run_one(_baseline("train.epochs=2", f"train.threads={threads}"), resume=loaded.payload)
        return [r.getMessage() for r in caplog.records if "threads" in r.getMessage()]

    assert resume_with(1) == []
    (warning,) = resume_with(2)
    assert "resuming with 2 torch threads" in warning and "written with 1" in warning


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_the_learning_rate_is_the_trainers_at_every_step(schedule: str) -> None:
    """transformers' schedules (what the Trainer uses): warmup climbs from 0 by 1/warmup a step,
    then constant stays at lr and linear falls to 0 at the last step."""
    import torch

    from addrop_cli.engine.optim import build_schedule
    from addrop_cli.spec.schema import TrainSpec

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    total, warmup = 20, 4
    train = TrainSpec(schedule=schedule, warmup_ratio=warmup / total)
    scheduler = build_schedule(optimizer, train, total)
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    after = [1.0] * (total - warmup)
    if schedule == "linear":
        after = [(total - step) / (total - warmup) for step in range(warmup, total)]
    assert seen == pytest.approx([step / warmup for step in range(warmup)] + after)


def test_a_warning_during_a_run_reaches_its_train_log(tmp_path: Path) -> None:
    """The thread-count warning of a resume (and any library warning while the run goes) is
    written to the run's train.log, not only to the console; none after the run's end."""
    from addrop_cli.execution.attempt.display import TrainLog

    path = tmp_path / "run" / "train.log"
    path.parent.mkdir()
    train_log = TrainLog(path, _baseline(), 1, 1)
    warn = logging.getLogger("addrop_cli.engine.loopstate").warning
    warn("resuming with 2 torch threads where the state was written with 1")
    train_log.on_end("done", "")
    warn("after the run")
    text = path.read_text()
    assert "warning: resuming with 2 torch threads" in text
    assert "after the run" not in text
