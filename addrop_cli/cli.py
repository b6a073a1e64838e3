"""The ``addrop`` command line: parses arguments, calls the package, prints. No ML code here.

Every user error is an :class:`AddropError`: printed as one line per problem, exit code 2 (1 for
failed runs); a traceback only with ``--debug``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from addrop_cli.errors import AddropError, SpecError

app = typer.Typer(
    name="addrop",
    help="Fine-tune language models on GLUE with AD-DROP and the methods it is compared with.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
list_app = typer.Typer(help="List what addrop knows: GLUE tasks, methods.", no_args_is_help=True)
app.add_typer(list_app, name="list")

# Off a terminal (pipes, CI logs, files) Rich would wrap tables at 80 columns: use a width that
# fits the report tables unless the user set COLUMNS.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(soft_wrap=True, width=_WIDTH)
err_console = Console(stderr=True, soft_wrap=True)
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


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def run(
    args: Annotated[list[str], typer.Argument(help="SPEC.yaml, then key=value overrides.")],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the resolved spec and run matrix; train nothing."),
    ] = False,
    results: Annotated[
        Path | None, typer.Option(help="Results folder (default: the spec's results_dir).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="One line per epoch instead of live progress bars.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="Run again the runs that failed before.")
    ] = True,
) -> None:
    """Run an experiment: every task x method variant x seed not yet in the results store.

    Finished runs are skipped; interrupted ones start again cleanly.

    [bold]Examples[/bold]

      addrop run experiments/smoke.yaml

      addrop run experiments/quickstart.yaml seeds=[1] train.epochs=2

      addrop run experiments/glue.yaml --dry-run
    """
    from addrop_cli.executors import run_experiment
    from addrop_cli.spec import load_spec

    path, overrides = _one_spec(args)
    if device:
        overrides.append(f"train.device={device}")
    spec = load_spec(path, overrides)
    code = run_experiment(
        spec,
        spec_path=path,
        results_root=results,
        dry_run=dry_run,
        plain=plain or not console.is_terminal,
        retry_failed=retry_failed,
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
) -> None:
    """Check spec files: keys, types, ranges, task and method names, data files, model layers.

    Every problem is listed, one line each; exit code 2 if there is any.

    [bold]Examples[/bold]

      addrop validate experiments/*.yaml

      addrop validate experiments/sst2.yaml methods.addrop.p=0.5
    """
    from addrop_cli.preflight import preflight
    from addrop_cli.spec import load_spec

    specs, overrides = _split_args(args)
    if not specs:
        raise SpecError("give at least one spec file, e.g. addrop validate experiments/*.yaml")
    problems: list[str] = []
    for path in specs:
        try:
            spec = load_spec(path, overrides)
            found = preflight(spec, path.parent.resolve()) if deep else []
        except AddropError as err:
            found = err.problems
        problems += found
        if not found:
            console.print(f"[green]ok[/green] {path}", highlight=False)
    if problems:
        raise SpecError(*problems)


@app.command()
def sweep(
    args: Annotated[list[str], typer.Argument(help="SPEC.yaml, then key=value overrides.")],
) -> None:
    """Search hyperparameters (grid or random) with an honest two-stage selection protocol.

    [bold]Examples[/bold]

      addrop sweep experiments/pq-sweep.yaml
    """
    err_console.print(
        "addrop sweep: not built yet (tracked in the sweep issue); "
        "meanwhile run each configuration with `addrop run SPEC methods.addrop.p=...`"
    )
    raise typer.Exit(1)


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
) -> None:
    """Turn stored runs into comparison tables, statistics and plots.

    [bold]Examples[/bold]

      addrop report results/smoke

      addrop report results/quickstart --format markdown --format csv --out report/

      addrop report results/glue-bert results/glue-roberta --epoch last
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
) -> None:
    """Write GLUE leaderboard files (SST-2.tsv, MNLI-m.tsv, AX.tsv, ...) from stored checkpoints.

    [bold]Examples[/bold]

      addrop predict experiments/glue.yaml train.save_checkpoint=true --out submission/
    """
    from addrop_cli.predict import predict_command
    from addrop_cli.spec import load_spec

    path, overrides = _one_spec(args)
    spec = load_spec(path, overrides)
    raise typer.Exit(predict_command(spec, path, out=out, variant=variant, console=console))


@list_app.command("tasks")
def list_tasks() -> None:
    """The GLUE task registry (with sizes when a GLUE folder is set).

    [bold]Examples[/bold]

      addrop list tasks

      ADDROP_GLUE_DIR=../shared/glue_data addrop list tasks
    """
    from addrop_cli.tasks import registry_table

    console.print(registry_table())


@list_app.command("methods")
def list_methods() -> None:
    """The methods a spec can use, with their parameters and defaults.

    [bold]Examples[/bold]

      addrop list methods
    """
    from addrop_cli.spec import METHOD_PARAMS

    table = Table(title="methods")
    table.add_column("method")
    table.add_column("parameters (default)")
    table.add_column("what it does")
    for name, model in METHOD_PARAMS.items():
        fields = ", ".join(
            f"{key}={field.get_default(call_default_factory=True)!r}"
            for key, field in model.model_fields.items()
            if key != "method"
        )
        table.add_row(name, fields or "-", (model.__doc__ or "").strip().splitlines()[0])
    console.print(table)


def main() -> None:
    """Console-script entry point: turn AddropErrors into one-line messages and exit codes."""
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
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
