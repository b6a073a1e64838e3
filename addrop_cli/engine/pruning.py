"""A run stopped on purpose: a logger's verdict that the run cannot win (a search's pruner).

The training loop knows nothing of searches: a required logger (``Loggers(required=...)``) may
raise :class:`RunPruned` from ``on_eval``; it leaves the loop like any error and the caller
stores the run as PRUNED (never retried, never a result) instead of FAILED.
"""

from __future__ import annotations


class RunPruned(Exception):
    """Stop this run after the evaluation of ``epoch`` (counted from 1): it is not worth
    finishing."""

    def __init__(self, epoch: int, reason: str) -> None:
        super().__init__(reason)
        self.epoch = epoch
        self.reason = reason

    @property
    def epochs_run(self) -> int:
        return self.epoch
