"""The ``addrop`` command line: parses arguments, calls the package, prints. No ML code here.

Every user error is an :class:`AddropError`: printed as one line per problem, exit code 2 (1 for
failed runs); a traceback only with ``--debug``.
"""

from __future__ import annotations

import difflib
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from addrop_cli.errors import AddropError, SpecError
from addrop_cli.terminal import flags_without_metavar, make_consoles

_HELP = {"help_option_names": ["-h", "--help"]}
if TYPE_CHECKING:
    from addrop_cli.spec.schema import ExperimentSpec

app = typer.Typer(
    name="addrop",
    help="""Fine-tune language models on GLUE with AD-DROP and the methods it is compared with.

    [bold]Examples[/bold]

      addrop run experiments/smoke.yaml

      addrop report results/smoke

      addrop validate experiments/*.yaml

      addrop run --help
    """,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings=_HELP,
)
list_app = typer.Typer(
    help="""List what addrop knows: GLUE tasks, methods, model families.

    [bold]Examples[/bold]

      addrop list tasks

      addrop list methods

      addrop list models
    """,
    no_args_is_help=True,
    context_settings=_HELP,
)
app.add_typer(list_app, name="list")


console, err_console = make_consoles()
flags_without_metavar()
_state = {"debug": False}


def _split_args(args: list[str]) -> tuple[list[Path], list[str]]:
    """Positional arguments are spec files, except ``key=value`` overrides."""
    specs = [Path(a) for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    return specs, overrides


def _one_spec(args: list[str]) -> tuple[Path, list[str]]:
    specs, overrides = _split_args(args)
    if len(specs) != 1:
        raise SpecError(
            f"expected one spec file and key=value overrides, got {len(specs)} files: "
            f"{' '.join(map(str, specs)) or '(none)'}; e.g. addrop run experiments/smoke.yaml"
        )
    return specs[0], overrides


# Execution options shared by `run` and `sweep`; each becomes an executor.* override, so the
# command line beats the spec's executor: block and is validated with it.
BackendOpt = Annotated[
    str | None, typer.Option("--backend", help="local (default) or slurm.", show_default=False)
]
WorkersOpt = Annotated[
    str | None,
    typer.Option(
        "--workers",
        help="Local worker processes (auto: one per GPU). Default: the spec's, else 1.",
        show_default=False,
    ),
]
RunsPerGpuOpt = Annotated[
    str | None,
    typer.Option(
        "--runs-per-gpu",
        help="Local runs sharing each visible GPU (auto: as many as fit). Ignored on CPU.",
        show_default=False,
    ),
]
ThreadsOpt = Annotated[
    int | None, typer.Option(help="torch threads per local worker.", show_default=False)
]
PartitionOpt = Annotated[str | None, typer.Option(help="Slurm partition.", show_default=False)]
GpusOpt = Annotated[int | None, typer.Option(help="Slurm: GPUs per job.", show_default=False)]
CpusOpt = Annotated[int | None, typer.Option(help="Slurm: CPUs per job.", show_default=False)]
MemOpt = Annotated[
    float | None, typer.Option("--mem-gb", help="Slurm: memory per job (GB).", show_default=False)
]
TimeOpt = Annotated[
    int | None,
    typer.Option("--time-min", help="Slurm: time limit per job (minutes).", show_default=False),
]
ArrayOpt = Annotated[
    int | None,
    typer.Option(help="Slurm: array tasks running at once.", show_default=False),
]
TrackOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--track",
        help="Follow runs in tensorboard, mlflow or wandb (repeatable; adds to the spec's "
        "tracking).",
        show_default=False,
    ),
]


def _results_path(text: str) -> Path:
    if not text.strip():
        raise SpecError("--results: empty path; give a folder, e.g. --results results")
    return Path(text)


ResultsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Results folder (default: the spec's results_dir).",
        parser=_results_path,
        show_default=False,
    ),
]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.", show_default=False)]


_EXECUTOR_OPTIONS = {
    "device": "train.device",
    "backend": "executor.backend",
    "workers": "executor.workers",
    "runs_per_gpu": "executor.runs_per_gpu",
    "threads": "executor.threads",
    "partition": "executor.slurm.partition",
    "gpus": "executor.slurm.gpus",
    "cpus": "executor.slurm.cpus",
    "mem_gb": "executor.slurm.mem_gb",
    "time_min": "executor.slurm.time_min",
    "array_parallelism": "executor.slurm.array_parallelism",
}


def _executor_overrides(options: dict[str, object]) -> list[str]:
    """A command's execution options (its parameters, by name) as executor.* overrides.

    None keeps the spec's value. `run` and `sweep` pass their ``locals()``: both declare the
    same option parameters, and this is the one place that maps them to spec paths.
    """
    return [
        # strings are quoted: `--partition null` is the partition "null", not YAML's null
        f"{path}={json.dumps(value) if isinstance(value, str) else value}"
        for name, path in _EXECUTOR_OPTIONS.items()
        if (value := options.get(name)) is not None
    ]


def _version(show: bool) -> None:
    if show:
        from addrop_cli import __version__

        console.print(f"addrop {__version__}")
        raise typer.Exit(0)


def _with_tracking(spec: ExperimentSpec, track: list[str] | None) -> ExperimentSpec:
    """The spec with ``--track`` trackers added to its ``tracking`` list (each once)."""
    if not track:
        return spec
    from addrop_cli.engine.tracking import TRACKERS

    for name in track:
        if name not in TRACKERS:
            close = difflib.get_close_matches(name, TRACKERS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(
                f"--track: unknown tracker {name!r}; {hint}choose from {', '.join(TRACKERS)}"
            )
    merged = list(dict.fromkeys([*spec.tracking, *track]))
    return spec.model_copy(update={"tracking": merged})


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def run(
    args: Annotated[list[str], typer.Argument(help="SPEC.yaml, then key=value overrides.")],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the resolved spec and run matrix; train nothing."),
    ] = False,
    results: ResultsOpt = None,
    device: DeviceOpt = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="One line per epoch instead of live progress bars.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="Run again the runs that failed before.")
    ] = True,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Start interrupted runs from step 0 (discard their training state).",
        ),
    ] = False,
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
    """
    from addrop_cli.execution.runner import run_experiment
    from addrop_cli.spec.load import load_spec

    path, overrides = _one_spec(args)
    overrides += _executor_overrides(locals())
    spec = _with_tracking(load_spec(path, overrides), track)
    code = run_experiment(
        spec,
        spec_path=path,
        results_root=results,
        dry_run=dry_run,
        plain=plain or not console.is_terminal,
        retry_failed=retry_failed,
        restart=restart,
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
    from addrop_cli.execution.preflight import preflight
    from addrop_cli.spec.load import load_spec

    specs, overrides = _split_args(args)
    if not specs:
        raise SpecError("give at least one spec file, e.g. addrop validate experiments/*.yaml")
    problems: list[str] = []
    for path in specs:
        notes: list[str] = []
        try:
            spec = load_spec(path, overrides)
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
    args: Annotated[list[str], typer.Argument(help="SPEC.yaml, then key=value overrides.")],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            help="PATH=VALUES: add a grid axis, e.g. methods.addrop.p=[0.1,0.3] or "
            "'train.lr={start: 1e-5, stop: 3e-5, step: 1e-5}' (repeatable).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the points and stage-1 runs; train nothing.")
    ] = False,
    results: ResultsOpt = None,
    device: DeviceOpt = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="One line per epoch instead of live progress bars.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="Run again the runs that failed before.")
    ] = True,
    report: Annotated[
        bool, typer.Option(help="Print the report (tables, heatmap files) at the end.")
    ] = True,
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
    """Search hyperparameters (grid or random) with an honest two-stage selection protocol.

    Stage 1 runs every point of the spec's sweep: block on the selection seeds.

    The best point per task (main metric on the selection split, mean over seeds) then runs on
    the report seeds (two_stage), or is reported as is (paper protocol, labelled so).

    Writes <results>/<name>/sweep/summary.json and summary.md, then prints the report; its
    heatmap goes to <results>/<name>/report/. A restarted sweep never redoes a finished run.

    [bold]Examples[/bold]

      addrop sweep experiments/pq-sweep.yaml --workers 2

      addrop sweep experiments/pq-sweep.yaml --backend slurm --cpus 2 --time-min 30

      addrop sweep experiments/smoke.yaml --grid methods.addrop.q=[0.1,0.5] sweep.report_seeds=[3]

      addrop sweep experiments/pq-sweep.yaml sweep.protocol=paper sweep.report_seeds=null
    """
    from addrop_cli.execution.sweep import run_sweep
    from addrop_cli.spec.load import load_spec

    path, overrides = _one_spec(args)
    for axis in grid or []:
        key, sep, values = axis.partition("=")
        if not sep or not key.strip():
            raise SpecError(
                f"--grid {axis!r}: expected PATH=VALUES, e.g. --grid methods.addrop.p=[0.1,0.3]"
            )
        overrides.append(f"sweep.grid.{key.strip()}={values}")
    overrides += _executor_overrides(locals())
    spec = _with_tracking(load_spec(path, overrides), track)
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


@app.command()
def status(
    args: Annotated[
        list[str],
        typer.Argument(help="results/<name>, or SPEC.yaml then key=value overrides."),
    ],
    results: ResultsOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="List finished runs too.")] = False,
) -> None:
    """Show what each run is doing: queued, running, done, failed, interrupted (not started).

    Reads the store, the run locks on this machine and the Slurm queue; never takes a lock.

    [bold]Examples[/bold]

      addrop status results/pq-sweep

      addrop status experiments/pq-sweep.yaml --all
    """
    from addrop_cli.execution.status import status_command

    targets, overrides = _split_args(args)
    if len(targets) != 1:
        raise SpecError(
            f"expected one results folder or spec file, got {len(targets)}: "
            f"{' '.join(map(str, targets)) or '(none)'}; e.g. addrop status results/smoke"
        )
    code = status_command(
        targets[0], overrides, results_root=results, show_all=show_all, console=console
    )
    raise typer.Exit(code)


@app.command()
def report(
    paths: Annotated[list[Path], typer.Argument(help="Experiment folders under results/.")],
    epoch: Annotated[str, typer.Option(help="best or last epoch metrics.")] = "best",
    agg: Annotated[str, typer.Option(help="mean or median over seeds.")] = "mean",
    reference: Annotated[
        str | None, typer.Option(help="Variant to compare against (default: the baseline).")
    ] = None,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format", "-f", help="terminal, markdown, csv, latex, html, json (repeatable)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for report files and plots.")] = None,
    plots: Annotated[bool, typer.Option(help="Write plots (PNG and SVG).")] = True,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw", help="Also write runs.csv: one row per run and evaluation, for notebooks."
        ),
    ] = False,
) -> None:
    """Turn stored runs into comparison tables, statistics and plots.

    [bold]Examples[/bold]

      addrop report results/smoke

      addrop report results/quickstart --format markdown --format csv --out report/

      addrop report results/glue-bert results/glue-roberta --epoch last

      addrop report results/quickstart --format csv --raw
    """
    if epoch not in ("best", "last"):
        raise SpecError(f"--epoch: must be best or last, got {epoch!r}")
    if agg not in ("mean", "median"):
        raise SpecError(f"--agg: must be mean or median, got {agg!r}")
    from addrop_cli.report import report_command

    code = report_command(
        paths,
        epoch=epoch,  # type: ignore[arg-type]
        agg=agg,  # type: ignore[arg-type]
        reference=reference,
        formats=formats or ["terminal"],
        out=out,
        plots=plots,
        raw=raw,
        console=console,
    )
    raise typer.Exit(code)


@app.command()
def predict(
    args: Annotated[list[str], typer.Argument(help="SPEC.yaml, then key=value overrides.")],
    out: Annotated[Path | None, typer.Option(help="Folder for the leaderboard files.")] = None,
    variant: Annotated[
        str | None, typer.Option(help="Method variant whose runs predict (default: best).")
    ] = None,
    results: ResultsOpt = None,
) -> None:
    """Write GLUE leaderboard files (SST-2.tsv, MNLI-m.tsv, AX.tsv, ...) from stored checkpoints.

    [bold]Examples[/bold]

      addrop predict experiments/glue.yaml train.save_checkpoint=true --out submission/

      addrop predict experiments/smoke.yaml train.save_checkpoint=true --results /tmp/results
    """
    from addrop_cli.execution.predict import predict_command
    from addrop_cli.spec.load import load_spec

    path, overrides = _one_spec(args)
    spec = load_spec(path, overrides)
    code = predict_command(
        spec, path, out=out, variant=variant, results_root=results, console=console
    )
    raise typer.Exit(code)


@list_app.command("tasks")
def list_tasks() -> None:
    """The GLUE task registry (with sizes when a GLUE folder is set).

    [bold]Examples[/bold]

      addrop list tasks

      ADDROP_GLUE_DIR=../shared/glue_data addrop list tasks
    """
    from addrop_cli.data.tasks import registry_table

    glue_dir = os.environ.get("ADDROP_GLUE_DIR", "").strip()
    folder = Path(glue_dir).expanduser() if glue_dir else None
    if folder is not None and not folder.is_dir():
        err_console.print(
            f"warning: ADDROP_GLUE_DIR={glue_dir}: no such folder, so no row counts; point it at "
            "a GLUE folder (see README, Data) or unset it",
            highlight=False,
        )
        folder = None
    console.print(registry_table(folder) if folder else registry_table(False))


@list_app.command("methods")
def list_methods() -> None:
    """The methods a spec can use, with their parameters and defaults.

    [bold]Examples[/bold]

      addrop list methods
    """
    from addrop_cli.methods.registry import METHODS

    table = Table(title="methods")
    table.add_column("method")
    table.add_column("parameters (default)")
    table.add_column("what it does")
    for name, info in METHODS.items():
        fields = ", ".join(
            f"{key}={field.get_default(call_default_factory=True)!r}"
            for key, field in info.params.model_fields.items()
            if key != "method"
        )
        table.add_row(name, fields or "-", info.summary)
    console.print(table)


@list_app.command("models")
def list_models() -> None:
    """The encoder families AD-DROP can hook, and how each one's attention is hooked.

    [bold]Examples[/bold]

      addrop list models
    """
    from addrop_cli.models.families import FAMILIES

    table = Table(
        title="model families (the model_type in the model's config.json)",
        caption="attention-function: transformers' attention registry; untargeted layers keep "
        "fused SDPA. probability-tap: the softmax output is tapped in target layers only.",
    )
    table.add_column("family")
    table.add_column("model_type")
    table.add_column("hook")
    table.add_column("notes")
    for family in FAMILIES.values():
        table.add_row(family.label, family.model_type, family.hook, family.note or "-")
    console.print(table)


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point: turn AddropErrors into one-line messages and exit codes.

    SIGTERM (a supervisor, a scheduler, `kill`) stops like Ctrl-C: runs in progress are left to
    restart, the summary is printed, exit code 130.
    """
    try:
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    except ValueError:  # not the main thread (a library caller): leave signals alone
        previous = None
    try:
        _main()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main() -> None:
    try:
        # without standalone mode click returns typer.Exit's code instead of raising it
        result = app(standalone_mode=False)
        sys.exit(result if isinstance(result, int) else 0)
    except AddropError as err:
        if _state["debug"]:
            raise
        for line in err.problems:
            err_console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # click's usage errors and friends
        usage_errors, aborts = _click_exception_types()
        if isinstance(exc, usage_errors):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        if isinstance(exc, aborts):
            sys.exit(130)
        raise


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """click's ClickException and Abort, and the copies in the click that typer vendors
    (typer >= 0.2x raises ``typer._click`` exceptions, which are not click's)."""
    import importlib

    modules = []
    for name in ("click.exceptions", "typer._click.exceptions"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue

    def found(name: str) -> tuple[type, ...]:
        return tuple(getattr(m, name) for m in modules if isinstance(getattr(m, name, None), type))

    return found("ClickException"), found("Abort")
