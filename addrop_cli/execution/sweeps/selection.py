"""Choosing a sweep's winners: pure functions of the stored selection runs."""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from addrop_cli.data.metrics import Summary, higher_is_better, summarize
from addrop_cli.errors import StoreError
from addrop_cli.execution.sweeps.plan import (
    REPORT_STAGE,
    Point,
    SweepPlan,
    point_key,
    spec_at_point,
    variant_point,
)
from addrop_cli.spec.matrix import RunSpec, expand
from addrop_cli.store.reader import SELECT_STAGE, RunRecord, StoreWarning, load_runs

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
    if "pruned" in missing.values():  # a pruned trial is never a result, whatever its other seeds
        missing.update(dict.fromkeys(values, "trial pruned"))
        values = {}
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


def stage_records(root: Path, runs: Sequence[RunSpec]) -> list[RunRecord]:
    """The stored records of ``runs`` (other runs in the folder are left out)."""

    wanted = {r.run_id for r in runs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        try:
            records = load_runs(root)
        except StoreError:  # no run stored yet
            return []
    return [r for r in records if r.run_id in wanted]


def report_runs(plan: SweepPlan, selections: Sequence[Selection]) -> list[RunSpec]:
    """Stage 2 of ``two_stage``: each (task, variant)'s winning point on the report seeds."""
    runs: list[RunSpec] = []
    seeds = list(plan.sweep.report_seeds or [])
    for selection in selections:
        if selection.winner is None:
            continue
        point = selection.winner.point
        point_spec = spec_at_point(plan.spec, point, plan.point_specs, plan.source)
        for run in expand(point_spec.model_copy(update={"seeds": seeds}), plan.base_dir):
            if run.task == selection.task and run.variant == selection.variant:
                own = variant_point(point, run.variant)
                runs.append(run.model_copy(update={"sweep": {"point": own, "stage": REPORT_STAGE}}))
    return runs
