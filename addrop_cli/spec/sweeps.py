"""Sweep checks that need the whole spec, and applying one sweep point to a spec."""

from __future__ import annotations

import copy
import math
from typing import Any

from pydantic import (
    ValidationError,
)

from addrop_cli.errors import SpecError
from addrop_cli.spec.explain import did_you_mean, validation_problems
from addrop_cli.spec.overrides import set_path
from addrop_cli.spec.schema import ExperimentSpec, GridRange, SweepSpec

MAX_POINTS = 100_000
"""Most points a sweep may have (each is at least one run; more would not finish planning)."""

OPTUNA_SEARCHES = ("tpe", "cmaes")
"""Searches whose points Optuna's sampler proposes one trial at a time."""

SWEEPABLE_ROOTS = ("model", "data", "train", "methods")
"""Top-level spec keys a sweep may vary (seeds come from select_seeds / report_seeds)."""


def sweep_problems(spec: ExperimentSpec, sweep: SweepSpec, source: str) -> list[str]:
    """Sweep checks that need the whole spec: paths, seed sets, every grid value in range."""
    problems: list[str] = []
    if not sweep.grid and not sweep.random:
        problems.append(
            f"{source}: sweep: nothing to search; give grid: {{path: [values]}} and/or "
            "random: {path: {distribution: ...}}"
        )
    problems += _steering_problems(sweep, source)
    sizes = [
        int(round((v.stop - v.start) / v.step)) + 1 if isinstance(v, GridRange) else len(v)
        for v in sweep.grid.values()
    ] + ([sweep.samples] if sweep.random else [])
    if sweep.search in OPTUNA_SEARCHES:
        sizes = [sweep.trials]
    if math.prod(sizes) > MAX_POINTS:
        return [
            f"{source}: sweep: {' x '.join(map(str, sizes))} = {math.prod(sizes):,} points, more "
            f"than {MAX_POINTS:,}; use fewer values, larger steps or fewer samples"
        ]
    for kind, paths in (("grid", sweep.grid), ("random", sweep.random)):
        for path in paths:
            problems += _sweep_path_problems(spec, f"sweep.{kind}.{path}", path, source)
    both = set(sweep.grid) & set(sweep.random)
    for path in sorted(both):
        problems.append(
            f"{source}: sweep.random.{path}: also in sweep.grid; search each path one way only"
        )
    select = sweep.select_seeds or spec.seeds
    if sweep.protocol == "two_stage" and not sweep.report_seeds:
        problems.append(
            f"{source}: sweep.report_seeds: the two_stage protocol reports the winner on other "
            "seeds; give report_seeds: [...] (disjoint from select_seeds), or protocol: paper"
        )
    if sweep.protocol == "paper" and sweep.report_seeds:
        problems.append(
            f"{source}: sweep.report_seeds: the paper protocol reports the selection runs "
            "themselves; remove report_seeds or use protocol: two_stage"
        )
    shared = sorted(set(select) & set(sweep.report_seeds or []))
    if shared:
        which = "select_seeds" if sweep.select_seeds else "seeds (the selection seeds)"
        problems.append(
            f"{source}: sweep.report_seeds: seeds {shared} are also in {which}; the two sets "
            "must be disjoint so that the reported runs played no part in choosing"
        )
    if problems:
        return problems
    grid = sweep.grid_values()
    for path, values in grid.items():
        for value in values:
            problems += point_problems(spec, {path: value}, f"sweep.grid.{path}", source)
    for path, dist in sweep.random.items():
        for value in dist.values or [dist.low, dist.high]:
            problems += point_problems(spec, {path: value}, f"sweep.random.{path}", source)
    return list(dict.fromkeys(problems))


SEARCH_SETTINGS = ("startup_trials", "max_repeats")
"""Settings of a tpe/cmaes search's sampler (a grid or random search has none)."""
PRUNER_SETTINGS = {
    "pruner_startup_trials": ("median",),
    "pruner_warmup_epochs": ("median", "hyperband"),
}
"""Pruner settings, and the pruners each applies to."""


def _steering_problems(sweep: SweepSpec, source: str) -> list[str]:
    """A sampler or pruner setting given where nothing uses it: one line each, never ignored."""
    given = sweep.model_fields_set
    problems = []
    if sweep.pruner != "none" and sweep.search not in OPTUNA_SEARCHES:
        problems.append(
            f"{source}: sweep.pruner: a {sweep.search} search plans every point up front and "
            f"cannot prune; use search: tpe (or cmaes) with pruner: {sweep.pruner}, or pruner: none"
        )
    problems += [
        f"{source}: sweep.{key}: a {sweep.search} search has no sampler to steer; use "
        f"search: tpe (or cmaes), or remove {key}"
        for key in SEARCH_SETTINGS
        if key in given and sweep.search not in OPTUNA_SEARCHES
    ]
    for key, pruners in PRUNER_SETTINGS.items():
        if key in given and sweep.pruner not in pruners:
            problems.append(
                f"{source}: sweep.{key}: applies to pruner: {' or '.join(pruners)}, but the "
                f"pruner is {sweep.pruner}; set the pruner, or remove {key}"
            )
    return problems


def _sweep_path_problems(spec: ExperimentSpec, key: str, path: str, source: str) -> list[str]:
    parts = path.split(".")
    if parts[0] not in SWEEPABLE_ROOTS or len(parts) < 2:
        return [
            f"{source}: {key}: cannot sweep {path!r}; sweep a setting under "
            f"{', '.join(SWEEPABLE_ROOTS)} (e.g. methods.addrop.p, train.lr)"
        ]
    if parts[0] == "methods":
        if parts[1] not in spec.methods:
            hint = did_you_mean(parts[1], spec.methods, before="; ")
            return [
                f"{source}: {key}: no method variant {parts[1]!r}{hint} "
                f"(variants: {', '.join(spec.methods)})"
            ]
        if len(parts) < 3:
            return [f"{source}: {key}: name a parameter, e.g. methods.{parts[1]}.p"]
    return []


def apply_point(spec: ExperimentSpec, point: dict[str, Any]) -> ExperimentSpec:
    """The spec with each ``path: value`` of a sweep point set, validated again.

    Raises :class:`pydantic.ValidationError` when a value is out of range; callers turn it
    into one-line problems naming the sweep path.
    """
    raw = spec.model_dump(mode="json")
    for path, value in point.items():
        set_path(raw, path.split("."), copy.deepcopy(value), f"sweep path {path!r}")
    return ExperimentSpec.model_validate(raw)


def point_problems(
    spec: ExperimentSpec,
    point: dict[str, Any],
    key: str,
    source: str,
    fix: str = "change the sweep's values",
) -> list[str]:
    """One line per problem a sweep point causes, named by the sweep path that set it."""
    try:
        apply_point(spec, point)
    except ValidationError as err:
        lines = []
        for line in validation_problems(err, source, []):
            where, _, what = line.removeprefix(f"{source}: ").partition(": ")
            shown = ", ".join(f"{v!r}" for v in point.values())
            target = "" if key.endswith("." + where) else f" ({where})"
            advice = "" if "; " in what else f"; {fix}"
            lines.append(f"{source}: {key}: value {shown}{target}: {what}{advice}")
        return lines
    except SpecError as err:
        return [f"{source}: {key}: {p}" for p in err.problems]
    return []
