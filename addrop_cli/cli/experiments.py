"""Commands that check and run experiments: ``run``, ``sweep``, ``validate``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from addrop_cli.cli.app import app, console, err_console
from addrop_cli.cli.options import (
    ArrayOpt,
    BackendOpt,
    CpusOpt,
    DeviceOpt,
    GpusOpt,
    GridOpt,
    MemOpt,
    OnlyOpt,
    PartitionOpt,
    PlainOpt,
    RestartOpt,
    ResultsOpt,
    RetryOpt,
    RunsPerGpuOpt,
    SpecArgs,
    ThreadsOpt,
    TimeOpt,
    TrackOpt,
    WorkersOpt,
    executor_overrides,
    grid_overrides,
    one_spec,
    split_args,
    with_tracking,
)
from addrop_cli.errors import AddropError, SpecError

if TYPE_CHECKING:
    from addrop_cli.spec.schema import ExperimentSpec


@app.command()
def run(
    args: SpecArgs,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the resolved spec and run matrix; train nothing."),
    ] = False,
    results: ResultsOpt = None,
    device: DeviceOpt = None,
    plain: PlainOpt = False,
    retry_failed: RetryOpt = True,
    restart: RestartOpt = False,
    backend: BackendOpt = None,
    workers: WorkersOpt = None,
    runs_per_gpu: RunsPerGpuOpt = None,
    threads: ThreadsOpt = None,
    partition: PartitionOpt = None,
    gpus: GpusOpt = None,
    cpus: CpusOpt = None,
    mem_gb: MemOpt = None,
    time_min: TimeOpt = None,
    array_parallelism: ArrayOpt = None,
    track: TrackOpt = None,
    only: OnlyOpt = None,
) -> None:
    """Run an experiment: every task x method variant x seed not yet in the results store.

    Finished runs are skipped; interrupted ones go on from their last training state (written
    every epoch and every train.checkpoint_every_steps steps), or from step 0 with --restart.
    Runs go through the spec's executor (local serial by default; --workers N for a local
    pool; --backend slurm).

    [bold]Examples[/bold]

      addrop run experiments/smoke.yaml

      addrop run experiments/quickstart.yaml seeds=[1] train.epochs=2 --workers 2

      addrop run experiments/glue.yaml --backend slurm --partition gpu --gpus 1

      addrop run experiments/glue.yaml --dry-run

      addrop run experiments/curve-sst2.yaml --only data.train_size=500,1000
    """
    from addrop_cli.execution.planning.runner import run_experiment

    path, overrides = one_spec(args)
    overrides += executor_overrides(locals())
    spec = with_tracking(_load(path, overrides), track)
    code = run_experiment(
        spec,
        spec_path=path,
        results_root=results,
        dry_run=dry_run,
        plain=plain or not console.is_terminal,
        retry_failed=retry_failed,
        restart=restart,
        only=only or (),
        console=console,
    )
    raise typer.Exit(code)


@app.command()
def validate(
    args: Annotated[list[str], typer.Argument(help="Spec files, then key=value overrides.")],
    deep: Annotated[
        bool,
        typer.Option(help="Also check data files and model configs (reads files, no training)."),
    ] = True,
    hub: Annotated[
        bool,
        typer.Option(help="Fetch the config of Hub models that are not cached, to check them."),
    ] = False,
) -> None:
    """Check spec files: keys, types, ranges, task and method names, data files, model layers.

    Every problem is listed, one line each; exit code 2 if there is any.

    [bold]Examples[/bold]

      addrop validate experiments/*.yaml

      addrop validate experiments/sst2.yaml methods.addrop.p=0.5
    """
    from addrop_cli.execution.planning.preflight import preflight

    specs, overrides = split_args(args)
    if not specs:
        raise SpecError("give at least one spec file, e.g. addrop validate experiments/*.yaml")
    problems: list[str] = []
    for path in specs:
        notes: list[str] = []
        try:
            spec = _load(path, overrides)
            found = (
                preflight(spec, path.parent.resolve(), str(path), hub=hub, notes=notes)
                if deep
                else []
            )
        except AddropError as err:
            found = err.problems
        if len(specs) > 1:  # say which spec each problem belongs to
            found = [p if p.startswith(f"{path}:") else f"{path}: {p}" for p in found]
        problems += found
        for note in notes:
            err_console.print(f"note: {note}", markup=False, highlight=False)
        if not found:
            console.print(Text.assemble(("ok", "green"), f" {path}"), highlight=False)
    if problems:
        raise SpecError(*problems)


@app.command()
def sweep(
    args: SpecArgs,
    grid: GridOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the points and stage-1 runs; train nothing.")
    ] = False,
    results: ResultsOpt = None,
    device: DeviceOpt = None,
    plain: PlainOpt = False,
    retry_failed: RetryOpt = True,
    report: Annotated[bool, typer.Option(help="Print the report at the end.")] = True,
    backend: BackendOpt = None,
    workers: WorkersOpt = None,
    runs_per_gpu: RunsPerGpuOpt = None,
    threads: ThreadsOpt = None,
    partition: PartitionOpt = None,
    gpus: GpusOpt = None,
    cpus: CpusOpt = None,
    mem_gb: MemOpt = None,
    time_min: TimeOpt = None,
    array_parallelism: ArrayOpt = None,
    track: TrackOpt = None,
) -> None:
    """Search hyperparameters (grid, random, TPE or CMA-ES) with an honest two-stage protocol.

    Stage 1 runs the spec's sweep on the selection seeds; the best point per task (main metric on
    the selection split, mean over seeds) then runs on the report seeds (two_stage), or is
    reported as is (paper protocol, labelled so).

    Writes <results>/<name>/sweep/summary.json and .md, then the report (heatmap in report/).
    A restarted sweep never redoes a finished run.

    [bold]Examples[/bold]

      addrop sweep experiments/pq-sweep.yaml --workers 2

      addrop sweep experiments/pq-sweep.yaml --backend slurm --cpus 2 --time-min 30

      addrop sweep experiments/smoke.yaml --grid methods.addrop.q=[0.1,0.5] sweep.report_seeds=[3]

      addrop sweep experiments/pq-sweep.yaml sweep.protocol=paper sweep.report_seeds=null
    """
    from addrop_cli.execution.sweep import run_sweep

    path, overrides = one_spec(args)
    overrides += grid_overrides(grid or [])
    overrides += executor_overrides(locals())
    spec = with_tracking(_load(path, overrides), track)
    code = run_sweep(
        spec,
        spec_path=path,
        results_root=results,
        dry_run=dry_run,
        plain=plain or not console.is_terminal,
        retry_failed=retry_failed,
        on_done=_print_report if report else None,
        console=console,
    )
    raise typer.Exit(code)


def _print_report(experiment: Path) -> None:
    from addrop_cli.report import report_command

    console.rule("report")
    report_command([experiment], console=console)


def _load(path: Path, overrides: list[str]) -> ExperimentSpec:
    """The validated spec; a setting it gives that has no effect is a warning line, not an
    error (the runs are right, only the spec says more than it does)."""
    from addrop_cli.spec.load import inert_settings, load_spec

    spec = load_spec(path, overrides)
    for line in inert_settings(spec, str(path)):
        err_console.print(f"warning: {line}", markup=False, highlight=False)
    return spec
