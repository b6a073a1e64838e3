"""Stage 1 of a tpe/cmaes sweep: Optuna proposes points, addrop runs them, the study learns.

One study per (task, swept variant) in the results folder (``execution/sweeps/study.py``). Each
round asks every study for trials (as many at once as the back-end runs runs), runs their selection
runs through the same back-end as any sweep, and tells each trial its objective (the mean over
select_seeds of the main metric on the selection split) or PRUNED. A trial's runs are the runs a
grid sweep would have for its point, so their ids follow from the point alone and the store's skip
and mid-run resume apply: a sweep killed at any moment and started again first finishes the trials
the study still holds as RUNNING, then asks new ones until ``sweep.trials``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from addrop_cli.data.metrics import higher_is_better
from addrop_cli.data.tasks import get_task
from addrop_cli.errors import SpecError
from addrop_cli.execution.attempt.context import RunContext
from addrop_cli.execution.backends.base import Backend, backend_type
from addrop_cli.execution.planning.runner import execute_runs
from addrop_cli.execution.sweeps.plan import (
    Point,
    SweepPlan,
    point_key,
    spec_at_point,
    variant_point,
)
from addrop_cli.execution.sweeps.proposals import (
    REPEAT_MARK,
    room,
    sampler_note,
    space_note,
    space_size,
    study_counts,
)
from addrop_cli.execution.sweeps.selection import select_winners, stage_records
from addrop_cli.execution.sweeps.study import (
    SAMPLER_MARK,
    STUDY_DB,
    STUDY_JOURNAL,
    damaged,
    judges,
    make_sampler,
    need_optuna,
    open_storage,
    point_of,
    proposer,
    search_space,
    startup_trials,
    storage_errors,
    storage_url,
    trial_link,
)
from addrop_cli.spec.matrix import RunSpec, expand
from addrop_cli.store.identity import config_hash
from addrop_cli.store.reader import SELECT_STAGE

FINGERPRINT = "addrop_fingerprint"
"""Study user attribute: what the study searches (so another spec's study is refused)."""


@dataclass
class Study:
    """One (task, variant)'s study, and what its trials' runs are made from."""

    task: str
    variant: str
    study: Any
    space: dict[str, Any]
    url: str
    held: set[int] = field(default_factory=set)
    """Trials left RUNNING in this invocation (a run busy or lost): rerun next time."""
    size: int | None = None
    """How many points the space holds (None: a continuous path)."""


@dataclass(frozen=True)
class TrialRuns:
    study: Study
    trial_id: int
    number: int
    point: Point
    runs: list[RunSpec]


@dataclass
class SearchOutcome:
    plan: SweepPlan
    """The plan with the trials' points and selection runs, in trial order."""
    exit_code: int
    interrupted: bool = False


def run_search(
    plan: SweepPlan, context: RunContext, backend: Backend, *, console: Console, retry_failed: bool
) -> SearchOutcome:
    """Run the search's rounds until every study holds ``sweep.trials`` finished trials."""

    context = replace(context, judges=judges)  # each trial's runs report to its judge
    studies = open_studies(plan, context)
    per_round = max(1, backend.slots // len(plan.select_seeds))
    notes = [sampler_note(plan.sweep, studies[0].space, per_round)] if studies else []
    notes += [space_note(plan.sweep, f"{s.task}/{s.variant}", s.size) for s in studies]
    for note in filter(None, notes):
        console.print(note, highlight=False)
    codes = [0]
    runs: list[RunSpec] = list(plan.fixed_runs)
    name = f"{plan.spec.name} stage 1"
    while True:
        trials = [t for s in studies for t in next_trials(plan, s, per_round)]
        if not trials and not runs:
            break
        runs += [run for t in trials for run in t.runs]
        runs = list({run.run_id: run for run in runs}.values())  # a repeat runs nothing twice
        numbers = ", ".join(f"{t.study.task}/{t.study.variant}#{t.number}" for t in trials)
        summary = execute_runs(
            runs,
            context,
            backend,
            name=f"{name} ({plan.sweep.search} trials {numbers or '-'})",
            console=console,
            retry_failed=retry_failed,
        )
        if summary.interrupted:
            return SearchOutcome(plan, summary.exit_code, interrupted=True)
        codes.append(summary.exit_code)
        for t in trials:
            if not tell(t, context):
                t.study.held.add(t.number)
        runs = []
    return SearchOutcome(searched_plan(plan, studies), max(codes))


def _journal(plan: SweepPlan) -> bool:
    """The studies in a journal file: the spec's back-end runs runs on other hosts."""
    return backend_type(plan.spec.executor.backend).journal


def fingerprint(plan: SweepPlan, task: str, variant: str, space: dict[str, Any]) -> str:
    """What makes a study this spec's: the unswept run, the space, sampler, pruner, seeds."""
    base = next(
        r for r in expand(plan.spec, plan.base_dir) if r.task == task and r.variant == variant
    )
    identity = {k: v for k, v in base.identity().items() if k not in ("seed", "sweep")}
    sweep = plan.sweep
    return config_hash(
        {
            "run": identity,
            "space": {path: str(dist) for path, dist in sorted(space.items())},
            "search": [sweep.search, sweep.pruner, sweep.seed, plan.select_seeds],
        }
    )


def studied_plan(plan: SweepPlan, root: Path) -> SweepPlan:
    """The plan with the trials the study in ``root`` holds so far (for ``addrop status``)."""
    optuna = need_optuna()
    journal = _journal(plan)
    if not (root / "sweep" / (STUDY_JOURNAL if journal else STUDY_DB)).is_file():
        return plan
    url = storage_url(root / "sweep", journal=journal)
    storage = open_storage(url)
    studies = []
    try:
        for task in plan.spec.tasks:
            for variant in plan.swept_variants:
                try:
                    study = optuna.load_study(study_name=f"{task}/{variant}", storage=storage)
                except KeyError:  # Optuna's word for "no such study": no trial yet
                    continue
                studies.append(Study(task, variant, study, {}, url))
        return searched_plan(plan, studies)
    except storage_errors() as err:
        raise damaged(url, err) from None


def open_studies(plan: SweepPlan, context: RunContext) -> list[Study]:
    """Create or load each (task, variant)'s study; refuse one made by another spec or one
    whose file is damaged (one line each)."""
    folder = context.store.root / "sweep"
    url = storage_url(folder, journal=_journal(plan))
    try:
        return _open_studies(plan, url)
    except storage_errors() as err:
        raise damaged(url, err) from None


def _open_studies(plan: SweepPlan, url: str) -> list[Study]:
    optuna = need_optuna()
    storage = open_storage(url)
    studies = []
    for task in plan.spec.tasks:
        main = get_task(task, plan.spec.data).main_metric
        for variant in plan.swept_variants:
            space = search_space(plan.sweep, variant)
            mark = fingerprint(plan, task, variant, space)
            study = optuna.create_study(
                study_name=f"{task}/{variant}",
                storage=storage,
                direction="maximize" if higher_is_better(main) else "minimize",
                load_if_exists=True,
            )
            found = study.user_attrs.get(FINGERPRINT)
            if found is None:
                study.set_user_attr(FINGERPRINT, mark)
            elif found != mark:
                where = url.removeprefix("sqlite:///").removeprefix("journal:")
                raise SpecError(
                    f"{where}: study {task}/{variant} belongs to another spec (its space, seeds "
                    "or settings differ); run the spec that made it, or move the file away to "
                    "start a new search"
                )
            studies.append(Study(task, variant, study, space, url, size=space_size(space)))
    return studies


def next_trials(plan: SweepPlan, study: Study, count: int) -> list[TrialRuns]:
    """Up to ``count`` trials: RUNNING ones left by an earlier invocation first, then new ones
    while the study has fewer than ``sweep.trials``."""
    from optuna.trial import TrialState

    out: list[TrialRuns] = []
    for frozen in study.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.number not in study.held and len(out) < count:
            out.append(trial_runs(plan, study, frozen._trial_id, frozen.number, frozen.params))  # noqa: SLF001
    while len(out) < count and room(plan.sweep, study.study.get_trials(deepcopy=False), study.size):
        proposal = propose(plan, study)
        if proposal is not None:
            out.append(proposal)
    return out


def propose(plan: SweepPlan, study: Study) -> TrialRuns | None:
    """Ask the study one trial and mark who proposed it. A repeat of a point already run is
    told that trial's outcome at once (None: the sampler is asked again); a repeat of a point
    still running joins the round and is told with it."""
    from optuna.trial import TrialState

    trials = study.study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    startup = startup_trials(plan.sweep)
    # a sampler seeded by the trial's number: the same history proposes the same point,
    # whether or not the sweep was killed on the way
    sampler = make_sampler(plan.sweep.search, plan.sweep.seed + len(trials), startup)
    study.study.sampler = sampler
    trial = study.study.ask(study.space)
    by = proposer(plan.sweep.search, sampler, finished, startup, trial.params)
    trial.set_user_attr(SAMPLER_MARK, by)
    key = point_key(point_of(plan.sweep, trial.params))
    earlier = next(
        (
            t
            for t in trials
            if t.state != TrialState.FAIL and point_key(point_of(plan.sweep, t.params)) == key
        ),
        None,
    )
    if earlier is not None:
        trial.set_user_attr(REPEAT_MARK, earlier.number)
        if earlier.state == TrialState.COMPLETE:
            study.study.tell(trial, earlier.value)
            return None
        if earlier.state == TrialState.PRUNED:
            study.study.tell(trial, state=TrialState.PRUNED)
            return None
    return trial_runs(plan, study, trial._trial_id, trial.number, trial.params)  # noqa: SLF001


def trial_runs(
    plan: SweepPlan, study: Study, trial_id: int, number: int, params: dict[str, Any]
) -> TrialRuns:
    """The selection runs of one trial: those a grid sweep has for its point."""
    point = point_of(plan.sweep, params)
    point_spec = spec_at_point(plan.spec, point, plan.point_specs, plan.source)
    seeds = plan.select_seeds
    sweep = plan.sweep
    runs = []
    for run in expand(point_spec.model_copy(update={"seeds": seeds}), plan.base_dir):
        if run.task != study.task or run.variant != study.variant:
            continue
        own = variant_point(point, run.variant)
        most = most_epochs(sweep, run.variant, run.train.epochs)
        link = trial_link(
            study.url,
            f"{study.task}/{study.variant}",
            trial_id,
            offset=seeds.index(run.seed) * most,
            pruner=sweep.pruner,
            max_steps=most * len(seeds),
            epochs=run.train.epochs,
            startup=sweep.pruner_startup_trials,
            warmup=sweep.pruner_warmup_epochs,
        )
        update = {"sweep": {"point": own, "stage": SELECT_STAGE}, "trial": link}
        runs.append(run.model_copy(update=update))
    return TrialRuns(study, trial_id, number, point, runs)


def most_epochs(sweep: Any, variant: str, epochs: int) -> int:
    """The most epochs a point of the search trains (``train.epochs`` may itself be swept), so
    that seed i's steps start at i x this for every trial and never overlap seed i + 1's."""
    values = [epochs]
    grid = sweep.grid_values()
    for path in ("train.epochs", f"methods.{variant}.train.epochs"):
        values += [int(v) for v in grid.get(path, []) if isinstance(v, int | float)]
        dist = sweep.random.get(path)
        if dist is not None:
            values += [
                int(v) for v in [dist.high or 0, *(dist.values or [])] if isinstance(v, int | float)
            ]
    return max(values)


def tell(trial: TrialRuns, context: RunContext) -> bool:
    """Tell the study how the trial ended; False when it has no outcome yet (stays RUNNING).
    A failed run fails the trial (FAIL: the samplers ignore it; a rerun retries the run only
    if a later proposal repeats its point)."""
    from optuna.trial import TrialState

    statuses = {context.store.run(r.run_id).status for r in trial.runs}
    study = trial.study.study
    if "pruned" in statuses:
        study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
        return True
    if "failed" in statuses:
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        return True
    if statuses != {"done"}:
        return False
    selection = select_winners(stage_records(context.store.root, trial.runs))
    assert selection and selection[0].winner is not None  # every seed is done
    value = selection[0].winner.objective.center
    study.tell(trial.number, value, skip_if_finished=True)
    return True


def searched_plan(plan: SweepPlan, studies: list[Study]) -> SweepPlan:
    """The plan as a grid sweep's would be: every trial's point and selection runs."""
    points: dict[str, Point] = {}
    select_runs: dict[str, RunSpec] = {}
    counts = {}
    for study in studies:
        frozen_trials = study.study.get_trials(deepcopy=False)
        counts[f"{study.task}/{study.variant}"] = study_counts(frozen_trials)
        for frozen in frozen_trials:
            found = trial_runs(plan, study, frozen._trial_id, frozen.number, frozen.params)  # noqa: SLF001
            points.setdefault(repr(sorted(found.point.items())), found.point)
            for run in found.runs:
                select_runs.setdefault(run.run_id, run)
    return replace(
        plan,
        points=list(points.values()),
        select_runs=list(select_runs.values()),
        study_counts=counts,
    )
