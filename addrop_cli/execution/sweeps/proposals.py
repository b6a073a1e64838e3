"""What a tpe/cmaes study is asked, and what it holds: the trial budget, repeats, who proposed
each point, and the one-line notes a sweep prints before it starts.

A trial counts against ``sweep.trials`` only when its point is new to the study: a proposal that
repeats a point already run (COMPLETE or PRUNED) is told the earlier trial's outcome at once,
marked with ``addrop_repeat_of``, and the sampler is asked again, at most ``sweep.max_repeats``
times per study. A space with fewer points than ``sweep.trials`` ends when every point ran.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from addrop_cli.execution.sweeps.study import SAMPLER_MARK, startup_trials
from addrop_cli.spec.schema import SweepSpec

REPEAT_MARK = "addrop_repeat_of"
"""Trial user attribute: the number of the earlier trial whose point this proposal repeats."""


def space_size(space: dict[str, Any]) -> int | None:
    """How many points a discrete space holds; None when a path is continuous."""
    from optuna.distributions import CategoricalDistribution

    size = 1
    for dist in space.values():
        if isinstance(dist, CategoricalDistribution):
            size *= len(dist.choices)
        elif getattr(dist, "step", None) is not None:
            size *= int(round((dist.high - dist.low) / dist.step)) + 1
        else:
            return None
    return size


def budget(trials: list[Any]) -> tuple[int, int]:
    """(trials with a new point, repeats) among a study's trials."""
    repeats = sum(REPEAT_MARK in t.user_attrs for t in trials)
    return len(trials) - repeats, repeats


def room(sweep: SweepSpec, trials: list[Any], size: int | None) -> bool:
    """Whether the study may be asked one more trial."""
    new, repeats = budget(trials)
    limit = sweep.trials if size is None else min(sweep.trials, size)
    return new < limit and repeats < sweep.max_repeats


def study_counts(trials: list[Any]) -> dict[str, Any]:
    """What a study holds, for the summary: trials, new points, repeats, states, proposers."""
    new, repeats = budget(trials)
    return {
        "trials": len(trials),
        "new": new,
        "repeats": repeats,
        "states": dict(Counter(t.state.name.lower() for t in trials)),
        "samplers": dict(Counter(t.user_attrs.get(SAMPLER_MARK, "unrecorded") for t in trials)),
    }


def cmaes_generation(space: dict[str, Any]) -> int:
    """Trials per CMA-ES generation (the cmaes library's default population, 4 + 3 ln d, over
    the d paths that are not categorical); 0 when every path is categorical."""
    from optuna.distributions import CategoricalDistribution

    dims = sum(not isinstance(d, CategoricalDistribution) for d in space.values())
    return 4 + math.floor(3 * math.log(dims)) if dims else 0


def sampler_note(sweep: SweepSpec, space: dict[str, Any], per_round: int) -> str:
    """One line before the search starts: how many trials the model proposes, and a warning
    when the trials leave it none."""
    startup = startup_trials(sweep)
    asked = max(1, per_round)
    random_trials = min(sweep.trials, math.ceil(startup / asked) * asked) if startup else 0
    model = sweep.trials - random_trials
    rule = "sweep.startup_trials" if sweep.startup_trials is not None else "the default rule"
    head = f"sampler: {sweep.search}, {startup} random start-up trials ({rule})"
    if per_round > 1 and startup:
        head += f", trials asked {per_round} at a time"
    if sweep.search == "cmaes":
        generation = cmaes_generation(space)
        if not generation:
            return (
                f"{head}; warning: every path is categorical, so CMA-ES proposes nothing and "
                "all trials are random draws; use search: tpe"
            )
        if model <= generation:
            return (
                f"{head}; warning: CMA-ES updates its Gaussian after each generation of "
                f"{generation} trials, and {model} trials after the start-up never update it "
                f"(draws around the space's centre); raise sweep.trials above "
                f"{random_trials + generation}"
            )
        return f"{head}; CMA-ES proposes {model} of {sweep.trials} trials"
    if model <= 0:
        return (
            f"{head}; warning: all {sweep.trials} trials are random start-up trials and TPE "
            "proposes none (this is a random search); raise sweep.trials or lower "
            "sweep.startup_trials"
        )
    return f"{head}; TPE proposes {model} of {sweep.trials} trials"


def space_note(sweep: SweepSpec, name: str, size: int | None) -> str | None:
    """A line when a study's discrete space holds fewer points than ``sweep.trials``."""
    if size is None or size >= sweep.trials:
        return None
    return (
        f"study {name}: the space holds {size} points, fewer than sweep.trials={sweep.trials}; "
        f"the search ends when all {size} have run"
    )
