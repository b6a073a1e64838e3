"""Errors a user can cause, and how the CLI reports them.

Every user-facing problem is an :class:`AddropError`. The CLI prints ``str(err)`` (one line per
problem) and exits with ``err.exit_code``; a traceback appears only with ``--debug``. The exit
codes and :func:`one_line`, an error as a line inside such a message, are defined here once.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNS_FAILED = 1
"""Some runs failed or were lost (not the user's input): :class:`RunError`, a run's summary."""
EXIT_USAGE = 2
"""Bad input (a spec, an option, a file): every other :class:`AddropError`, click's usage errors."""
EXIT_INTERRUPTED = 130
"""Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it): runs in progress resume next time."""


def one_line(
    err: BaseException, *, limit: int | None = None, typed: bool = False, whole: bool = False
) -> str:
    """An error as one line inside a message of ours: the first line of its message (at most
    ``limit`` characters), or its type's name when it says nothing; ``typed``: ``Type: line``;
    ``whole``: every line of the message, joined by spaces (a YAML error's second line says
    where)."""
    lines = [" ".join(str(err).split())] if whole else str(err).strip().splitlines()
    if not lines or not lines[0]:
        return type(err).__name__
    first = lines[0][:limit] if limit is not None else lines[0]
    return f"{type(err).__name__}: {first}" if typed else first


def first_line(text: str) -> str:
    """The first line of a recorded reason (a FAILED marker's text); "" for none."""
    return text.partition("\n")[0]


class AddropError(Exception):
    """Base class: a problem the user can fix. ``problems`` holds one line per problem."""

    exit_code = EXIT_USAGE

    def __init__(self, *problems: str) -> None:
        self.problems = [p for p in problems if p]
        super().__init__("\n".join(self.problems))


class SpecError(AddropError):
    """The experiment spec or a command-line override is invalid."""


class DataError(AddropError):
    """A data file, folder or column is missing or malformed."""


class ModelError(AddropError):
    """The model cannot be loaded, or a method cannot be applied to it."""


class StoreError(AddropError):
    """The results store is missing, unwritable or holds something it cannot read."""


class RunError(AddropError):
    """One or more training runs failed (not the user's input): exit code 1."""

    exit_code = EXIT_RUNS_FAILED


class UsageError(AddropError, TypeError, ValueError):
    """The library API was called with something it cannot use (a TypeError and a ValueError,
    so a script that catches either keeps working)."""
