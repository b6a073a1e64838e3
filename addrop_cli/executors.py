"""Carry out an experiment's run list against the results store.

The local executor runs pending runs one after another in this process. Each run is locked,
started clean, and ends with DONE or FAILED; a run that raises or whose loss goes NaN is recorded
as failed and the rest continue. Ctrl-C stops after what finished is saved, with a summary.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from addrop_cli.errors import SpecError
from addrop_cli.progress import make_progress
from addrop_cli.spec import (
    ExperimentSpec,
    RunSpec,
    config_hash,
    expand,
    resolve_path,
    spec_to_yaml,
)
from addrop_cli.store import ExperimentStore, RunFolder

EXIT_OK, EXIT_RUNS_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass
class Summary:
    """What happened to each run of an experiment in this invocation."""

    skipped: list[RunSpec] = field(default_factory=list)
    done: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)
    busy: list[RunSpec] = field(default_factory=list)
    left: list[RunSpec] = field(default_factory=list)


def experiment_store(
    spec: ExperimentSpec, spec_path: Path, results_root: Path | None
) -> ExperimentStore:
    root = results_root if results_root is not None else resolve_path(spec.results_dir, Path.cwd())
    return ExperimentStore(root / spec.name)


def run_config(run: RunSpec, spec_hash: str) -> dict:
    """run.json: everything about the run, in plain JSON (the store's format)."""
    return {
        "run_id": run.run_id,
        "experiment": run.experiment,
        "spec_hash": spec_hash,
        "task": run.task,
        "variant": run.variant,
        "method": run.params.method,
        "method_params": run.params.model_dump(mode="json"),
        "seed": run.seed,
        "model": run.model.model_dump(mode="json"),
        "train": run.train.model_dump(mode="json"),
        "data": run.data.model_dump(mode="json"),
        "sweep": run.sweep,
    }


def print_plan(
    spec: ExperimentSpec, runs: list[RunSpec], store: ExperimentStore, console: Console
) -> None:
    """--dry-run: the resolved spec and the whole run matrix with each run's state."""
    console.rule("resolved spec")
    console.print(spec_to_yaml(spec), markup=False, highlight=False)
    table = Table(title=f"{len(runs)} runs -> {store.root}")
    for column in ("run id", "task", "variant", "method", "seed", "state"):
        table.add_column(column)
    for run in runs:
        state = store.run(run.run_id).status
        table.add_row(
            run.run_id,
            run.task,
            run.variant,
            run.params.method,
            str(run.seed),
            {"absent": "to run", "unfinished": "to run (restart)"}.get(state, state),
        )
    console.print(table)


def run_experiment(
    spec: ExperimentSpec,
    *,
    spec_path: Path,
    results_root: Path | None = None,
    dry_run: bool = False,
    plain: bool = True,
    retry_failed: bool = True,
    console: Console | None = None,
) -> int:
    """Run every pending run of ``spec``; returns the exit code (0, 1 if any failed, 130)."""
    from addrop_cli.preflight import preflight

    console = console or Console()
    base_dir = spec_path.parent
    runs = expand(spec, base_dir)
    store = experiment_store(spec, spec_path, results_root)
    if dry_run:
        print_plan(spec, runs, store, console)
        return EXIT_OK
    problems = preflight(spec, base_dir)
    if problems:
        raise SpecError(*problems)
    spec_yaml = spec_to_yaml(spec)
    spec_hash = config_hash(yaml.safe_load(spec_yaml))
    store.open_for_writing(spec.name, spec_hash, spec_yaml)

    summary = Summary()
    pending = []
    for run in runs:
        status = store.run(run.run_id).status
        if status == "done" or (status == "failed" and not retry_failed):
            summary.skipped.append(run)
        else:
            pending.append(run)
    console.print(
        f"{spec.name}: {len(runs)} runs, {len(summary.skipped)} already in {store.root} "
        f"(skipped), {len(pending)} to run",
        highlight=False,
    )
    progress = make_progress(console, plain)
    progress.experiment_start(len(runs), len(pending))
    try:
        for index, run in enumerate(pending):
            with store.lock(run.run_id) as locked:
                if not locked:
                    summary.busy.append(run)
                    progress.run_end(run, "busy", "(another addrop process is running it)")
                    continue
                folder = store.run(run.run_id)
                if folder.status == "done":  # finished by another process meanwhile
                    summary.skipped.append(run)
                    continue
                progress.run_start(run, index)
                _execute(run, folder, spec_hash, progress, summary, base_dir)
    except KeyboardInterrupt:
        finished = {r.run_id for r in summary.done} | {r.run_id for r, _ in summary.failed}
        busy = {r.run_id for r in summary.busy}
        summary.left = [r for r in pending if r.run_id not in finished | busy]
        progress.close()
        _print_summary(console, summary, store)
        console.print(
            f"interrupted: {len(summary.left)} runs left; run the same command again to "
            "finish them (finished runs are kept and skipped)",
            highlight=False,
        )
        return EXIT_INTERRUPTED
    progress.close()
    _print_summary(console, summary, store)
    return EXIT_RUNS_FAILED if summary.failed else EXIT_OK


def _execute(
    run: RunSpec, folder: RunFolder, spec_hash: str, progress, summary: Summary, base_dir: Path
) -> None:
    """One run, contained: any exception becomes a FAILED run, never a crash of the experiment."""
    from addrop_cli.environment import describe_environment
    from addrop_cli.train import run_one

    folder.start(run_config(run, spec_hash))
    try:
        outcome = run_one(
            run,
            on_eval=lambda record: (folder.append_epoch(record), progress.evaluated(run, record)),
            on_step=progress.step,
            keep_best_state=run.train.save_checkpoint,
        )
    except KeyboardInterrupt:
        raise  # the folder stays unfinished and is started again next time
    except Exception as err:  # noqa: BLE001 - containment is the point
        reason = f"{type(err).__name__}: {err}".strip()
        folder.write_json("traceback.json", {"traceback": traceback.format_exc()})
        folder.fail(reason, {"task": run.task, "variant": run.variant, "seed": run.seed})
        summary.failed.append((run, reason))
        progress.run_end(run, "FAILED", reason.splitlines()[0][:200])
        return
    folder.write_json("env.json", describe_environment(base_dir, outcome.metrics["device"]))
    folder.write_json("predictions.json", outcome.predictions)
    if outcome.best_state is not None:
        from safetensors.torch import save_file

        (folder.path / "checkpoint").mkdir(exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in outcome.best_state.items()},
            str(folder.path / "checkpoint" / "model.safetensors"),
        )
    folder.finish(outcome.metrics)
    summary.done.append(run)
    main = outcome.metrics["main_metric"]
    progress.run_end(
        run,
        "done",
        f"best {main}={outcome.metrics['best']['dev'][main]:.4f} "
        f"(epoch {outcome.metrics['best_epoch']}, {outcome.metrics['wall_time_s']:.0f}s)",
    )


def _print_summary(console: Console, summary: Summary, store: ExperimentStore) -> None:
    parts = [
        f"{len(summary.done)} done",
        f"{len(summary.skipped)} skipped",
        f"{len(summary.failed)} failed",
    ]
    if summary.busy:
        parts.append(f"{len(summary.busy)} running elsewhere")
    if summary.left:
        parts.append(f"{len(summary.left)} left")
    console.print(f"runs: {', '.join(parts)}; results in {store.root}", highlight=False)
    for run, reason in summary.failed:
        console.print(
            f"  failed: {run.label}: {reason.splitlines()[0][:200]}", markup=False, highlight=False
        )
