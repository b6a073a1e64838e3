"""A sweep's points (grid x random draws) and the runs of each stage."""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from addrop_cli.errors import SpecError
from addrop_cli.spec.matrix import RunSpec, expand
from addrop_cli.spec.schema import ExperimentSpec, RandomDist, SweepSpec
from addrop_cli.spec.sweeps import OPTUNA_SEARCHES, apply_point
from addrop_cli.store.reader import SELECT_STAGE

REPORT_STAGE = "report"
Point = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Points
# ---------------------------------------------------------------------------------------------


def sweep_points(sweep: SweepSpec) -> list[Point]:
    """Every point: the grid's full product, crossed with ``samples`` random draws.

    Grid order is the order of the paths, the last varying fastest; random draws come from
    ``random.Random(sweep.seed)``, so the same spec always gives the same points.
    """
    grid = sweep.grid_values()
    grid_points = [
        dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())
    ]
    if not sweep.random:
        return grid_points
    rng = random.Random(sweep.seed)
    draws = [
        {path: sample(dist, rng) for path, dist in sweep.random.items()}
        for _ in range(sweep.samples)
    ]
    return [{**g, **d} for g in grid_points for d in draws]


def sample(dist: RandomDist, rng: random.Random) -> Any:
    """One draw from ``dist``."""
    if dist.distribution == "choice":
        return rng.choice(list(dist.values or []))
    assert dist.low is not None and dist.high is not None
    if dist.distribution == "int_uniform":
        return rng.randint(int(dist.low), int(dist.high))
    if dist.distribution == "log_uniform":
        value = math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
    else:
        value = rng.uniform(dist.low, dist.high)
    if dist.digits:
        value = float(f"{value:.{dist.digits}g}")
    return min(max(value, dist.low), dist.high)


def variant_point(point: Point, variant: str) -> Point:
    """The part of ``point`` that concerns ``variant`` (its own methods.* paths and the rest)."""
    return {
        path: value
        for path, value in point.items()
        if not path.startswith("methods.") or path.split(".")[1] == variant
    }


def point_key(point: Any) -> str:
    """A point as a hashable, order-independent key."""
    return json.dumps(point, sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------
# Plan: the runs of each stage
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepPlan:
    """Stage 1 of a sweep: the selection runs, and the runs of variants that are not swept."""

    spec: ExperimentSpec
    sweep: SweepSpec
    points: list[Point]
    select_seeds: list[int]
    select_runs: list[RunSpec]
    fixed_runs: list[RunSpec]
    """Variants no sweep path touches: on report_seeds (two_stage) or select_seeds (paper)."""
    swept_variants: list[str]
    base_dir: Path
    source: str = ""
    point_specs: dict[str, ExperimentSpec] = field(default_factory=dict, repr=False, compare=False)
    """``point_key`` -> the spec with that point applied (a cache the stages share)."""
    study_counts: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)
    """tpe/cmaes: per study (``task/variant``), its trials, new points, repeats, trial states
    and how many trials each sampler proposed (``execution/sweeps/proposals.py``)."""

    def stage1(self) -> list[RunSpec]:
        return self.select_runs + self.fixed_runs


def plan_sweep(spec: ExperimentSpec, base_dir: Path, source: str = "spec") -> SweepPlan:
    """Expand ``spec.sweep`` into stage-1 runs. Raises SpecError (one line per bad point)."""
    if spec.sweep is None:
        raise SpecError(
            f"{source}: sweep: the spec has no sweep: block; add one (see "
            "experiments/pq-sweep.yaml) or give sweep.grid.PATH=[...] on the command line"
        )
    if spec.factors:  # a selection would pool the factor values' runs into one score
        raise SpecError(
            f"{source}: factors: addrop sweep does not cross a search with factors; remove "
            "factors: and sweep at one value at a time (e.g. data.train_size=500)"
        )
    sweep = spec.sweep
    # tpe/cmaes: the study proposes the points as it goes (execution/sweeps/search.py)
    points = [] if sweep.search in OPTUNA_SEARCHES else sweep_points(sweep)
    paths = dict.fromkeys([*sweep.grid, *sweep.random])
    swept = [v for v in spec.methods if variant_point(paths, v)]
    select_seeds = list(sweep.select_seeds or spec.seeds)
    specs: dict[str, ExperimentSpec] = {}
    select_runs: dict[str, RunSpec] = {}
    for point in points:
        point_spec = spec_at_point(spec, point, specs, source)
        for run in expand(point_spec.model_copy(update={"seeds": select_seeds}), base_dir):
            if run.variant not in swept:
                continue
            own = variant_point(point, run.variant)
            run = run.model_copy(update={"sweep": {"point": own, "stage": SELECT_STAGE}})
            select_runs.setdefault(run.run_id, run)
    fixed_seeds = select_seeds if sweep.protocol == "paper" else list(sweep.report_seeds or [])
    fixed = [
        run
        for run in expand(spec.model_copy(update={"seeds": fixed_seeds}), base_dir)
        if run.variant not in swept
    ]
    return SweepPlan(
        spec=spec,
        sweep=sweep,
        points=points,
        select_seeds=select_seeds,
        select_runs=list(select_runs.values()),
        fixed_runs=fixed,
        swept_variants=swept,
        base_dir=base_dir,
        source=source,
        point_specs=specs,
    )


def spec_at_point(
    spec: ExperimentSpec, point: Point, cache: dict[str, ExperimentSpec], source: str
) -> ExperimentSpec:
    """The spec with ``point`` applied, validated once per point; an invalid point is one line."""
    key = point_key(point)
    if key not in cache:
        try:
            cache[key] = apply_point(spec, point)
        # untested: spec/sweeps.py checks every grid value alone first, and no validator
        # spans two sweepable paths today; this line names the point if one ever does
        except ValidationError as err:
            where = ", ".join(f"{p}={v!r}" for p, v in point.items())
            first = err.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise SpecError(
                f"{source}: sweep: the point {where} is invalid ({loc}: {first['msg']}); "
                "change the sweep's values"
            ) from None
    return cache[key]
