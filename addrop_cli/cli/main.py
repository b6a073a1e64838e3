"""The console-script entry point: every AddropError becomes one line per problem and an exit
code (``errors.EXIT_*``: 2 for bad input, 1 for failed runs); a traceback only with ``--debug``."""

from __future__ import annotations

import signal
import sys
import warnings
from typing import Any

import typer

# the command modules register their commands on the app when imported
from addrop_cli.cli import experiments, listing, results  # noqa: F401
from addrop_cli.cli.app import app, err_console, list_app, state
from addrop_cli.cli.terminal import reflow_help
from addrop_cli.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, AddropError
from addrop_cli.store.reader import StoreWarning

reflow_help(app, list_app)  # a docstring's line breaks are not the terminal's


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


def _show_store_warning(show: Any) -> Any:
    """``warnings.showwarning`` that prints a damaged store file as the report does: one line
    (``warning: <file>: ...; <fix>``), never Python's ``file:line: StoreWarning:`` and source."""

    def showwarning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, StoreWarning):
            err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
        else:
            show(message, category, *args, **kwargs)

    return showwarning


def _main() -> None:
    with warnings.catch_warnings():  # restores showwarning and the filters (in-process callers)
        warnings.simplefilter("default", StoreWarning)  # each damaged file once per command
        warnings.showwarning = _show_store_warning(warnings.showwarning)
        _run_app()


def _run_app() -> None:
    try:
        # without standalone mode click returns typer.Exit's code instead of raising it
        result = app(standalone_mode=False)
        sys.exit(result if isinstance(result, int) else EXIT_OK)
    except AddropError as err:
        if state["debug"]:
            raise
        for line in err.problems:
            err_console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # click's usage errors and friends
        usage_errors, aborts = _click_exception_types()
        if isinstance(exc, usage_errors):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(EXIT_USAGE)
        if isinstance(exc, aborts):
            sys.exit(EXIT_INTERRUPTED)
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
