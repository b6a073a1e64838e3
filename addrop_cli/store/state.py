"""A run's training state on disk: written beside, swapped in, validated before it is trusted.

Layout inside the run folder::

    state/                 the latest complete state
      state.pt             torch.save of the payload (model, optimiser, RNGs, position, ...)
      manifest.json        {"format", "bytes", "crc32", "step", "epoch", "written"}, written last
    .state.previous/       the state before it, only for the moment of the swap
    .state.<pid>.tmp/      a state being written (never read; removed when found)

A state is trusted only when its manifest exists and the payload's size and CRC-32 match it; a
state that fails the check is discarded with a warning and the previous one (or a clean start)
is used. Writing goes: temporary folder (fsynced) -> current moves to ``.state.previous`` ->
temporary becomes ``state`` -> previous removed, so a kill at any instant leaves at least one
complete state, or none if none was ever completed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from addrop_cli.errors import one_line
from addrop_cli.store.atomic import fsync_dir, now_iso, signals_deferred, writing

log = logging.getLogger(__name__)

STATE_FORMAT = 2
"""Bumped when the payload's layout changes; a state of another format is discarded."""
_CHUNK = 1 << 22


class _CrcWriter:
    """A binary file that keeps the running CRC-32 and size of what is written through it."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.crc, self.size = f, 0, 0

    def write(self, data: bytes) -> int:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def _crc_of(path: Path) -> tuple[int, int]:
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return crc, size


@dataclass(frozen=True)
class LoadedState:
    payload: dict[str, Any]
    step: int
    epoch: int


class TrainingStateFiles:
    """The training state of the run folder ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.current = run_dir / "state"
        self.previous = run_dir / ".state.previous"

    def write(self, payload: dict[str, Any], *, step: int, epoch: int) -> int:
        """Write ``payload`` as the new latest state; returns its size in bytes.

        Raises a one-line StoreError (disk full, not writable); the latest complete state is
        kept then, and the half-written one removed.
        """
        import torch

        tmp = self.run_dir / f".state.{os.getpid()}.tmp"
        with writing(self.current), signals_deferred():
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                with open(tmp / "state.pt", "wb") as f:
                    writer = _CrcWriter(f)
                    torch.save(payload, writer)  # type: ignore[arg-type]
                    f.flush()
                    os.fsync(f.fileno())
                manifest = {
                    "format": STATE_FORMAT,
                    "bytes": writer.size,
                    "crc32": writer.crc,
                    "step": step,
                    "epoch": epoch,
                    "written": now_iso(),
                }
                with open(tmp / "manifest.json", "w", encoding="utf-8") as f:
                    f.write(json.dumps(manifest) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                fsync_dir(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._swap_in(tmp)
        return writer.size

    def _swap_in(self, tmp: Path) -> None:
        shutil.rmtree(self.previous, ignore_errors=True)
        if self.current.exists():
            os.replace(self.current, self.previous)
        os.replace(tmp, self.current)
        fsync_dir(self.run_dir)
        shutil.rmtree(self.previous, ignore_errors=True)

    def load(self) -> LoadedState | None:
        """The latest valid state, or None; invalid ones are discarded with a warning."""
        for stray in self.run_dir.glob(".state.*.tmp"):
            shutil.rmtree(stray, ignore_errors=True)  # a write that a kill interrupted
        for folder in (self.current, self.previous):
            if not folder.exists():
                continue
            try:
                return self._read(folder)
            except Exception as err:  # noqa: BLE001 - any unreadable state is discarded
                log.warning(
                    "%s: training state discarded (%s); falling back to %s",
                    folder,
                    one_line(err, limit=200),
                    "the previous state"
                    if folder == self.current and self.previous.exists()
                    else "a clean start",
                )
                shutil.rmtree(folder, ignore_errors=True)
        return None

    def valid_manifest(self) -> dict[str, Any] | None:
        """The manifest of the state :meth:`load` would resume from (format, size and CRC
        checked, without unpickling); None when the run would start from step 0."""
        for folder in (self.current, self.previous):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                return self._checked_manifest(folder)
        return None

    @staticmethod
    def _checked_manifest(folder: Path) -> dict[str, Any]:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != STATE_FORMAT:
            raise ValueError(f"state format {manifest.get('format')!r}, expected {STATE_FORMAT}")
        crc, size = _crc_of(folder / "state.pt")
        if size != manifest["bytes"] or crc != manifest["crc32"]:
            raise ValueError(f"state.pt is {size} bytes with CRC {crc}, the manifest says "
                             f"{manifest['bytes']} bytes with CRC {manifest['crc32']}")  # fmt: skip
        return manifest

    @classmethod
    def _read(cls, folder: Path) -> LoadedState:
        import torch

        manifest = cls._checked_manifest(folder)
        payload = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
        return LoadedState(payload, int(manifest["step"]), int(manifest["epoch"]))

    def discard(self) -> None:
        """Remove every state (a finished run, or --restart)."""
        with writing(self.current):
            for folder in (self.current, self.previous, *self.run_dir.glob(".state.*.tmp")):
                with contextlib.suppress(FileNotFoundError):
                    shutil.rmtree(folder)

    def exists(self) -> bool:
        return self.manifest() is not None

    def manifest(self) -> dict[str, Any] | None:
        """The latest state's manifest (step, epoch, size), unchecked; None without one."""
        for folder in (self.current, self.previous):
            with contextlib.suppress(OSError, ValueError):
                return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        return None
