"""A throw-away back-end, registered when pytest loads this file as a plugin
(``pytest -p throwaway_backends``, tests/ on PYTHONPATH): its class and its one registry line are
all it takes, and tests/execution/backends/test_backend_conformance.py runs on it without naming
it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from addrop_cli.spec.backends import BACKENDS, BackendInfo

# the one registry line, before the schema is imported (its executor.backend names are read then)
BACKENDS.register(BackendInfo("throwaway", "throwaway_backends:ThrowawayBackend"))

from addrop_cli.execution.attempt.context import RunContext, Summary, attempt  # noqa: E402
from addrop_cli.execution.attempt.display import PlainProgress  # noqa: E402
from addrop_cli.execution.backends.base import Quiet  # noqa: E402
from addrop_cli.spec.matrix import RunSpec  # noqa: E402
from addrop_cli.spec.schema import ExperimentSpec  # noqa: E402


class ThrowawayBackend(Quiet):
    """Runs last first, in this process: an order no real back-end uses."""

    slots = 1

    @classmethod
    def from_spec(
        cls, spec: ExperimentSpec, base_dir: Path, *, plain: bool, console: Console | None
    ) -> ThrowawayBackend:
        return cls()

    def execute(
        self, runs: Sequence[RunSpec], context: RunContext, summary: Summary, console: Console
    ) -> None:
        progress = PlainProgress(console)
        for index, run in reversed(list(enumerate(runs))):
            outcome = attempt(run, context, progress, index)
            summary.record(run, outcome.status, outcome.reason)
