"""What the training loop keeps between steps: evaluations every N steps, and the torch thread
count a resumed run trains with."""

from __future__ import annotations

from pathlib import Path

from addrop_cli.data.metrics import higher_is_better
from addrop_cli.engine.loop import run_one
from addrop_cli.engine.stopping import EarlyStopping
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import RunSpec, expand

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.yaml"


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
