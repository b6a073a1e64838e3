"""The ``addrop`` Typer application, its consoles and its global options (--debug, --version).

The commands register themselves on :data:`app` in their own modules (experiments, results,
listing); :mod:`addrop_cli.cli.main` is the console-script entry point.
"""

from __future__ import annotations

from typing import Annotated

import typer

from addrop_cli.cli.terminal import flags_without_metavar, make_consoles

_HELP = {"help_option_names": ["-h", "--help"]}

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
# set by the --debug option; read where errors are turned into one-line messages
state = {"debug": False}


def _version(show: bool) -> None:
    if show:
        from addrop_cli import __version__

        console.print(f"addrop {__version__}")
        raise typer.Exit(0)


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
    state["debug"] = debug
