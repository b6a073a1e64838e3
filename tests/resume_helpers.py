"""In-process resume: a run stopped after a given optimiser step, and resumed from the training
state it left (the in-process twin of tests/engine/test_resume.py's SIGKILL test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fault_helpers import EPOCH_TIMING, TIMING, without_timing

from addrop_cli.engine import loop
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.store.state import LoadedState, TrainingStateFiles


class Killed(Exception):
    """Stands for the kill: raised right after the optimiser step named."""


def stopped_and_resumed(
    run: RunSpec, stop_after: int, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[loop.RunOutcome, loop.RunOutcome, LoadedState]:
    """(the uninterrupted run, the run stopped after step ``stop_after`` and resumed, the state
    it resumed from)."""
    reference = loop.run_one(run)
    real_step = loop.RunLoop._optimizer_step

    def stop(self: loop.RunLoop) -> None:
        real_step(self)
        if self.state.global_step == stop_after:
            raise Killed

    monkeypatch.setattr(loop.RunLoop, "_optimizer_step", stop)
    files = TrainingStateFiles(state_dir)
    with pytest.raises(Killed):
        loop.run_one(run, state=files)
    monkeypatch.undo()
    left = files.load()
    assert left is not None
    step, epoch = left.step, left.epoch
    return reference, loop.run_one(run, resume=left.payload), LoadedState({}, step, epoch)


def stored(outcome: loop.RunOutcome) -> tuple[Any, ...]:
    """What the store keeps of a run, without the measured times."""
    metrics = without_timing(outcome.metrics.model_dump(mode="json"), TIMING)
    epochs = [without_timing(e.model_dump(mode="json"), EPOCH_TIMING) for e in outcome.epochs]
    predictions = {k: v.model_dump(mode="json") for k, v in outcome.predictions.items()}
    return metrics, epochs, predictions
