"""Errors a user can cause, and how the CLI reports them.

Every user-facing problem is an :class:`AddropError`. The CLI prints ``str(err)`` (one line per
problem) and exits with ``err.exit_code``; a traceback appears only with ``--debug``.
"""

from __future__ import annotations


class AddropError(Exception):
    """Base class: a problem the user can fix. ``problems`` holds one line per problem."""

    exit_code = 2

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

    exit_code = 1


class UsageError(AddropError, TypeError, ValueError):
    """The library API was called with something it cannot use (a TypeError and a ValueError,
    so a script that catches either keeps working)."""
