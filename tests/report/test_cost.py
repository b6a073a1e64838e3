"""Cost that survives machine load: each epoch records its optimiser steps, its training time
and process CPU time (evaluations not counted) and the load average; the report's cost table
shows per-step figures, takes its ratios from them, flags cells whose runs ran under different
loads, and still renders stores written before the fields existed."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

import pytest
from fixtures.store import make_store

from addrop_cli.engine.evaluation import Evaluator
from addrop_cli.engine.loop import RunLoop, run_one
from addrop_cli.report import build_report
from addrop_cli.report.export import to_json
from addrop_cli.report.render import cost_grid
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"
STORE = ROOT / "tests" / "fixtures" / "store"
BUSY = 0.5
"""CPU seconds each evaluation spins for in the run test: more than training leaves unmeasured."""


def _spin(seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def test_epoch_records_carry_steps_cpu_time_and_load_without_the_evaluations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tiny real run evaluating every 5 of its 15 steps per epoch, whose evaluations each
    spin for BUSY CPU seconds: each record's steps count from the epoch's start, and its wall
    and CPU clocks hold the training (timed apart here) but not the two mid-epoch evaluations."""
    trained: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])  # epoch -> [wall, cpu]
    current = {"epoch": 0}
    real_evaluate, real_step, real_forward = (
        Evaluator.__call__, RunLoop._optimizer_step, RunLoop._forward_backward,
    )  # fmt: skip

    def timed(fn, epoch_of):  # type: ignore[no-untyped-def]
        def wrapper(self, *args):  # type: ignore[no-untyped-def]
            wall, cpu = time.perf_counter(), time.process_time()
            out = fn(self, *args)
            sums = trained[epoch_of(args)]
            sums[0] += time.perf_counter() - wall
            sums[1] += time.process_time() - cpu
            return out

        return wrapper

    def forward_epoch(args):  # type: ignore[no-untyped-def]
        current["epoch"] = args[1]
        return args[1]

    def slow_evaluate(self, model):  # type: ignore[no-untyped-def]
        _spin(BUSY)
        return real_evaluate(self, model)

    monkeypatch.setattr(Evaluator, "__call__", slow_evaluate)
    monkeypatch.setattr(RunLoop, "_forward_backward", timed(real_forward, forward_epoch))
    monkeypatch.setattr(RunLoop, "_optimizer_step", timed(real_step, lambda _: current["epoch"]))
    args = ["tasks=[sst2]", "seeds=[1]", "train.epochs=2", "train.eval_every_steps=5"]
    spec = load_spec(SMOKE, [*args, "train.threads=1"])
    run = next(r for r in expand(spec, SMOKE.parent) if r.variant == "baseline")
    epochs = run_one(run).epochs

    assert [(e.epoch, e.steps) for e in epochs] == [(1, 5), (1, 10), (1, 15)] + [
        (2, 5), (2, 10), (2, 15)
    ]  # fmt: skip
    assert all(e.cpus == os.cpu_count() for e in epochs)
    if hasattr(os, "getloadavg"):
        assert all(isinstance(e.load_1m, float) and e.load_1m >= 0 for e in epochs)
    for end in (epochs[2], epochs[5]):  # each epoch's last evaluation: its figures from its start
        wall, cpu = trained[end.epoch - 1]
        assert wall - 0.01 <= end.epoch_time_s < wall + 2 * BUSY  # not the 2 evaluations
        assert end.cpu_time_s is not None and cpu - 0.01 <= end.cpu_time_s < cpu + BUSY
    assert epochs[0].cpu_time_s < epochs[1].cpu_time_s < epochs[2].cpu_time_s  # type: ignore[operator]


def _write(
    exp: Path,
    variant: str,
    seed: int,
    *,
    wall: float,
    step_s: list[float],
    loads: list[float] | None = None,
    cpus: int = 2,
) -> None:
    """A finished SST-2 run of ``len(step_s)`` epochs of 10 steps each; epoch i trains
    ``step_s[i]`` seconds per step (CPU time: 1.5 times that); ``loads``: none recorded when
    None, and then none of the new fields either (a run stored before they existed)."""
    params = make_store.BASELINE if variant == "baseline" else make_store.ADDROP
    config = make_store.run_config(exp.name, task="sst2", variant=variant, params=params, seed=seed)
    folder = make_store.write_run(exp, config, {"accuracy": 0.8}, cost=(wall, 40.0, 800.0))
    lines = []
    for i, per_step in enumerate(step_s):
        line = {"epoch": i, "step": 10 * (i + 1), "train_loss": 0.5, "select": {}, "dev": {}}
        line |= {"epoch_time_s": 10 * per_step, "train_samples_per_s": 40.0}
        if loads is not None:
            line |= {"steps": 10, "cpu_time_s": 15 * per_step, "load_1m": loads[i], "cpus": cpus}
        lines.append(line)
    (folder / "epochs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_cost_ratios_come_from_per_step_time_not_wall_time(tmp_path: Path) -> None:
    """The baseline trains 10 epochs at 0.1 s/step (100 s); AD-DROP stops after 3 epochs at
    0.2 s/step (60 s, its first epoch a slow 1.0 s/step that the median leaves out). Wall time
    says 0.60x; per step AD-DROP costs twice the baseline."""
    exp = tmp_path / "early"
    for seed in (1, 2):
        _write(exp, "baseline", seed, wall=100.0, step_s=[0.1] * 10, loads=[1.0] * 10)
        _write(exp, "addrop", seed, wall=60.0, step_s=[1.0, 0.2, 0.2], loads=[1.0] * 3)
    report = build_report([exp], resamples=50)
    cost = report.cost.set_index("variant")
    assert cost.loc["addrop", "wall_ratio"] == pytest.approx(0.6)
    assert cost.loc["addrop", "step_time_s"] == pytest.approx(0.2)
    assert cost.loc["addrop", "cpu_step_s"] == pytest.approx(0.3)
    assert cost.loc["addrop", "step_ratio"] == pytest.approx(2.0)
    assert cost.loc["addrop", "cpu_ratio"] == pytest.approx(2.0)
    grid = cost_grid(report)
    rows = grid.text.set_index("Variant")
    assert rows.loc["addrop", "time/step x ref"] == "2.00x"
    assert rows.loc["addrop", "CPU/step x ref"] == "2.00x"
    assert rows.loc["addrop", "train ms/step"] == "200.0"
    assert not any("(wall)" in note for note in grid.notes)
    exported = {row["variant"]: row for row in json.loads(to_json(report))["cost"]}
    assert exported["addrop"]["step_ratio"] == pytest.approx(2.0)
    assert exported["addrop"]["mixed_load"] is False


def test_a_cell_whose_runs_ran_under_different_loads_is_flagged(tmp_path: Path) -> None:
    exp = tmp_path / "load"
    _write(exp, "baseline", 1, wall=100.0, step_s=[0.1] * 2, loads=[0.5, 0.5])
    _write(exp, "baseline", 2, wall=140.0, step_s=[0.14] * 2, loads=[3.0, 3.0])
    for seed in (1, 2):
        _write(exp, "addrop", seed, wall=120.0, step_s=[0.12] * 2, loads=[1.0, 1.4])
    report = build_report([exp], resamples=50)
    cost = report.cost.set_index("variant")
    assert bool(cost.loc["baseline", "mixed_load"]) and bool(cost.loc["baseline", "over_cores"])
    assert not cost.loc["addrop", "mixed_load"] and not cost.loc["addrop", "over_cores"]
    grid = cost_grid(report)
    rows = grid.text.set_index("Variant")
    assert rows.loc["baseline", "load (1 min)"] == "0.5–3.0 mixed > 2 cores"
    assert rows.loc["addrop", "load (1 min)"] == "1.2"
    assert "Runs under different loads: SST-2 / baseline." in grid.notes
    assert "Load above the cores in some epochs: SST-2 / baseline." in grid.notes


def test_runs_stored_before_the_cost_fields_render_with_dashes_and_a_wall_fallback(
    tmp_path: Path,
) -> None:
    """Old records (no steps, CPU time or load): the new columns show "—" and the time ratio
    falls back to wall time, marked and explained; a cell where one run lacks them shows "—"."""
    exp = tmp_path / "old"
    for seed in (1, 2):
        _write(exp, "baseline", seed, wall=100.0, step_s=[0.1] * 3)
    _write(exp, "addrop", 1, wall=150.0, step_s=[0.15] * 3)
    _write(exp, "addrop", 2, wall=150.0, step_s=[0.15] * 3, loads=[1.0] * 3)  # one new run
    grid = cost_grid(build_report([exp], resamples=50))
    rows = grid.text.set_index("Variant")
    for variant in ("baseline", "addrop"):
        assert rows.loc[variant, "train ms/step"] == rows.loc[variant, "CPU ms/step"] == "—"
        assert rows.loc[variant, "CPU/step x ref"] == "—"
    assert rows.loc["addrop", "time/step x ref"] == "1.50x (wall)"
    assert rows.loc["baseline", "load (1 min)"] == "—"
    assert any("'(wall)' ratios fall back to mean wall time" in note for note in grid.notes)
    committed = cost_grid(build_report([STORE / "glue-small"], resamples=50))  # format 1
    assert set(committed.text["train ms/step"]) == {"—"}
    assert set(committed.text["load (1 min)"]) == {"—"}
