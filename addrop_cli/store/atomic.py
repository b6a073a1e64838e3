"""Atomic writes and one-line store errors: a reader sees the old file or the new one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from filelock import Timeout

from addrop_cli.errors import StoreError

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def store_error(path: Path, err: OSError, option: str = "--results DIR") -> StoreError:
    """The one-line StoreError for a failed write: what happened to which file, and the fix
    (``option`` names the command-line option that picks another folder)."""
    why = err.strerror or str(err) or type(err).__name__
    if err.errno in _DISK_FULL:
        return StoreError(
            f"{path}: disk full ({why}); free space or choose another folder with {option}, "
            "then run the same command again (finished runs are kept)"
        )
    if err.errno in _NOT_WRITABLE:
        return StoreError(
            f"{path}: cannot write results ({why}); make the folder writable "
            f"or choose another with {option}"
        )
    return StoreError(
        f"{path}: cannot write results ({why}); check the path, "
        f"or choose another folder with {option}"
    )


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into a one-line StoreError."""
    try:
        yield
    except Timeout:  # a busy lock (a TimeoutError, hence an OSError) is not a write failure
        raise
    except OSError as err:
        raise store_error(path, err) from err


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", *, permissions: int | None = None) -> Iterator[IO]:
    """Yield a temporary file beside ``path``; when the block ends without error it is flushed,
    fsynced and renamed over ``path``, so readers see the old file or the new one, never half.
    On error the temporary file is removed and the error goes on (OSErrors as they are).

    ``permissions``: chmod before the rename; by default the mode any new file gets under the
    process's umask (mkstemp alone makes 0600: a colleague could read config.json, not the
    weights beside it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode() if permissions is None else permissions)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _new_file_mode() -> int:
    """0666 less the umask, as open() would create a file. The umask is read from
    /proc/self/status where Linux gives it, since setting it to read it back races with threads
    creating files."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc (macOS): read it the only other way there is
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_file`).

    Raises :class:`StoreError` when the write fails; the temporary file is removed then.
    """
    with writing(path), atomic_file(path, "w") as f:
        f.write(text)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def append_line(path: Path, line: str, *, sync: bool = True) -> None:
    """Append one line and fsync it (not atomic: readers skip a torn last line). Without
    ``sync`` the line survives a killed process but not a machine that goes down."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            if sync:
                f.flush()
                os.fsync(f.fileno())


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``path``; on success it replaces ``path`` whole.

    A failed write (one-line StoreError for OSErrors) removes the temporary folder and leaves
    ``path`` as it was.
    """
    import shutil

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            yield tmp
            mode = _new_file_mode()  # safetensors writes its weights 0600 whatever the umask
            for name in os.listdir(tmp):
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
                os.chmod(tmp / name, mode)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    fsync_dir(path.parent)


# Signals whose Python handler may raise (KeyboardInterrupt, submitit's SystemExit on a Slurm
# time-out) or resubmit the job: one landing inside torch.save's C++ writer corrupts the zip
# stream and surfaces as "unexpected pos", so it waits until the write is complete.
_DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold the signals above until the block ends, then deliver each one received, once, to
    the handler that was installed before. Outside the main thread (where Python cannot change
    handlers, nor runs them) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    # a handler installed outside Python (getsignal gives None) cannot be put back: left alone
    previous = {sig: h for sig in _DEFERRED_SIGNALS if (h := signal.getsignal(sig)) is not None}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)
