"""Hyperparameter sweeps: grid, random, TPE or CMA-ES search over spec paths, and an honest
selection (tpe/cmaes: Optuna's samplers and pruners, ``execution/sweeps/search.py``).

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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from addrop_cli.errors import EXIT_OK, EXIT_RUNS_FAILED
from addrop_cli.execution.attempt.context import RunContext
from addrop_cli.execution.backends.base import Backend
from addrop_cli.execution.planning.runner import (
    execute_runs,
    make_backend,
    open_context,
    print_plan,
)
from addrop_cli.execution.sweeps.plan import SweepPlan, plan_sweep
from addrop_cli.execution.sweeps.search import run_search
from addrop_cli.execution.sweeps.selection import (
    Selection,
    report_runs,
    select_winners,
    stage_records,
)
from addrop_cli.execution.sweeps.summary import (
    print_selection,
    protocol_text,
    search_text,
    write_summary,
)
from addrop_cli.spec.schema import ExperimentSpec
from addrop_cli.spec.sweeps import OPTUNA_SEARCHES
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.store.status import is_final
from addrop_cli.words import plural

# ---------------------------------------------------------------------------------------------
# `addrop sweep`
# ---------------------------------------------------------------------------------------------


def _headline(spec: ExperimentSpec, plan: SweepPlan) -> str:
    """One line: the points, the variants swept and what each stage runs."""
    sweep = plan.sweep
    stage2 = "the winner per task on report seeds" if sweep.protocol == "two_stage" else "none"
    if sweep.search in OPTUNA_SEARCHES:
        return (
            f"sweep {spec.name}: {sweep.search} search, {sweep.trials} trials per task and "
            f"variant (pruner: {sweep.pruner}), study in sweep/; variants swept: "
            f"{', '.join(plan.swept_variants) or 'none'}; stage 2: {stage2}"
        )
    return (
        f"sweep {spec.name}: {len(plan.points)} points x {plural(len(spec.tasks), 'task')}, "
        f"variants swept: {', '.join(plan.swept_variants) or 'none'}; "
        f"stage 1: {len(plan.select_runs)} selection runs + {len(plan.fixed_runs)} runs of "
        f"unswept variants; stage 2: {stage2}"
    )


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
    console = console or Console()
    plan = plan_sweep(spec, spec_path.parent.resolve(), str(spec_path))
    store = ExperimentStore.located(spec.name, spec.results_dir, results_root)
    head = _headline(spec, plan)
    if dry_run:
        print_plan(spec, plan.stage1(), store, console)
        console.print(head, highlight=False)
        return EXIT_OK
    context = open_context(spec, spec_path, store, console)
    backend = make_backend(spec, context.base_dir, plain=plain, console=console)
    console.print(head, highlight=False)
    if spec.sweep.search in OPTUNA_SEARCHES:
        searched = run_search(plan, context, backend, console=console, retry_failed=retry_failed)
        plan, first = searched.plan, searched
    else:
        first = execute_runs(
            plan.stage1(),
            context,
            backend,
            name=f"{spec.name} stage 1 (selection)",
            console=console,
            retry_failed=retry_failed,
        )
    if first.interrupted:
        return first.exit_code
    selections = select_winners(stage_records(store.root, plan.select_runs), points=plan.points)
    codes = [first.exit_code]
    if spec.sweep.protocol == "two_stage":
        second = _stage_two(plan, selections, context, backend, console, retry_failed)
        if second.interrupted:
            return second.exit_code
        codes.append(second.exit_code)
    _summarise(store.root, plan, selections, console)
    if on_done is not None:
        on_done(store.root)
    return max(codes)


@dataclass(frozen=True)
class _StageEnd:
    exit_code: int
    interrupted: bool = False


def _stage_two(
    plan: SweepPlan,
    selections: list[Selection],
    context: RunContext,
    backend: Backend,
    console: Console,
    retry_failed: bool,
) -> _StageEnd:
    """Re-run each winner on the report seeds, once every selection run has its result."""
    store = context.store
    unresolved = [r for r in plan.select_runs if not is_final(store.run(r.run_id).status)]
    if unresolved:
        console.print(
            f"stage 2 not started: {len(unresolved)} selection runs have no result yet "
            "(running elsewhere or lost); run the same command again when they are done",
            highlight=False,
        )
        return _StageEnd(EXIT_RUNS_FAILED)
    second = execute_runs(
        report_runs(plan, selections),
        context,
        backend,
        name=f"{plan.spec.name} stage 2 (report)",
        console=console,
        retry_failed=retry_failed,
    )
    return _StageEnd(second.exit_code, second.interrupted)


def _summarise(root: Path, plan: SweepPlan, selections: list[Selection], console: Console) -> None:
    """Write the sweep's summary files and print what was selected."""
    files = write_summary(root / "sweep", plan, selections)
    print_selection(console, selections, protocol_text(plan))
    console.print(f"search: {search_text(plan)}", highlight=False)
    console.print(f"sweep summary: {', '.join(str(f) for f in files)}", highlight=False)
