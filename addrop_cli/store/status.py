"""The one vocabulary of run states, and how one attempt at a run can end.

A run's state is what its folder says, to every reader (the runner deciding what to do, the
report deciding what counts, ``addrop status``):

- ``absent``: never started (no folder).
- ``unfinished``: started, no marker: running now, or killed (a training state resumes it).
- ``done``: the DONE marker; its metrics are a result.
- ``corrupt``: DONE, but metrics.json cannot be read: not a result.
- ``failed``: the FAILED marker, with its reason; retried by the next ``addrop run``.
- ``pruned``: the PRUNED marker: a search's pruner stopped it; never retried, never a result.

An attempt (one back-end carrying out one run in this invocation) ends as one of the final
states, or ``skipped`` (already done), ``busy`` (another process holds the run) or ``lost`` (its
worker or job vanished; recorded as failed with the reason). What follows the attempt (the store's
logger, the display, train.log, a trial judge, a tracker) is told how its training ended: a final
state, or ``interrupted`` (Ctrl-C, SIGTERM, a store that cannot be written: the run stays
unfinished and resumes).

Whether a run is final (:func:`is_final`), what an invocation counts as a run's outcome
(:func:`settled`) and whether it attempts a run (:func:`needs_attempt`) are decided here only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

FinalStatus = Literal["done", "failed", "pruned"]
RunStatus = Literal[FinalStatus, "unfinished", "corrupt", "absent"]
AttemptStatus = Literal[FinalStatus, "skipped", "busy", "lost"]
EndStatus = Literal[FinalStatus, "interrupted"]
"""How one attempt's training ended, as what follows it hears (``RunLogger.on_end``)."""
LiveStatus = Literal["running", "queued"]
"""What ``addrop status`` sees beyond the store: an ``unfinished`` or ``absent`` run whose lock
is held on this machine or whose Slurm job runs (``running``), or whose job waits (``queued``)."""

STATES: tuple[str, ...] = (
    "queued",
    "running",
    "done",
    "corrupt",
    "failed",
    "pruned",
    "unfinished",
    "absent",
)
"""Every word a reader may say of a run, in the order ``addrop status`` counts them."""

MARKERS: tuple[tuple[str, FinalStatus], ...] = (
    ("DONE", "done"),
    ("FAILED", "failed"),
    ("PRUNED", "pruned"),
)
"""The marker files, in the order they are read (a DONE run is done whatever else lies there)."""


def is_final(status: str) -> bool:
    """A marker ends the run: done, failed or pruned (not unfinished, absent or running)."""
    return status in get_args(FinalStatus)


def settled(status: RunStatus, *, failed_lately: bool = False) -> FinalStatus | None:
    """The outcome an invocation counts for a run it handed out: ``done`` or ``pruned`` (never
    attempted again), ``failed`` only when it failed after the invocation began
    (``failed_lately``: an earlier failure is what this invocation retries); None: no outcome yet.
    The runner reads markers (``marked_status``), never ``corrupt``."""
    if status == "done" or status == "pruned":
        return status
    return "failed" if status == "failed" and failed_lately else None


def needs_attempt(
    status: RunStatus, *, retry_failed: bool = True, failed_lately: bool = False
) -> bool:
    """Whether `addrop run` attempts a run in ``status``: not when it is :func:`settled`, nor
    when it failed and ``retry_failed`` is off (``--no-retry-failed``)."""
    if status == "failed" and not retry_failed:
        return False
    return settled(status, failed_lately=failed_lately) is None


def marked_status(run_dir: Path) -> RunStatus:
    """A run folder's state from its markers alone: what the runner acts on. ``corrupt`` (a DONE
    run whose metrics.json cannot be read) needs the metrics read: ``store.reader.run_status``."""
    for marker, status in MARKERS:
        if (run_dir / marker).exists():
            return status
    return "unfinished" if run_dir.exists() else "absent"
