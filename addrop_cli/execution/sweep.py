"""Hyperparameter sweeps: grid and random search over spec paths, and an honest selection.

A sweep point is a mapping ``spec path -> value`` (``{"methods.addrop.p": 0.3, ...}``),
applied to the spec like a ``key=value`` override and validated again. A point only concerns
the method variants it touches: ``methods.<variant>.*`` paths belong to that variant, other
paths (``train.lr``) to every variant; a variant that no path touches is not swept and runs
once per seed.

Protocols (``sweep.protocol``):

* ``two_stage`` (default): stage 1 runs every point on ``select_seeds`` (runs stored with
  ``sweep.stage = "select"``); per task and variant the point with the best objective wins;
  stage 2 runs the winner on the disjoint ``report_seeds`` (``stage = "report"``), and reports
  show those. Variants that are not swept run on the report seeds.
* ``paper``: stage 1 only; reports show the best point on the same dev set, labelled as the
  AD-DROP paper's (optimistic) protocol.

The objective is the task's main metric on the selection split (the dev set, or the split held
out from train with ``data.heldout``), at the best epoch, averaged over the selection seeds.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from addrop_cli.data.metrics import Summary, higher_is_better, summarize
from addrop_cli.errors import SpecError
from addrop_cli.spec.matrix import RunSpec, expand
from addrop_cli.spec.schema import ExperimentSpec, RandomDist, SweepSpec
from addrop_cli.spec.sweeps import apply_point
from addrop_cli.store.atomic import atomic_write_json, atomic_write_text
from addrop_cli.store.reader import SELECT_STAGE, RunRecord

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
    _specs: dict[str, ExperimentSpec] = field(default_factory=dict, repr=False, compare=False)

    def stage1(self) -> list[RunSpec]:
        return self.select_runs + self.fixed_runs


def plan_sweep(spec: ExperimentSpec, base_dir: Path, source: str = "spec") -> SweepPlan:
    """Expand ``spec.sweep`` into stage-1 runs. Raises SpecError (one line per bad point)."""
    if spec.sweep is None:
        raise SpecError(
            f"{source}: sweep: the spec has no sweep: block; add one (see "
            "experiments/pq-sweep.yaml) or give sweep.grid.PATH=[...] on the command line"
        )
    sweep = spec.sweep
    points = sweep_points(sweep)
    swept = [v for v in spec.methods if any(variant_point(p, v) for p in points)]
    select_seeds = list(sweep.select_seeds or spec.seeds)
    specs: dict[str, ExperimentSpec] = {}
    select_runs: dict[str, RunSpec] = {}
    for point in points:
        point_spec = _point_spec(spec, point, specs, source)
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
        _specs=specs,
    )


def _point_spec(
    spec: ExperimentSpec, point: Point, cache: dict[str, ExperimentSpec], source: str
) -> ExperimentSpec:
    key = point_key(point)
    if key not in cache:
        try:
            cache[key] = apply_point(spec, point)
        except ValidationError as err:
            where = ", ".join(f"{p}={v!r}" for p, v in point.items())
            first = err.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise SpecError(
                f"{source}: sweep: the point {where} is invalid ({loc}: {first['msg']}); "
                "change the sweep's values"
            ) from None
    return cache[key]


def report_runs(plan: SweepPlan, selections: Sequence[Selection]) -> list[RunSpec]:
    """Stage 2 of ``two_stage``: each (task, variant)'s winning point on the report seeds."""
    runs: list[RunSpec] = []
    seeds = list(plan.sweep.report_seeds or [])
    for selection in selections:
        if selection.winner is None:
            continue
        point = selection.winner.point
        point_spec = _point_spec(plan.spec, point, plan._specs, plan.source)
        for run in expand(point_spec.model_copy(update={"seeds": seeds}), plan.base_dir):
            if run.task == selection.task and run.variant == selection.variant:
                own = variant_point(point, run.variant)
                runs.append(run.model_copy(update={"sweep": {"point": own, "stage": REPORT_STAGE}}))
    return runs


# ---------------------------------------------------------------------------------------------
# Selection: pure functions of stored runs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointScore:
    """One configuration of one (task, variant) at the selection stage."""

    task: str
    variant: str
    point: Point
    metric: str
    """The objective: the task's main metric on the selection split."""
    objective: Summary
    """Centre (mean) and std of the objective over the finished selection seeds."""
    seeds: tuple[int, ...]
    """Seeds with a finished run."""
    expected: int
    missing: dict[int, str]
    """Seed -> why it has no result."""


@dataclass(frozen=True)
class Selection:
    """Every configuration of one (task, variant), and the one chosen."""

    task: str
    variant: str
    scores: tuple[PointScore, ...]
    winner: PointScore | None
    higher_is_better: bool


def select_winners(
    records: Sequence[RunRecord], *, points: Sequence[Point] = (), epoch: str = "best"
) -> list[Selection]:
    """Per (task, variant), score every point of the selection stage and pick the best.

    The score is the mean over finished seeds of the main metric on the selection split.
    A point with no finished seed cannot win; ties go to the point first in ``points`` (the
    sweep's order; points not listed sort after, by value). Other stages are ignored.
    """
    rank = {point_key(p): i for i, p in enumerate(points)}
    groups: dict[tuple[str, str], dict[str, list[RunRecord]]] = defaultdict(dict)
    for r in sorted(records, key=lambda r: _rank(r, rank)):
        if r.sweep_stage != SELECT_STAGE:
            continue
        by_point = groups[r.task, r.variant]
        by_point.setdefault(point_key(r.sweep_point or {}), []).append(r)
    selections = []
    for (task, variant), by_point in groups.items():
        seeds = {r.seed for runs in by_point.values() for r in runs}
        scores = [_score(task, variant, runs, len(seeds), epoch) for runs in by_point.values()]
        metric = next((s.metric for s in scores if s.metric), "")
        better = higher_is_better(metric) if metric else True
        ranked = [s for s in scores if s.objective.center is not None]
        sign = 1.0 if better else -1.0
        winner = max(ranked, key=lambda s: sign * s.objective.center) if ranked else None
        selections.append(Selection(task, variant, tuple(scores), winner, better))
    return selections


def _rank(r: RunRecord, rank: dict[str, int]) -> tuple[int, str]:
    """Sort key: the point's place in the sweep (a variant's own point is a sub-point)."""
    own = point_key(r.sweep_point or {})
    places = [i for key, i in rank.items() if _within(own, key)]
    return (min(places) if places else len(rank), own)


def _within(own: str, full: str) -> bool:
    small, big = json.loads(own), json.loads(full)
    return all(big.get(k) == v for k, v in small.items())


def _score(task: str, variant: str, runs: list[RunRecord], expected: int, epoch: str) -> PointScore:
    values: dict[int, float] = {}
    missing: dict[int, str] = {}
    metric = ""
    for r in sorted(runs, key=lambda r: (r.status != "done", r.seed)):
        if r.status == "done" and r.metrics is not None and r.seed not in values:
            metric = r.metrics.main_metric or metric
            split = getattr(r.metrics, epoch).select or getattr(r.metrics, epoch).dev
            values[r.seed] = float(split[metric])
        elif r.seed not in values:
            missing[r.seed] = r.status if r.status != "failed" else f"failed: {r.reason}"
    ordered = sorted(values)
    return PointScore(
        task=task,
        variant=variant,
        point=dict(runs[0].sweep_point or {}),
        metric=metric,
        objective=summarize([values[s] for s in ordered]),
        seeds=tuple(ordered),
        expected=expected,
        missing=missing,
    )


# ---------------------------------------------------------------------------------------------
# Summary: terminal table, summary.json, summary.md
# ---------------------------------------------------------------------------------------------


def summary_rows(selections: Sequence[Selection]) -> list[dict[str, Any]]:
    """One row per configuration, winners flagged (for JSON, Markdown and the terminal)."""
    rows = []
    for sel in sorted(selections, key=lambda s: (s.task, s.variant)):
        for score in sel.scores:
            rows.append(
                {
                    "task": sel.task,
                    "variant": sel.variant,
                    "point": score.point,
                    "metric": score.metric,
                    "objective": score.objective.center,
                    "std": score.objective.std,
                    "n": len(score.seeds),
                    "expected": score.expected,
                    "missing": {str(k): v for k, v in score.missing.items()},
                    "winner": score is sel.winner,
                }
            )
    return rows


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    text = f"{100 * value:.2f}"
    return text + (f" ± {100 * std:.2f}" if std is not None else "")


def _point_text(point: Point) -> str:
    return ", ".join(f"{path.split('.')[-1]}={value}" for path, value in point.items()) or "-"


def print_selection(console: Console, selections: Sequence[Selection], protocol: str) -> None:
    """Every configuration's score and the winner per task and variant."""
    for sel in sorted(selections, key=lambda s: (s.task, s.variant)):
        metric = sel.winner.metric if sel.winner else "?"
        table = Table(
            title=f"sweep {sel.task} / {sel.variant}: {metric} x100 on the selection seeds"
        )
        for column in ("point", "score", "n", ""):
            table.add_column(column)
        ranked = sorted(
            sel.scores,
            key=lambda s: (
                s.objective.center is None,
                -(s.objective.center or 0) * (1 if sel.higher_is_better else -1),
            ),
        )
        for score in ranked:
            n = f"{len(score.seeds)}/{score.expected}"
            table.add_row(
                _point_text(score.point),
                _fmt(score.objective.center, score.objective.std),
                n,
                "winner" if score is sel.winner else "",
            )
        console.print(table)
    console.print(f"protocol: {protocol}", highlight=False)


def protocol_text(plan: SweepPlan) -> str:
    select = ", ".join(map(str, plan.select_seeds))
    if plan.sweep.protocol == "paper":
        return (
            f"paper protocol: best of the grid on the same dev set (seeds {select}); "
            "optimistic, as in the AD-DROP paper"
        )
    report = ", ".join(map(str, plan.sweep.report_seeds or []))
    split = "held-out split" if plan.spec.data.heldout else "dev set"
    return f"two-stage: selected on seeds {select} ({split}), reported on seeds {report}"


def write_summary(folder: Path, plan: SweepPlan, selections: Sequence[Selection]) -> list[Path]:
    """``summary.json`` and ``summary.md``: every configuration's score and the winners."""
    rows = summary_rows(selections)
    protocol = protocol_text(plan)
    data = {
        "protocol": plan.sweep.protocol,
        "protocol_text": protocol,
        "select_seeds": plan.select_seeds,
        "report_seeds": plan.sweep.report_seeds,
        "points": len(plan.points),
        "winners": [
            {
                "task": s.task,
                "variant": s.variant,
                "point": s.winner.point,
                "objective": s.winner.objective.center,
            }
            for s in selections
            if s.winner is not None
        ],
        "configurations": rows,
    }
    json_path, md_path = folder / "summary.json", folder / "summary.md"
    atomic_write_json(json_path, data)
    lines = [f"# Sweep summary: {plan.spec.name}", "", f"Protocol: {protocol}.", ""]
    lines += [
        "| task | variant | point | metric | score x100 | n | winner |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['task']} | {row['variant']} | {_point_text(row['point'])} | {row['metric']} "
            f"| {_fmt(row['objective'], row['std'])} | {row['n']}/{row['expected']} "
            f"| {'**winner**' if row['winner'] else ''} |"
        )
    atomic_write_text(md_path, "\n".join(lines) + "\n")
    return [json_path, md_path]


# ---------------------------------------------------------------------------------------------
# `addrop sweep`
# ---------------------------------------------------------------------------------------------


def run_sweep(
    spec: ExperimentSpec,
    *,
    spec_path: Path,
    results_root: Path | None = None,
    dry_run: bool = False,
    plain: bool = True,
    retry_failed: bool = True,
    on_done: Callable[[Path], None] | None = None,
    console: Console | None = None,
) -> int:
    """Run a sweep's stages through the spec's back-end and write its summary; ``on_done`` gets
    the experiment folder once every stage ran (the CLI prints the report there).

    Returns the exit code: 0, 1 when a run failed or was lost, 130 when interrupted.
    """
    from addrop_cli.execution.batch import EXIT_RUNS_FAILED
    from addrop_cli.execution.runner import (
        execute_runs,
        experiment_store,
        make_backend,
        open_batch,
        print_plan,
    )

    console = console or Console()
    plan = plan_sweep(spec, spec_path.parent.resolve(), str(spec_path))
    store = experiment_store(spec, results_root)
    stage2 = "the winner per task on report seeds" if spec.sweep.protocol == "two_stage" else "none"
    head = (
        f"sweep {spec.name}: {len(plan.points)} points x {len(spec.tasks)} tasks, "
        f"variants swept: {', '.join(plan.swept_variants) or 'none'}; "
        f"stage 1: {len(plan.select_runs)} selection runs + {len(plan.fixed_runs)} runs of "
        f"unswept variants; stage 2: {stage2}"
    )
    if dry_run:
        print_plan(spec, plan.stage1(), store, console)
        console.print(head, highlight=False)
        return 0
    batch = open_batch(spec, spec_path, store)
    backend = make_backend(spec, batch.base_dir, plain=plain, console=console)
    console.print(head, highlight=False)
    first = execute_runs(
        plan.stage1(),
        batch,
        backend,
        name=f"{spec.name} stage 1 (selection)",
        console=console,
        retry_failed=retry_failed,
    )
    if first.interrupted:
        return first.exit_code
    selections = select_winners(stage_records(store.root, plan.select_runs), points=plan.points)
    codes = [first.exit_code]
    unresolved = [
        r for r in plan.select_runs if store.run(r.run_id).status not in ("done", "failed")
    ]
    if spec.sweep.protocol == "two_stage":
        if unresolved:
            console.print(
                f"stage 2 not started: {len(unresolved)} selection runs have no result yet "
                "(running elsewhere or lost); run the same command again when they are done",
                highlight=False,
            )
            codes.append(EXIT_RUNS_FAILED)
        else:
            second = execute_runs(
                report_runs(plan, selections),
                batch,
                backend,
                name=f"{spec.name} stage 2 (report)",
                console=console,
                retry_failed=retry_failed,
            )
            if second.interrupted:
                return second.exit_code
            codes.append(second.exit_code)
    files = write_summary(store.root / "sweep", plan, selections)
    print_selection(console, selections, protocol_text(plan))
    console.print(f"sweep summary: {', '.join(str(f) for f in files)}", highlight=False)
    if on_done is not None:
        on_done(store.root)
    return max(codes)


def stage_records(root: Path, runs: Sequence[RunSpec]) -> list[RunRecord]:
    """The stored records of ``runs`` (other runs in the folder are left out)."""
    import warnings

    from addrop_cli.errors import StoreError
    from addrop_cli.store.reader import StoreWarning, load_runs

    wanted = {r.run_id for r in runs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        try:
            records = load_runs(root)
        except StoreError:  # no run stored yet
            return []
    return [r for r in records if r.run_id in wanted]
