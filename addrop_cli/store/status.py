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
worker or job vanished; recorded as failed with the reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

FinalStatus = Literal["done", "failed", "pruned"]
RunStatus = Literal[FinalStatus, "unfinished", "corrupt", "absent"]
AttemptStatus = Literal[FinalStatus, "skipped", "busy", "lost"]
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


def marked_status(run_dir: Path) -> RunStatus:
    """A run folder's state from its markers alone: what the runner acts on. ``corrupt`` (a DONE
    run whose metrics.json cannot be read) needs the metrics read: ``store.reader.run_status``."""
    for marker, status in MARKERS:
        if (run_dir / marker).exists():
            return status
    return "unfinished" if run_dir.exists() else "absent"
