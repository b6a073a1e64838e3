"""bench/replay_search.py: searches replayed over a recorded grid, on a made-up landscape whose
scores are known (properties, not figures), and the committed REPLAY.md files are what the
command prints from the committed records."""

from __future__ import annotations

import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from replay_landscape import Landscape, as_range, complete_rows, narrowed  # noqa: E402
from replay_search import (  # noqa: E402
    REPLAY_FILE,
    STRATEGIES,
    Strategy,
    epochs_to_target,
    quantile,
    render,
    replay,
)

from addrop_cli.execution.sweeps.plan import plan_sweep, point_key  # noqa: E402
from addrop_cli.spec.load import load_spec  # noqa: E402
from addrop_cli.store.records import EpochRecord  # noqa: E402

SMOKE = ROOT / "experiments" / "smoke.yaml"
AXIS = "{start: 0.1, stop: 0.9, step: 0.2}"
SEEDS, EPOCHS = (1, 2), 3


def _score(p: float, q: float, seed: int, epoch: int) -> float:
    """Large p and q hurt; a seed shifts the score a little; later epochs score higher."""
    return 0.9 - 0.4 * p * q + 0.01 * (seed - 1.5) - 0.05 * (EPOCHS - epoch) + 0.02 * p


def landscape(points_recorded: int | None = None) -> Landscape:
    """A 5 x 5 p x q landscape made up from ``_score`` in the shape the records give."""
    overrides = ["tasks=[sst2]", f"train.epochs={EPOCHS}", "sweep.protocol=paper"]
    overrides += [f"sweep.grid.methods.addrop.{k}={AXIS}" for k in "pq"]
    spec = load_spec(SMOKE, overrides)
    order = plan_sweep(spec, SMOKE.parent).points[:points_recorded]
    curves, objective = {}, {}
    for point in order:
        p, q = point["methods.addrop.p"], point["methods.addrop.q"]
        curves[point_key(point)] = {
            s: [
                EpochRecord(
                    epoch=e, step=e, train_loss=0.5, select={"accuracy": _score(p, q, s, e)}, dev={}
                )
                for e in range(1, EPOCHS + 1)
            ]
            for s in SEEDS
        }
        objective[point_key(point)] = statistics.fmean(_score(p, q, s, EPOCHS) for s in SEEDS)
    best = max(objective.values())
    return Landscape(
        name="made-up",
        spec=narrowed(spec, order),
        base_dir=SMOKE.parent,
        task="sst2",
        variant="addrop",
        seeds=SEEDS,
        epochs=EPOCHS,
        order=tuple(order),
        planned=25,
        curves=curves,
        objective=objective,
        metric="accuracy",
        noise=statistics.stdev([best - 0.005, best + 0.005]),
        higher_is_better=True,
    )


def test_grid_order_reaches_the_best_at_the_first_point_within_noise_times_its_epochs() -> None:
    land = landscape()
    first = next(i for i, p in enumerate(land.order) if land.reached(land.objective[point_key(p)]))
    per_point = len(SEEDS) * EPOCHS
    played = replay(land, Strategy("grid", "none"), 0, 12)
    assert [t.point for t in played] == list(land.order)
    assert epochs_to_target(land, played) == (first + 1) * per_point
    assert sum(t.epochs for t in played) == len(land.order) * per_point


@pytest.mark.parametrize("search", ["grid", "random", "tpe", "cmaes"])
def test_pruning_never_costs_more_epochs_and_a_pruned_trial_stops_early(search: str) -> None:
    land = landscape()
    per_point = len(SEEDS) * EPOCHS
    for seed in range(3):
        plain = replay(land, Strategy(search, "none"), seed, 10)
        pruned = replay(land, Strategy(search, "median"), seed, 10)
        assert all(t.state != "pruned" and t.epochs in (0, per_point) for t in plain)
        assert all(t.epochs < per_point for t in pruned if t.state == "pruned")
        new_points = sum(t.state != "repeat" for t in pruned)
        assert sum(t.epochs for t in pruned) <= new_points * per_point
        assert new_points <= (len(land.order) if search == "grid" else 10)  # the budget
    grid = replay(land, Strategy("grid", "median"), 0, 10)
    assert sum(t.epochs for t in grid) < sum(
        t.epochs for t in replay(land, Strategy("grid", "none"), 0, 10)
    )
    assert any(t.state == "pruned" for t in grid)  # large p and q score low: the pruner acts


def test_a_replay_is_the_same_for_one_seed_and_differs_between_seeds() -> None:
    land = landscape()
    for strategy in (Strategy("random", "none"), Strategy("tpe", "median")):
        runs = [[t.point for t in replay(land, strategy, seed, 8)] for seed in (0, 0, 1)]
        assert runs[0] == runs[1] and runs[0] != runs[2]


def test_random_proposes_every_trial_at_random_and_tpe_from_its_model_after_start_up() -> None:
    from replay_search import replay_plan

    from addrop_cli.execution.sweeps.proposals import sampler_note
    from addrop_cli.execution.sweeps.study import search_space

    land = landscape()
    random_plan = replay_plan(land, Strategy("random", "none"), 0, 12)
    tpe_plan = replay_plan(land, Strategy("tpe", "none"), 0, 12)
    space = search_space(tpe_plan.sweep, "addrop")
    assert "TPE proposes none" in sampler_note(random_plan.sweep, space, 1)
    assert "TPE proposes 8 of 12" in sampler_note(tpe_plan.sweep, space, 1)


def test_the_report_rests_on_at_least_30_seeds_per_strategy_and_names_a_partial_grid() -> None:
    text = render(landscape(points_recorded=10), 30, 6)
    labels = tuple(f"| {s.label} |" for s in STRATEGIES)
    rows = [line for line in text.splitlines() if line.startswith(labels)]
    assert len(rows) == len(STRATEGIES)
    assert all(" of 30 |" in row for row in rows)
    assert "10 of the 25 planned (PARTIAL" in text
    assert "complete)" in render(landscape(), 30, 6)


def test_complete_rows_keep_whole_rows_of_the_first_axis_only() -> None:
    points = [{"p": p, "q": q} for p in (0.1, 0.5) for q in (0.1, 0.5, 0.9)]
    assert complete_rows(points, points[:4]) == points[:3]
    assert complete_rows(points, points[1:]) == points[3:]
    assert as_range([0.1, 0.3, 0.5]).values() == [0.1, 0.3, 0.5]
    assert as_range([0.1, 0.2, 0.5]) == [0.1, 0.2, 0.5]


def test_quantiles_interpolate_and_a_search_that_never_got_there_stays_never() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, math.inf], 0.5) == 2.0
    assert math.isinf(quantile([1.0, math.inf, math.inf], 0.5))
    assert quantile([1.0, 2.0, math.inf], 0.25) == 1.5


def _tracked(path: str) -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--", path], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the committed records cannot be told apart")
    return out.stdout.splitlines()


def _replayed() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "results").glob(f"*/{REPLAY_FILE}"))


@pytest.mark.slow
@pytest.mark.parametrize("grid", _replayed())
def test_a_committed_replay_is_what_the_command_prints_from_the_committed_records(
    grid: str, tmp_path: Path
) -> None:
    from replay_landscape import load_landscape

    committed = (ROOT / "results" / grid / REPLAY_FILE).read_text(encoding="utf-8")
    for name in _tracked(f"results/{grid}"):  # the committed files only, as a fresh clone has
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    seeds = int(committed.split("--seeds ")[1].split()[0])
    trials = int(committed.split("--trials ")[1].split("`")[0])
    assert seeds >= 30
    assert render(load_landscape(tmp_path / "results" / grid), seeds, trials) == committed


FIXTURE_GRID = """\
name: fixture-grid
model: {{name_or_path: "{model}", pretrained: false}}
tasks: [sst2]
data: {{glue_dir: "{glue}"}}
seeds: [1, 2]
train: {{epochs: 3, batch_size: 8, lr: 3.0e-3, max_length: 32, patience: null, device: cpu}}
methods:
  addrop: {{attribution: gradient, p: 0.3, q: 0.3, layers: all}}
sweep:
  search: grid
  protocol: paper
  grid:
    methods.addrop.p: {{start: 0.1, stop: 0.9, step: 0.4}}
    methods.addrop.q: {{start: 0.1, stop: 0.9, step: 0.4}}
"""


def _live_trials(folder: Path, land: Landscape) -> list[tuple[dict, str]]:
    """A live sweep's trials from its study file: (point, complete, pruned or repeat)."""
    from addrop_cli.execution.sweeps.proposals import REPEAT_MARK
    from addrop_cli.execution.sweeps.study import point_of

    url = f"sqlite:///{folder / 'sweep' / 'study.db'}"
    study = optuna.load_study(study_name="sst2/addrop", storage=url)
    assert land.spec.sweep is not None
    return [
        (
            point_of(land.spec.sweep, t.params),
            "repeat" if REPEAT_MARK in t.user_attrs else t.state.name.lower(),
        )
        for t in study.trials
    ]


@pytest.mark.slow
def test_the_replay_proposes_and_prunes_what_the_live_sweep_does_for_the_same_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 3 x 3 grid recorded with the tiny model, then each strategy live (`addrop sweep`,
    median pruning, sampler seed 0) and replayed over the recording: the same points in the
    same order, the same trials pruned (the tiny model's runs are deterministic on a CPU)."""
    from cli_helpers import run_cli
    from replay_landscape import load_landscape

    spec = tmp_path / "grid.yaml"
    assets = ROOT / "experiments"
    spec.write_text(
        FIXTURE_GRID.format(model=assets / "assets" / "tiny-bert", glue=assets / "sample" / "glue")
    )
    common = ["--workers", "1", "--threads", "1", "--plain", "--no-report"]
    assert run_cli(capsys, "sweep", spec, "--results", tmp_path / "grid", *common).code == 0
    land = load_landscape(tmp_path / "grid" / "fixture-grid")
    grid = replay(land, Strategy("grid", "none"), 0, 6)
    assert [t.point for t in grid] == list(land.order) and len(land.order) == 9
    states = []
    for search in ("random", "tpe", "cmaes"):
        args = [f"sweep.search={'tpe' if search == 'random' else search}", "sweep.pruner=median"]
        args += ["sweep.seed=0", "sweep.trials=6"]
        args += ["sweep.startup_trials=6"] if search == "random" else []
        out = tmp_path / search
        assert run_cli(capsys, "sweep", spec, *args, "--results", out, *common).code == 0
        live = _live_trials(out / "fixture-grid", land)
        replayed = [(t.point, t.state) for t in replay(land, Strategy(search, "median"), 0, 6)]
        assert replayed == live, search
        states += [state for _, state in live]
    assert "pruned" in states  # the check covers the pruner, not only the proposals


def test_the_replay_figures_quoted_in_the_docs_are_the_committed_replay_lines() -> None:
    """docs/benchmarks.md quotes REPLAY.md in blocks opened by the command that printed it:
    every quoted line must stand in the committed file, so no figure about search is typed."""
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    blocks = text.split("$ python bench/replay_search.py results/")[1:]
    assert blocks, "docs/benchmarks.md quotes no replay"
    for block in blocks:
        grid = block.split()[0]
        committed = (ROOT / "results" / grid / REPLAY_FILE).read_text(encoding="utf-8")
        quoted = block.split("```")[0].splitlines()[1:]
        assert quoted and all(line in committed.splitlines() for line in quoted if line), grid
