"""Stage 1 of a tpe/cmaes sweep: Optuna proposes points, addrop runs them, the study learns.

One study per (task, swept variant) in the results folder (``execution/study.py``). Each round
asks every study for trials (as many at once as the back-end runs runs), runs their selection
runs through the same back-end as any sweep, and tells each trial its objective (the mean over
select_seeds of the main metric on the selection split) or PRUNED. A trial's runs are the runs
a grid sweep would have for its point, so their ids follow from the point alone and the store's
skip and mid-run resume apply: a sweep killed at any moment and started again first finishes
the trials the study still holds as RUNNING, then asks new ones until ``sweep.trials``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from addrop_cli.data.metrics import higher_is_better
from addrop_cli.data.tasks import get_task
from addrop_cli.errors import SpecError
from addrop_cli.execution.context import Backend, RunContext
from addrop_cli.execution.selection import select_winners, stage_records
from addrop_cli.execution.study import (
    STUDY_DB,
    STUDY_JOURNAL,
    make_sampler,
    need_optuna,
    open_storage,
    point_of,
    search_space,
    storage_url,
    trial_link,
)
from addrop_cli.execution.sweep_plan import Point, SweepPlan, spec_at_point, variant_point
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
    """Trials left RUNNING in this invocation (a run failed, busy or lost): rerun next time."""


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
    from addrop_cli.execution.runner import execute_runs

    studies = open_studies(plan, context)
    per_round = max(1, _slots(plan, backend) // len(plan.select_seeds))
    codes = [0]
    runs: list[RunSpec] = list(plan.fixed_runs)
    name = f"{plan.spec.name} stage 1"
    while True:
        trials = [t for s in studies for t in next_trials(plan, s, per_round)]
        if not trials and not runs:
            break
        runs += [run for t in trials for run in t.runs]
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


def _slots(plan: SweepPlan, backend: Backend) -> int:
    """How many runs the back-end runs at once."""
    if plan.spec.executor.backend == "slurm":
        return plan.spec.executor.slurm.array_parallelism
    return len(getattr(backend, "placement", None) or [None])


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
    journal = plan.spec.executor.backend == "slurm"
    if not (root / "sweep" / (STUDY_JOURNAL if journal else STUDY_DB)).is_file():
        return plan
    url = storage_url(root / "sweep", journal=journal)
    storage = open_storage(url)
    studies = []
    for task in plan.spec.tasks:
        for variant in plan.swept_variants:
            try:
                study = optuna.load_study(study_name=f"{task}/{variant}", storage=storage)
            except KeyError:  # Optuna's word for "no such study": this pair has no trial yet
                continue
            studies.append(Study(task, variant, study, {}, url))
    return searched_plan(plan, studies)


def open_studies(plan: SweepPlan, context: RunContext) -> list[Study]:
    """Create or load each (task, variant)'s study; refuse one made by another spec."""
    optuna = need_optuna()
    folder = context.store.root / "sweep"
    url = storage_url(folder, journal=plan.spec.executor.backend == "slurm")
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
            studies.append(Study(task, variant, study, space, url))
    return studies


def next_trials(plan: SweepPlan, study: Study, count: int) -> list[TrialRuns]:
    """Up to ``count`` trials: RUNNING ones left by an earlier invocation first, then new ones
    while the study has fewer than ``sweep.trials``."""
    from optuna.trial import TrialState

    out: list[TrialRuns] = []
    for frozen in study.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.number not in study.held and len(out) < count:
            out.append(trial_runs(plan, study, frozen._trial_id, frozen.number, frozen.params))  # noqa: SLF001
    while len(out) < count and len(study.study.get_trials(deepcopy=False)) < plan.sweep.trials:
        # a sampler seeded by the trial's number: the same history proposes the same point,
        # whether or not the sweep was killed on the way
        n = len(study.study.get_trials(deepcopy=False))
        study.study.sampler = make_sampler(plan.sweep.search, plan.sweep.seed + n)
        trial = study.study.ask(study.space)
        out.append(trial_runs(plan, study, trial._trial_id, trial.number, trial.params))  # noqa: SLF001
    return out


def trial_runs(
    plan: SweepPlan, study: Study, trial_id: int, number: int, params: dict[str, Any]
) -> TrialRuns:
    """The selection runs of one trial: those a grid sweep has for its point."""
    point = point_of(plan.sweep, params)
    point_spec = spec_at_point(plan.spec, point, plan.point_specs, plan.source)
    epochs = point_spec.train.epochs
    seeds = plan.select_seeds
    runs = []
    for run in expand(point_spec.model_copy(update={"seeds": seeds}), plan.base_dir):
        if run.task != study.task or run.variant != study.variant:
            continue
        own = variant_point(point, run.variant)
        link = trial_link(
            study.url,
            f"{study.task}/{study.variant}",
            trial_id,
            offset=seeds.index(run.seed) * epochs,
            pruner=plan.sweep.pruner,
            max_steps=epochs * len(seeds),
        )
        update = {"sweep": {"point": own, "stage": SELECT_STAGE}, "trial": link}
        runs.append(run.model_copy(update=update))
    return TrialRuns(study, trial_id, number, point, runs)


def tell(trial: TrialRuns, context: RunContext) -> bool:
    """Tell the study how the trial ended; False when it has no outcome yet (stays RUNNING)."""
    from optuna.trial import TrialState

    statuses = {context.store.run(r.run_id).status for r in trial.runs}
    study = trial.study.study
    if "pruned" in statuses:
        study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
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
    for study in studies:
        for frozen in study.study.get_trials(deepcopy=False):
            found = trial_runs(plan, study, frozen._trial_id, frozen.number, frozen.params)  # noqa: SLF001
            points.setdefault(repr(sorted(found.point.items())), found.point)
            for run in found.runs:
                select_runs.setdefault(run.run_id, run)
    return replace(plan, points=list(points.values()), select_runs=list(select_runs.values()))
