"""Named fault points: make a real run fail where a test says, without timing races.

One home for every fault the tests inject into the real code (in this process, or in the
`addrop` processes, pool workers and Slurm jobs a test starts). Points, by name:

``slow_steps: S``
    every optimiser step takes S seconds more (a run lasts long enough to be killed in).
``kill_at: "VARIANT:STEP"``
    SIGKILL right after optimiser step STEP of a fresh (not resumed) run of VARIANT: a real
    kill between two training-state writes; the resumed run does not die again.
``oom_at: "VARIANT:SEED:STEP"``
    optimiser step STEP of that run raises the out-of-memory error of a full GPU (``*`` matches
    any seed or step).
``fail_at: "VARIANT:SEED:STEP"``
    the same, with an error addrop does not know (a bug in a user's method, say).
``disk_full: NAME``
    the disk fills up at the first write of the file NAME (``state.pt``, ``metrics.json``,
    ``report.md``...): that write and every later one fail with ENOSPC, as the store fsyncs
    every file before it counts (``*``: full from the start).
``slow_writes: S``
    text files are written in two halves with a pause of up to S seconds between, and every
    fsync pauses too (random kills then land inside writes).
``hold_while: PATH``
    every optimiser step waits while the file PATH exists: a test creates it to hold a run in
    the middle of training for as long as it needs, and deletes it to let the run finish.

In this process::

    def test_x(faults):
        faults(disk_full="metrics.json")   # patched until the test ends

In a process a test starts: ``subprocess.run(command, env=fault_env(kill_at="baseline:42"))``.
The variable ``ADDROP_FAULTS`` carries the points (JSON) and ``tests/inject`` on PYTHONPATH
installs them through its ``sitecustomize`` at interpreter start, so they reach grandchildren.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FAULTS_ENV = "ADDROP_FAULTS"
INJECT_DIR = Path(__file__).resolve().parent / "inject"
POINTS = ("slow_steps", "kill_at", "oom_at", "fail_at", "disk_full", "slow_writes", "hold_while")

Patch = Callable[[Any, str, Any], None]


class InjectedFault(RuntimeError):
    """The error ``fail_at`` raises: one addrop has no special handling for."""


def fault_env(base: dict[str, str] | None = None, **points: Any) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``points`` installed at start."""
    env = dict(os.environ if base is None else base)
    if not points:
        return env
    _check(points)
    env[FAULTS_ENV] = json.dumps(points)
    env["PYTHONPATH"] = os.pathsep.join([str(INJECT_DIR), env.get("PYTHONPATH", "")])
    return env


def install_from_env() -> None:
    """Install the points of ``ADDROP_FAULTS`` (the inject folder's sitecustomize calls this)."""
    if os.environ.get(FAULTS_ENV):
        install(json.loads(os.environ[FAULTS_ENV]), setattr)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``faults(**points)``: install ``points`` here and in every process started afterwards."""

    def inject(**points: Any) -> None:
        for name, value in fault_env(**points).items():
            if os.environ.get(name) != value:
                monkeypatch.setenv(name, value)
        install(points, monkeypatch.setattr)

    yield inject


def install(points: dict[str, Any], patch: Patch) -> None:
    """Patch the real code for ``points``; ``patch`` is setattr or monkeypatch.setattr."""
    _check(points)
    if {"slow_steps", "kill_at", "oom_at", "fail_at", "hold_while"} & points.keys():
        _patch_steps(points, patch)
    if "slow_writes" in points:
        _patch_slow_writes(float(points["slow_writes"]), patch)
    if "disk_full" in points:
        patch(os, "fsync", _DiskFull(points["disk_full"], os.fsync))


def _check(points: dict[str, Any]) -> None:
    unknown = set(points) - set(POINTS)
    if unknown:
        raise ValueError(f"unknown fault points {sorted(unknown)}; known: {', '.join(POINTS)}")


def _matches(selector: str, variant: str, seed: int, step: int) -> bool:
    want = selector.split(":")
    return all(w in ("*", str(got)) for w, got in zip(want, (variant, seed, step), strict=True))


def _patch_steps(points: dict[str, Any], patch: Patch) -> None:
    import torch

    from addrop_cli.engine import loop

    step, load = loop.RunLoop._optimizer_step, loop.RunLoop.load_state_dict

    def load_state_dict(self: loop.RunLoop, payload: dict) -> None:
        self._fault_resumed = True  # type: ignore[attr-defined]
        load(self, payload)

    def faulty_step(self: loop.RunLoop) -> None:
        run, now = self.s.run, self.state.global_step + 1
        if "oom_at" in points and _matches(points["oom_at"], run.variant, run.seed, now):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if "fail_at" in points and _matches(points["fail_at"], run.variant, run.seed, now):
            raise InjectedFault(f"injected fault at step {now}")
        while "hold_while" in points and os.path.exists(points["hold_while"]):
            time.sleep(0.05)
        step(self)
        time.sleep(float(points.get("slow_steps", 0)))
        fresh = not getattr(self, "_fault_resumed", False)
        if fresh and "kill_at" in points and points["kill_at"] == f"{run.variant}:{now}":
            os.kill(os.getpid(), signal.SIGKILL)

    patch(loop.RunLoop, "load_state_dict", load_state_dict)
    patch(loop.RunLoop, "_optimizer_step", faulty_step)


class _DiskFull:
    """``os.fsync`` failing with ENOSPC from the first write of ``target`` on."""

    def __init__(self, target: str, real_fsync: Callable[[int], None]) -> None:
        self.target, self.real_fsync, self.full = target, real_fsync, target == "*"

    def __call__(self, fd: int) -> None:
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if name == self.target or name.startswith(f".{self.target}."):
            self.full = True
        if self.full and not os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real_fsync(fd)


class _TornWriter:
    """A text file whose writes arrive in two halves, with a pause between."""

    def __init__(self, f: Any, pause: Callable[[], None]) -> None:
        self._f, self._pause = f, pause

    def write(self, text: str) -> int:
        half = len(text) // 2
        self._f.write(text[:half])
        self._f.flush()
        self._pause()
        return self._f.write(text[half:])

    def __enter__(self) -> _TornWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _patch_slow_writes(max_pause: float, patch: Patch) -> None:
    fdopen, fsync, rng = os.fdopen, os.fsync, random.Random()

    def pause() -> None:
        time.sleep(rng.uniform(0.0, max_pause))

    def slow_fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = fdopen(fd, mode, *args, **kwargs)
        return _TornWriter(f, pause) if "w" in mode and "b" not in mode else f

    def slow_fsync(fd: int) -> None:
        pause()
        fsync(fd)

    patch(os, "fdopen", slow_fdopen)
    patch(os, "fsync", slow_fsync)
