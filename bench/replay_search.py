"""Benchmark: every search strategy replayed over a recorded grid, for many sampler seeds.

A grid recorded once with ``addrop sweep`` (every point, every selection seed, every epoch's
held-out score: see experiments/grid-sst2-300.yaml) is a landscape a search can walk without
training: a trial looks up its point's recorded runs. The walk is the package's own: proposals
come from ``execution/sweeps/search.propose`` (the same samplers, start-up rule, seeding per
trial and handling of repeated points), each selection seed's recorded epochs go through the
search's own ``TrialJudge`` (the same median pruner, steps and warm-up; a seed pruned stops the
trial's other seeds as in the live search), and a finished trial is told the objective the
package's selection gives the point (the mean over the selection seeds of the best-epoch score).
With one worker a live sweep runs one trial at a time, seed after seed; so does the replay.

Strategies: grid order (the grid sweep's own order, every point); random (Optuna's random draws:
``search: tpe`` with ``startup_trials`` = trials); TPE; CMA-ES; each without and with median
pruning (grid order with pruning is a replay only: a live grid sweep does not prune). For each
sampler seed the epochs spent are added up, in trial order, until the best point found so far
is within seed noise of the grid's best (noise: the sample std over the selection seeds of the
grid's best point, as bench/bench_search.py defines it), and in all.

    python bench/replay_search.py results/grid-sst2-300                 # prints the table
    python bench/replay_search.py results/grid-sst2-300 --write         # and REPLAY.md there
    make replay-search      (every committed grid, from the committed records alone)
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from replay_landscape import Landscape, grid_size, load_landscape, points_within_noise  # noqa: E402

from addrop_cli.engine.pruning import RunPruned  # noqa: E402
from addrop_cli.execution.sweeps.plan import Point, SweepPlan, plan_sweep, point_key  # noqa: E402
from addrop_cli.execution.sweeps.proposals import room, sampler_note, space_size  # noqa: E402
from addrop_cli.execution.sweeps.search import Study, TrialRuns, propose, trial_runs  # noqa: E402
from addrop_cli.execution.sweeps.study import (  # noqa: E402
    TrialJudge,
    make_pruner,
    need_optuna,
    search_space,
)

SEARCHES = ("grid", "random", "tpe", "cmaes")
PRUNERS = ("none", "median")
REPLAY_FILE = "REPLAY.md"


@dataclass(frozen=True)
class Strategy:
    search: str
    pruner: str

    @property
    def label(self) -> str:
        return self.search + (" + median pruning" if self.pruner == "median" else "")


STRATEGIES = tuple(Strategy(s, p) for s in SEARCHES for p in PRUNERS)


@dataclass(frozen=True)
class Played:
    """One trial of a replayed search."""

    number: int
    point: Point
    state: str
    """complete, pruned, or repeat (a point already run: told at once, nothing trained)."""
    epochs: int


class ReplayJudge(TrialJudge):
    """The live search's judge on an in-memory study: the same report, warm-up, last-epoch and
    other-seed rules (``TrialJudge.on_eval``), without opening a storage by its URL."""

    def __init__(self, study: Any, link: dict[str, Any], metric: str) -> None:  # noqa: D107
        optuna = need_optuna()
        study.pruner = make_pruner(link["pruner"], link["max_steps"], link.get("startup", 2))
        self.study = study
        self.trial = optuna.trial.Trial(study, link["trial_id"])
        self.link = link
        self.metric = metric


def replay_plan(land: Landscape, strategy: Strategy, seed: int, trials: int) -> SweepPlan:
    """The plan a live ``addrop sweep`` of this strategy would make over the recorded spec."""
    assert land.spec.sweep is not None
    # random: every proposal one of TPE's random start-up draws (Optuna's RandomSampler)
    search = "tpe" if strategy.search in ("random", "grid") else strategy.search
    update: dict[str, Any] = {
        "search": search,
        "pruner": strategy.pruner,
        "seed": seed,
        "trials": len(land.order) if strategy.search == "grid" else trials,
    }
    if strategy.search == "random":
        update["startup_trials"] = trials
    sweep = land.spec.sweep.model_copy(update=update)
    return plan_sweep(land.spec.model_copy(update={"sweep": sweep}), land.base_dir)


def replay(land: Landscape, strategy: Strategy, seed: int, trials: int) -> list[Played]:
    """One search over the landscape: its trials in the order it ran them."""
    optuna = need_optuna()
    plan = replay_plan(land, strategy, seed, trials)
    direction = "maximize" if land.higher_is_better else "minimize"
    study = optuna.create_study(direction=direction)  # in memory: nothing is written
    space = search_space(plan.sweep, land.variant)
    holder = Study(land.task, land.variant, study, space, "memory", size=space_size(space))
    played: list[Played] = []
    if strategy.search == "grid":
        for point in land.order:
            study.enqueue_trial(dict(point))
            trial = study.ask(space)
            runs = trial_runs(plan, holder, trial._trial_id, trial.number, trial.params)  # noqa: SLF001
            played.append(play(land, holder, runs))
        return played
    while room(plan.sweep, study.get_trials(deepcopy=False), holder.size):
        proposal = propose(plan, holder)
        if proposal is not None:
            played.append(play(land, holder, proposal))
            continue
        last = study.get_trials(deepcopy=False)[-1]  # a repeat, told the earlier outcome
        played.append(Played(last.number, dict(last.params), "repeat", 0))
    return played


def play(land: Landscape, holder: Study, trial: TrialRuns) -> Played:
    """Feed the trial's recorded epochs to its judge, seed after seed, and tell the study."""
    from optuna.trial import TrialState

    key = point_key(trial.point)
    spent, pruned = 0, False
    for run in trial.runs:
        judge = ReplayJudge(holder.study, dict(run.trial or {}), land.metric)
        for record in land.curves[key][run.seed]:
            spent += 1
            try:
                judge.on_eval(record)
            except RunPruned:
                pruned = True
                break
    if pruned:
        holder.study.tell(trial.number, state=TrialState.PRUNED)
        return Played(trial.number, trial.point, "pruned", spent)
    holder.study.tell(trial.number, land.objective[key])
    return Played(trial.number, trial.point, "complete", spent)


def epochs_to_target(land: Landscape, played: list[Played]) -> float:
    """Epochs spent until a finished trial's point is within noise of the grid's best (the
    best point found is then within noise); infinity when the search never gets there."""
    spent = 0
    for t in played:
        spent += t.epochs
        if t.state == "complete" and land.reached(land.objective[point_key(t.point)]):
            return spent
    return math.inf


def quantile(values: list[float], q: float) -> float:
    """The q-quantile with linear interpolation (numpy's default); infinity stays infinity."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low, high = ordered[math.floor(pos)], ordered[math.ceil(pos)]
    if math.isinf(high):
        return high if pos > math.floor(pos) or math.isinf(low) else low
    return low + (pos - math.floor(pos)) * (high - low)


def spread(values: list[float]) -> str:
    """``median (IQR low-high)``; a search that never got there counts as infinity (never)."""

    def show(v: float) -> str:
        return "never" if math.isinf(v) else f"{v:g}"

    median, low, high = (quantile(values, q) for q in (0.5, 0.25, 0.75))
    return f"{show(median)} ({show(low)}-{show(high)})"


def short(point: Point) -> str:
    return ", ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in point.items())


def strategy_row(land: Landscape, strategy: Strategy, seeds: int, trials: int) -> str:
    """One table row: the strategy replayed for sampler seeds 0 ... seeds - 1."""
    reached, totals, pruned, points = [], [], [], []
    for seed in range(seeds):
        played = replay(land, strategy, seed, trials)
        reached.append(epochs_to_target(land, played))
        totals.append(float(sum(t.epochs for t in played)))
        pruned.append(float(sum(t.state == "pruned" for t in played)))
        points.append(float(sum(t.state != "repeat" for t in played)))
    hits = sum(not math.isinf(r) for r in reached)
    return (
        f"| {strategy.label} | {quantile(points, 0.5):g} | {quantile(pruned, 0.5):g} | "
        f"{hits} of {seeds} | {spread(reached)} | {spread(totals)} |"
    )


def landscape_lines(land: Landscape) -> list[str]:
    """What the grid holds: its size, best, noise, and how flat it is."""
    pick = max if land.higher_is_better else min
    worst = min if land.higher_is_better else max
    by_key = {point_key(p): p for p in land.order}
    best_key = pick(land.objective, key=land.objective.__getitem__)
    worst_key = worst(land.objective, key=land.objective.__getitem__)
    grid_epochs = len(land.order) * len(land.seeds) * land.epochs
    status = "complete" if land.complete else "PARTIAL: the complete rows recorded so far"
    return [
        f"- grid: {grid_size(land)} points, {len(land.order)} of the {land.planned} planned "
        f"({status}); {land.task}, {land.metric} on the selection split; selection seeds "
        f"{', '.join(map(str, land.seeds))}; {land.epochs} epochs a run; "
        f"{grid_epochs} epochs for the whole grid",
        f"- best: {100 * land.objective[best_key]:.2f} at {short(by_key[best_key])}; seed noise "
        f"(sample std over the seeds at the best point) {100 * land.noise:.2f}; within noise: "
        f">= {100 * land.target:.2f}",
        f"- points within noise of the best: {points_within_noise(land)} of {len(land.order)}; "
        f"worst {100 * land.objective[worst_key]:.2f} at {short(by_key[worst_key])}",
    ]


def landscape_table(land: Landscape) -> list[str]:
    """The grid's objective at every recorded point, for a two-path grid (rows: the first)."""
    assert land.spec.sweep is not None
    paths = list(land.spec.sweep.grid)
    if len(paths) != 2:
        return []
    rows, cols = ([sorted({p[path] for p in land.order}) for path in paths][i] for i in (0, 1))
    names = [path.rsplit(".", 1)[-1] for path in paths]
    lines = [
        f"| {names[0]} \\ {names[1]} | " + " | ".join(map(str, cols)) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for row in rows:
        scores = (land.objective[point_key({paths[0]: row, paths[1]: col})] for col in cols)
        lines.append(f"| {row} | " + " | ".join(f"{100 * v:.2f}" for v in scores) + " |")
    return ["", "The objective at each point (mean over the selection seeds):", "", *lines]


def render(land: Landscape, seeds: int, trials: int) -> str:
    """The replay's report of one grid, as Markdown."""
    lines = [
        f"# Search replay over {land.name}",
        "",
        f"Printed by `python bench/replay_search.py results/{land.name} --seeds {seeds} "
        f"--trials {trials}` from the run records in this folder, without training (`make "
        "replay-search` regenerates it from the committed records). Scores are x 100.",
        "",
        *landscape_lines(land),
        *landscape_table(land),
        "",
        f"- each strategy replayed for {seeds} sampler seeds (0 to {seeds - 1}); random, TPE "
        f"and CMA-ES get {trials} trials, grid order every point",
        "",
        "Median and interquartile range over the sampler seeds; an epoch is one epoch of one "
        "selection seed's run, pruned runs' epochs included. *Within noise*: epochs until the "
        "best point found scores within seed noise of the grid's best (*never*: not within the "
        "trials; counted as infinity).",
        "",
        "| strategy | points run | trials pruned | reached within noise | epochs to within noise "
        "| total epochs |",
        "|---|---|---|---|---|---|",
        *(strategy_row(land, s, seeds, trials) for s in STRATEGIES),
        "",
        "The samplers, as the live sweep announces them:",
        "",
    ]
    for search in ("random", "tpe", "cmaes"):
        plan = replay_plan(land, Strategy(search, "none"), 0, trials)
        note = sampler_note(plan.sweep, search_space(plan.sweep, land.variant), 1)
        lines.append(f"- {search}: {note}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("grids", nargs="+", type=Path, help="recorded grid sweeps' folders")
    parser.add_argument("--seeds", type=int, default=30, help="sampler seeds per strategy")
    parser.add_argument("--trials", type=int, default=12, help="trials of random, TPE, CMA-ES")
    parser.add_argument("--write", action="store_true", help=f"also write <grid>/{REPLAY_FILE}")
    args = parser.parse_args()
    for folder in args.grids:
        text = render(load_landscape(folder), args.seeds, args.trials)
        print(text)
        if args.write:
            (folder / REPLAY_FILE).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
