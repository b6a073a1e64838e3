"""`addrop` with slowed file writes: a launcher for the fault-injection test only.

Random SIGKILLs rarely land inside a file write, which takes microseconds. This launcher runs
the real CLI after wrapping two OS calls the store uses, so writes take milliseconds:

* ``os.fdopen`` text files write their content in two halves with a pause between (a kill in
  the pause leaves a half-written temporary file);
* ``os.fsync`` pauses before syncing (a kill leaves a complete temporary file not yet renamed,
  or an appended line not yet synced).

Nothing else changes: the code under test is the real store and executor.
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any

_fdopen, _fsync = os.fdopen, os.fsync
_rng = random.Random()
_MAX_PAUSE = float(os.environ.get("ADDROP_TEST_MAX_PAUSE", "0.03"))
"""Longest pause in seconds (the concurrency tests make one process much slower than another)."""


def _pause() -> None:
    time.sleep(_rng.uniform(0.0, _MAX_PAUSE))


class _TornWriter:
    """A text file whose writes arrive in two halves."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def write(self, text: str) -> int:
        half = len(text) // 2
        self._f.write(text[:half])
        self._f.flush()
        _pause()
        return self._f.write(text[half:])

    def __enter__(self) -> _TornWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _slow_fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    f = _fdopen(fd, mode, *args, **kwargs)
    return _TornWriter(f) if "w" in mode and "b" not in mode else f


def _slow_fsync(fd: int) -> None:
    _pause()
    _fsync(fd)


if __name__ == "__main__":
    os.fdopen = _slow_fdopen  # type: ignore[assignment]
    os.fsync = _slow_fsync
    from addrop_cli.cli import main

    sys.argv[0] = "addrop"
    main()
