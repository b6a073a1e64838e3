"""A recorded grid as a landscape a search can be replayed over (bench/replay_search.py).

A grid sweep's results folder (``addrop sweep`` on a ``search: grid`` spec) holds, for every
point and selection seed, the run's per-epoch selection scores (epochs.jsonl). This module reads
them back with the package's own reader and scores each point with the package's own selection
(the mean over the selection seeds of each run's best-epoch score, as a tpe/cmaes study is told),
so a replayed trial sees what the live search would have seen had it trained that point.

A grid still being recorded is read as far as it goes: the replay keeps the complete rows of the
grid's first axis (every point of the row has every selection seed done), and says how many of
the planned points that is.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from addrop_cli.execution.sweeps.plan import Point, plan_sweep, point_key
from addrop_cli.execution.sweeps.selection import select_winners
from addrop_cli.spec.schema import ExperimentSpec, GridRange
from addrop_cli.store.reader import SELECT_STAGE, StoreWarning, load_runs
from addrop_cli.store.records import EpochRecord


@dataclass(frozen=True)
class Landscape:
    """The recorded grid of one (task, swept variant)."""

    name: str
    spec: ExperimentSpec
    """The recorded spec, its grid narrowed to the complete rows and written as ranges."""
    base_dir: Path
    task: str
    variant: str
    seeds: tuple[int, ...]
    epochs: int
    order: tuple[Point, ...]
    """The complete points in the grid sweep's own order."""
    planned: int
    """How many points the recorded grid plans."""
    curves: dict[str, dict[int, list[EpochRecord]]]
    """Point key -> seed -> the run's evaluations, epoch by epoch."""
    objective: dict[str, float]
    """Point key -> the selection objective (mean over the seeds of the best-epoch score)."""
    metric: str
    """The objective's metric: the task's main metric on the selection split."""
    noise: float
    """Seed noise: the sample std over the seeds of the best point's scores."""
    higher_is_better: bool

    @property
    def best(self) -> float:
        pick = max if self.higher_is_better else min
        return pick(self.objective.values())

    @property
    def target(self) -> float:
        """The score a search must reach to be within seed noise of the grid's best."""
        return self.best - self.noise if self.higher_is_better else self.best + self.noise

    def reached(self, score: float) -> bool:
        return score >= self.target if self.higher_is_better else score <= self.target

    @property
    def complete(self) -> bool:
        return len(self.order) == self.planned


def load_landscape(root: Path) -> Landscape:
    """The landscape a grid sweep's results folder records (its spec.yaml and runs/)."""
    # the folder's spec.yaml is the resolved spec, every default written out: read it with the
    # schema alone (load_spec's checks refuse defaults a grid search does not use)
    spec = ExperimentSpec.model_validate(yaml.safe_load((root / "spec.yaml").read_text("utf-8")))
    if spec.sweep is None or spec.sweep.search != "grid" or len(spec.tasks) != 1:
        raise SystemExit(f"{root}: not a one-task grid sweep; record one with `addrop sweep`")
    plan = plan_sweep(spec, root)
    if len(plan.swept_variants) != 1:
        raise SystemExit(f"{root}: the replay reads a grid over one variant's paths")
    with warnings.catch_warnings():  # a run being recorded right now is left out, quietly
        warnings.simplefilter("ignore", StoreWarning)
        records = [r for r in load_runs(root) if r.sweep_stage == SELECT_STAGE]
    seeds = tuple(plan.select_seeds)
    curves: dict[str, dict[int, list[EpochRecord]]] = {}
    done = [r for r in records if r.status == "done"]
    for r in done:
        curves.setdefault(point_key(r.sweep_point or {}), {})[r.seed] = r.epochs()
    finished = [p for p in plan.points if set(curves.get(point_key(p), {})) >= set(seeds)]
    order = complete_rows(plan.points, finished)
    keys = {point_key(p) for p in order}
    if not order:
        raise SystemExit(f"{root}: no complete row of the grid is recorded yet")
    (selection,) = select_winners([r for r in done if point_key(r.sweep_point or {}) in keys])
    objective = {point_key(s.point): float(s.objective.center or 0.0) for s in selection.scores}
    best = selection.winner
    assert best is not None
    noise = float(best.objective.std or 0.0)  # the sample std over the selection seeds
    return Landscape(
        name=root.name,
        spec=narrowed(spec, order),
        base_dir=root,
        task=spec.tasks[0],
        variant=plan.swept_variants[0],
        seeds=seeds,
        epochs=spec.train.epochs,
        order=tuple(order),
        planned=len(plan.points),
        curves={k: v for k, v in curves.items() if k in keys},
        objective=objective,
        metric=best.metric,
        noise=noise,
        higher_is_better=selection.higher_is_better,
    )


def complete_rows(points: list[Point], finished: list[Point]) -> list[Point]:
    """The finished points that form whole rows of the grid's first axis, in grid order."""
    if not points:
        return []
    first = next(iter(points[0]))
    done = {point_key(p) for p in finished}
    rows: dict[Any, list[Point]] = {}
    for p in points:
        rows.setdefault(p[first], []).append(p)
    whole = [v for v, row in rows.items() if all(point_key(p) in done for p in row)]
    return [p for p in points if p[first] in whole]


def narrowed(spec: ExperimentSpec, order: list[Point]) -> ExperimentSpec:
    """The spec with its grid cut to ``order``'s values, evenly spaced axes written as
    ``{start, stop, step}`` ranges: TPE and CMA-ES then see the values' order (on a list,
    CMA-ES has nothing to fit and TPE treats the values as unordered categories)."""
    assert spec.sweep is not None
    grid: dict[str, Any] = {}
    for path in spec.sweep.grid:
        values = sorted({p[path] for p in order})
        grid[path] = as_range(values)
    sweep = spec.sweep.model_copy(update={"grid": grid})
    return spec.model_copy(update={"sweep": sweep})


def as_range(values: list[Any]) -> Any:
    """Evenly spaced numbers as a GridRange with exactly these values; anything else as is."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if len(values) < 2 or not numbers:
        return values
    step = round(values[1] - values[0], 10)
    candidate = GridRange(start=values[0], stop=values[-1], step=step)
    return candidate if candidate.values() == values else values


def points_within_noise(land: Landscape) -> int:
    return sum(land.reached(v) for v in land.objective.values())


def grid_size(land: Landscape) -> str:
    """``5 x 5`` for a two-path grid."""
    assert land.spec.sweep is not None
    sizes = [len({p[path] for p in land.order}) for path in land.spec.sweep.grid]
    return " x ".join(map(str, sizes))
