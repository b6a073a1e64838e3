"""What a back-end is to its callers: the :class:`Backend` protocol, and the registered ones.

Callers ask a back-end, never test its name: how many runs it carries out at once (``slots``),
where a search keeps its studies (``journal``), which of a store's runs it holds right now
(``live_runs``, for ``addrop status``) and what it cannot do with a spec (``spec_problems``, for
the preflight). A back-end is one module with one class and one line in
:data:`addrop_cli.spec.backends.BACKENDS` (whose names the schema's ``executor.backend`` takes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, cast

from rich.console import Console

from addrop_cli.execution.attempt.context import RunContext, Summary
from addrop_cli.spec.backends import BACKENDS
from addrop_cli.spec.matrix import RunSpec
from addrop_cli.spec.schema import ExperimentSpec
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.store.status import LiveStatus


@dataclass(frozen=True)
class LiveRun:
    """A run a back-end has taken: what it called it, and where it is while it holds it."""

    label: str
    where: str = ""
    """Where the run is while the back-end holds it ("Slurm job 12_3"); "" once it left."""
    state: LiveStatus | None = None
    """``running`` or ``queued``; None while held in another state (starting, completing)."""


class Backend(Protocol):
    """Carries out runs; records each outcome in ``summary`` and returns when all have one.

    ``KeyboardInterrupt`` propagates to the caller once the back-end has stopped cleanly.
    """

    journal: ClassVar[bool]
    """A search's studies in a journal file (safe on a shared filesystem, from many hosts)
    rather than a SQLite database (one machine)."""

    @classmethod
    def from_spec(
        cls, spec: ExperimentSpec, base_dir: Path, *, plain: bool, console: Console | None
    ) -> Backend:
        """The back-end ``spec.executor`` describes (a plan note may go to ``console``)."""
        ...

    @staticmethod
    def spec_problems(spec: ExperimentSpec, source: str) -> list[str]:
        """One line per executor setting this back-end cannot honour (the preflight's)."""
        ...

    @staticmethod
    def live_runs(store: ExperimentStore) -> dict[str, LiveRun]:
        """The store's runs this back-end has taken, by run id (``addrop status``)."""
        ...

    @property
    def slots(self) -> int:
        """How many runs it carries out at once."""
        ...

    def execute(
        self, runs: Sequence[RunSpec], context: RunContext, summary: Summary, console: Console
    ) -> None: ...


class Quiet:
    """The defaults of a back-end that runs on this machine: a SQLite study, no executor setting
    it refuses, no run it holds that the store's locks would not show."""

    journal: ClassVar[bool] = False

    @staticmethod
    def spec_problems(spec: ExperimentSpec, source: str) -> list[str]:  # noqa: ARG004
        return []

    @staticmethod
    def live_runs(store: ExperimentStore) -> dict[str, LiveRun]:  # noqa: ARG004
        return {}


def backend_type(name: str) -> type[Backend]:
    """The class of the back-end registered as ``name``."""
    return cast("type[Backend]", BACKENDS[name].load())


def live_runs(store: ExperimentStore) -> dict[str, LiveRun]:
    """The store's runs that any registered back-end holds or has held, by run id."""
    found: dict[str, LiveRun] = {}
    for name in BACKENDS:
        found.update(backend_type(name).live_runs(store))
    return found
