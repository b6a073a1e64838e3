"""What a partial experiment has not run yet: one line at the top of every report, and "not
run" rows in the curve tables.

What is planned comes from each experiment's ``spec.yaml`` (:func:`store.reader.spec_plan`;
``addrop run --only`` and ``make study`` leave it the full spec): its tasks, variants, seeds
and factor values. Without a spec.yaml (or where it does not say), the runs in the folder stand
in for the plan, and a cell expects the seeds the experiment's runs have (the table's ``n=k/N``
rule). A cell is a task x variant (x factor point) short of its seeds when fewer of them have
a finished run; a factor value is not run when no finished run has it. Cells are only counted
at factor points whose values have all been run (the values not run are named once instead).
Sweep experiments are left out: their points are not a plan.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from addrop_cli.data.tasks import get_task
from addrop_cli.errors import AddropError
from addrop_cli.store.identity import point_label
from addrop_cli.store.reader import RunRecord, spec_plan

LISTED = 8
"""Short cells named in the line; the rest are counted."""
NOT_RUN = "not run"


@dataclass(frozen=True)
class ShortCell:
    label: str
    """``task/variant``, or ``task [train_size=500]/variant`` at a factor point."""
    finished: int
    expected: int


@dataclass(frozen=True)
class Missing:
    """What the experiments plan but have not finished."""

    factor_values: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    """Factor path -> planned values no finished run has."""
    planned_values: Mapping[str, int] = field(default_factory=dict)
    """Factor path -> how many values are planned."""
    cells: tuple[ShortCell, ...] = ()

    @property
    def line(self) -> str:
        """``Partial: ...`` naming what is missing; "" when nothing is."""
        parts = [
            f"{len(values)} of {self.planned_values[path]} {path} values not run "
            f"({', '.join(map(_shown, values))})"
            for path, values in self.factor_values.items()
        ]
        if self.cells:
            parts.append(_cells_phrase(self.cells))
        return "Partial: " + "; ".join(parts) if parts else ""


def find_missing(experiments: Sequence[Path], records: Sequence[RunRecord]) -> Missing:
    """What ``experiments`` plan that ``records`` (their loaded runs) have not finished."""
    absent: dict[str, list[Any]] = {}
    planned: dict[str, int] = {}
    cells: list[ShortCell] = []
    for exp in experiments:
        mine = [r for r in records if r.path.parent.parent == exp]
        if not mine or any(r.sweep_point is not None for r in mine):
            continue
        prefix = f"{exp.name}: " if len(experiments) > 1 else ""
        values, short = _one_experiment(exp, mine, prefix)
        for path, (all_values, not_run) in values.items():
            planned[path] = max(planned.get(path, 0), len(all_values))
            absent.setdefault(path, [])
            absent[path] += [v for v in not_run if not any(_same(v, a) for a in absent[path])]
        cells += short
    return Missing(
        factor_values={p: tuple(v) for p, v in absent.items() if v},
        planned_values=planned,
        cells=tuple(cells),
    )


def with_not_run(text: pd.DataFrame, factor: str, missing: Missing) -> pd.DataFrame:
    """A curve table (one row per variant and value of ``factor``) with a "not run" row for each
    variant at every planned value of ``factor`` that no finished run has, in value order."""
    values = missing.factor_values.get(factor, ())
    if not values or text.empty:
        return text
    variants = list(dict.fromkeys(text.iloc[:, 0]))
    filler = dict.fromkeys(text.columns[2:], NOT_RUN) | {text.columns[2]: "0"}
    extra = pd.DataFrame(
        [{text.columns[0]: v, factor: _shown(x)} | filler for v in variants for x in values]
    )
    out = pd.concat([text, extra[text.columns]], ignore_index=True)
    order = out.iloc[:, 0].map(variants.index) * 1e12 + out[factor].map(_as_float)
    return out.loc[order.sort_values(kind="stable").index].reset_index(drop=True)


def _one_experiment(
    exp: Path, runs: list[RunRecord], prefix: str
) -> tuple[dict[str, tuple[list[Any], list[Any]]], list[ShortCell]]:
    """Per factor (its planned values, those not run) and the cells short of seeds."""
    plan = spec_plan(exp)
    done = [r for r in runs if r.status == "done"]
    tasks = _canonical(plan.tasks) if plan and plan.tasks else _seen(r.task for r in runs)
    variants = list(plan.variants) if plan and plan.variants else _seen(r.variant for r in runs)
    seeds = set(plan.seeds) if plan and plan.seeds else {r.seed for r in runs}
    factors = dict(plan.factors) if plan and plan.factors else _seen_factors(runs)
    values: dict[str, tuple[list[Any], list[Any]]] = {}
    for path, listed in factors.items():
        ran = [v for v in listed if any(_same((r.factors or {}).get(path), v) for r in done)]
        values[path] = (list(listed), [v for v in listed if v not in ran])
    paths = list(factors)
    points = [dict(zip(paths, p, strict=True)) for p in itertools.product(*(
        [v for v in factors[path] if v not in values[path][1]] for path in paths
    ))]  # fmt: skip
    short = []
    for task, variant, point in itertools.product(tasks, variants, points):
        finished = {
            r.seed for r in done
            if r.task == task and r.variant == variant and r.seed in seeds
            and _at(r, point)
        }  # fmt: skip
        if len(finished) < len(seeds):
            row = f"{task} [{point_label(point)}]" if point else task
            short.append(ShortCell(f"{prefix}{row}/{variant}", len(finished), len(seeds)))
    return values, short


def _canonical(tasks: Sequence[str]) -> list[str]:
    """Task names as run ids hold them (``SST-2`` -> ``sst2``); a task of the user's own as is."""
    out = []
    for name in tasks:
        try:
            out.append(get_task(name).name)
        except AddropError:
            out.append(name)
    return out


def _seen(items) -> list[Any]:
    return list(dict.fromkeys(items))


def _seen_factors(runs: Sequence[RunRecord]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for r in runs:
        for path, value in (r.factors or {}).items():
            if not any(_same(value, v) for v in found.setdefault(path, [])):
                found[path].append(value)
    return found


def _at(run: RunRecord, point: Mapping[str, Any]) -> bool:
    factors = run.factors or {}
    return all(_same(factors.get(path), value) for path, value in point.items())


def _same(a: Any, b: Any) -> bool:
    """One value as the spec means it: 500 and 500.0 are one, true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _shown(value: Any) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"{value:g}" if number else str(value)


def _as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")


def _cells_phrase(cells: Sequence[ShortCell]) -> str:
    expected = {c.expected for c in cells}
    noun = "cell" if len(cells) == 1 else "cells"
    if len(expected) == 1:
        head = f"{len(cells)} {noun} short of {expected.pop()} seeds: "
        names = [f"{c.label} ({c.finished} done)" for c in cells[:LISTED]]
    else:
        head = f"{len(cells)} {noun} short of their seeds: "
        names = [f"{c.label} ({c.finished} of {c.expected})" for c in cells[:LISTED]]
    more = f" and {len(cells) - LISTED} more" if len(cells) > LISTED else ""
    return head + ", ".join(names) + more
