"""``addrop run``: plan, pick a back-end, execute the pending runs, summarise."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from addrop_cli.data.tasks import get_task
from addrop_cli.errors import EXIT_OK, AddropError, SpecError, first_line
from addrop_cli.execution.attempt.context import RunContext, Summary, settled_outcome
from addrop_cli.execution.backends.base import Backend, backend_type
from addrop_cli.execution.planning.preflight import preflight
from addrop_cli.execution.trackers.servers import silent_servers
from addrop_cli.execution.trackers.tracking import installed, where_files_go
from addrop_cli.models.adapters import parameters_line, planned_counts
from addrop_cli.models.location import located
from addrop_cli.spec.load import spec_to_yaml
from addrop_cli.spec.matrix import RunSpec, expand, spec_version
from addrop_cli.spec.only import select_runs
from addrop_cli.spec.schema import ExperimentSpec
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.store.identity import point_label
from addrop_cli.store.status import needs_attempt
from addrop_cli.words import plural

# Store helpers shared by `addrop run` and `addrop sweep`
# ---------------------------------------------------------------------------------------------


def open_context(
    spec: ExperimentSpec, spec_path: Path, store: ExperimentStore, console: Console | None = None
) -> RunContext:
    """Check everything checkable (data, model, a tracking server), then open the store for
    writing. A tracker that is not installed is one line on ``console`` and left out."""

    base_dir = spec_path.parent.resolve()
    problems = preflight(spec, base_dir, str(spec_path))
    tracking, missing = installed(spec.tracking.to)
    problems = problems or silent_servers(tracking)  # seconds now, not minutes in every run
    if problems:
        raise SpecError(*problems)
    spec_hash = spec_version(spec)
    store.open_for_writing(spec.name, spec_hash, spec_to_yaml(spec))
    for line in missing:
        (console or Console(stderr=True)).print(f"warning: {line}", highlight=False, markup=False)
    if tracking:
        line = where_files_go(tracking, store.root)
        (console or Console()).print(line, highlight=False, markup=False, soft_wrap=True)
    every = spec.tracking.log_every_steps
    return RunContext(store, spec_hash, base_dir, tracking=tuple(tracking), track_every=every)


def print_plan(
    spec: ExperimentSpec,
    runs: list[RunSpec],
    store: ExperimentStore,
    console: Console,
    *,
    restart: bool = False,
    retry_failed: bool = True,
) -> None:
    """--dry-run: the resolved spec and the whole run matrix with each run's state (what
    ``addrop run`` with the same flags would do with it)."""
    console.rule("resolved spec")
    console.print(spec_to_yaml(spec), markup=False, highlight=False)
    table = Table(title=f"{plural(len(runs), 'run')} -> {store.root}")
    swept = any(run.sweep for run in runs)
    factors = any(run.factors for run in runs)
    for column in ("run id", "task", "variant", "method", *(["factors"] if factors else [])):
        table.add_column(column)
    for column in ("seed", "state"):
        table.add_column(column)
    if swept:
        table.add_column("sweep point (stage)")
    for run in runs:
        state = store.run(run.run_id).status
        row = [
            run.run_id,
            run.task,
            run.variant,
            run.params.method,
            *([point_label(run.factors) or "-"] if factors else []),
            str(run.seed),
            _state_label(store, run.run_id, state, restart=restart, retry_failed=retry_failed),
        ]
        if swept:
            sweep = run.sweep or {}
            point = ", ".join(f"{k}={v}" for k, v in (sweep.get("point") or {}).items())
            row.append(f"{point} ({sweep['stage']})" if sweep else "-")
        table.add_row(*row)
    console.print(table)
    print_state_size(runs, console)
    lines = {parameters_line(located(r.model, r.base_dir), r.train.adapter,
                             get_task(r.task, r.data).num_labels): 0 for r in runs}  # fmt: skip
    console.print("\n".join(lines), highlight=False, markup=False)


def print_state_size(runs: list[RunSpec], console: Console) -> None:
    """--dry-run: the disk a run's training state takes (only the latest is kept per run)."""

    sizes: dict[str, int | None] = {}
    for run in runs:
        lora = f", LoRA r={run.train.adapter.rank}" if run.train.adapter else ""
        key = f"{run.model.name_or_path} ({run.task}{lora})"
        if key in sizes:
            continue
        try:
            sizes[key] = expected_state_bytes(run)
        except (AddropError, OSError, ValueError):
            sizes[key] = None
    every = runs[0].train.checkpoint_every_steps if runs else None
    when = "at the end of every epoch" + (f" and every {every} steps" if every else "")
    for key, size in sizes.items():
        amount = f"about {_megabytes(size)}" if size is not None else "unknown (no model config)"
        console.print(
            f"training state of {key}: {amount} per unfinished run (weights and AdamW moments), "
            f"written {when} into <run>/state/; the latest only, deleted when the run is done",
            highlight=False,
        )


def _megabytes(size: int) -> str:
    """``273 MB``; below half a megabyte in kB (a tiny model's state is not "0 MB")."""
    return f"{size / 1e6:,.0f} MB" if size >= 500_000 else f"{max(size / 1e3, 1):,.0f} kB"


def _state_label(
    store: ExperimentStore, run_id: str, state: str, *, restart: bool, retry_failed: bool
) -> str:
    """The run's state and what `addrop run` does with it; "resume" only when the run has a
    training state that loads (the check :meth:`TrainingStateFiles.load` makes)."""
    if state == "absent":
        return "to run"
    if state == "failed":
        return "failed: to run again from step 0" if retry_failed else "failed (skipped)"
    if state != "unfinished":
        return state
    loaded = None if restart else store.run(run_id).state.valid_manifest()
    return f"to run (resume at step {loaded['step']})" if loaded else "to run (from step 0)"


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def run_experiment(
    spec: ExperimentSpec,
    *,
    spec_path: Path,
    results_root: Path | None = None,
    dry_run: bool = False,
    plain: bool = True,
    retry_failed: bool = True,
    restart: bool = False,
    only: Sequence[str] = (),
    console: Console | None = None,
) -> int:
    """Run every pending run of ``spec``; returns the exit code (0, 1 if any failed, 130).

    The back-end (local serial or pool, Slurm) comes from ``spec.executor``. ``only`` (``--only
    KEY=V1,V2``) narrows the runs to part of the matrix; the spec and its version stay whole.
    """
    console = console or Console()
    runs = expand(spec, spec_path.parent)
    if only:
        every = len(runs)
        runs = select_runs(spec, runs, only, str(spec_path))
        picked = " ".join(f"--only {o}" for o in only)
        console.print(
            f"{picked}: {len(runs)} of the spec's {plural(every, 'run')}", highlight=False
        )
    store = ExperimentStore.located(spec.name, spec.results_dir, results_root)
    if dry_run:
        # the checks `addrop run` makes first (offline): a plan it would refuse is refused
        problems = preflight(spec, spec_path.parent.resolve(), str(spec_path), hub=False)
        if problems:
            raise SpecError(*problems)
        print_plan(spec, runs, store, console, restart=restart, retry_failed=retry_failed)
        return EXIT_OK
    if spec.sweep is not None:
        console.print(
            "note: this spec has a sweep: block, which `addrop run` ignores (it runs the plain "
            "matrix); use `addrop sweep` to search it",
            highlight=False,
        )
    context = open_context(spec, spec_path, store, console)
    if restart:
        discard_states(runs, store, console)
    backend = make_backend(spec, context.base_dir, plain=plain, console=console)
    summary = execute_runs(
        runs, context, backend, name=spec.name, console=console, retry_failed=retry_failed
    )
    return summary.exit_code


def discard_states(runs: Sequence[RunSpec], store: ExperimentStore, console: Console) -> None:
    """--restart: interrupted runs lose their training state, so they start from step 0 (a run
    that another process is running keeps it)."""
    discarded = 0
    for run in runs:
        folder = store.run(run.run_id)
        if folder.status != "unfinished" or not folder.state.exists():
            continue
        with store.lock(run.run_id) as locked:
            if locked:
                folder.state.discard()
                discarded += 1
    if discarded:
        console.print(
            f"--restart: discarded the training state of {discarded} interrupted runs",
            highlight=False,
        )


def execute_runs(
    runs: Sequence[RunSpec],
    context: RunContext,
    backend: Backend,
    *,
    name: str,
    console: Console,
    retry_failed: bool = True,
) -> Summary:
    """Skip what the store already holds, hand the rest to ``backend``, print a summary."""
    context = dataclasses.replace(context, retry_failed=retry_failed)
    summary = Summary()
    pending = []
    for run in runs:
        status = context.store.run(run.run_id).status
        if not needs_attempt(status, retry_failed=retry_failed):
            summary.skipped.append(run)
        else:
            pending.append(run)
    console.print(
        f"{name}: {plural(len(runs), 'run')}, {len(summary.skipped)} already in "
        f"{shown(context.store.root)} (skipped), {len(pending)} to run",
        highlight=False,
    )
    try:
        if pending:
            backend.execute(pending, context, summary, console)
    except KeyboardInterrupt:
        summary.interrupted = True
        _count_from_store(pending, context, summary)
        print_summary(console, summary, context.store)
        console.print(
            f"interrupted: {plural(len(summary.left), 'run')} left; run the same command again to "
            "finish them (finished runs are kept and skipped)",
            highlight=False,
        )
        return summary
    print_summary(console, summary, context.store)
    return summary


def _count_from_store(pending: Sequence[RunSpec], context: RunContext, summary: Summary) -> None:
    """After an interruption, file the runs whose outcome never reached this process (a worker
    that finished a run as the signal came) by what the store holds; the rest are left."""
    recorded = {r.run_id for r in summary.done + summary.busy + summary.skipped + summary.pruned}
    recorded |= {r.run_id for r, _ in summary.failed + summary.lost}
    for run in pending:
        if run.run_id in recorded:
            continue
        known = settled_outcome(context.store.run(run.run_id), context)
        if known is not None:
            summary.record(run, known.status, known.reason)
        else:
            summary.left.append(run)


def make_backend(
    spec: ExperimentSpec, base_dir: Path, *, plain: bool = True, console: Console | None = None
) -> Backend:
    """The back-end ``spec.executor`` asks for; a pool's plan note goes to ``console``."""
    kind = backend_type(spec.executor.backend)
    return kind.from_spec(spec, base_dir, plain=plain, console=console)


# ---------------------------------------------------------------------------------------------


# Summary
# ---------------------------------------------------------------------------------------------


def print_summary(console: Console, summary: Summary, store: ExperimentStore) -> None:
    parts = [
        f"{len(summary.done)} done",
        f"{len(summary.skipped)} skipped",
        f"{len(summary.failed)} failed",
    ]
    if summary.pruned:
        parts.append(f"{len(summary.pruned)} pruned")
    if summary.busy:
        parts.append(f"{len(summary.busy)} running elsewhere")
    if summary.lost:
        parts.append(f"{len(summary.lost)} lost")
    if summary.left:
        parts.append(f"{len(summary.left)} left")
    console.print(f"runs: {', '.join(parts)}; results in {shown(store.root)}", highlight=False)
    for run, reason in summary.failed:
        console.print(f"  failed: {run.label}: {first_line(reason)}", markup=False, highlight=False)
    for run, reason in summary.lost:
        console.print(
            f"  lost: {run.label}: {reason}; run the same command again to retry it",
            markup=False,
            highlight=False,
        )


def shown(path: Path) -> Path:
    """``path`` relative to the working folder when it lies inside it (shorter, and the same on
    every machine), else as is."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def expected_state_bytes(run: RunSpec) -> int:
    """About how large the run's training state is: the weights (every parameter, a LoRA
    model's frozen base included), AdamW's two moments of the trainable parameters only (3x the
    model in full fine-tuning, a little over 1x with an adapter), plus the best weights when
    train.save_checkpoint keeps them."""
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.models.loading import load_config

    task = get_task(run.task, run.data)
    config = load_config(located(run.model, run.base_dir), num_labels=task.num_labels)
    trainable, total = planned_counts(config, run.train.adapter)
    weights = 4 * total  # fp32
    return weights * (2 if run.train.save_checkpoint else 1) + 2 * 4 * trainable
