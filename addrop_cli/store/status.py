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

from typing import Literal

FinalStatus = Literal["done", "failed", "pruned"]
RunStatus = Literal[FinalStatus, "unfinished", "corrupt", "absent"]
AttemptStatus = Literal[FinalStatus, "skipped", "busy", "lost"]
