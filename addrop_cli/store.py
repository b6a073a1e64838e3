"""The results store: one folder per run, atomic files, a DONE marker written last.

Layout (format version 1; the README documents it, reports read it)::

    results/<experiment>/
      experiment.json          {"format": 1, "name": ..., "spec_hashes": [...]}
      spec.yaml                the last resolved spec that ran here
      runs/<run_id>/
        run.json               resolved run config (written first)
        epochs.jsonl           one JSON line per evaluation, appended as training goes
        metrics.json           final metrics, or the failure
        predictions.json       dev predictions at the best epoch
        env.json               versions, git commit, device
        checkpoint/            optional best checkpoint (safetensors)
        DONE | FAILED          written last: without one of them the run is unfinished

A run folder without DONE or FAILED is an interrupted run: it is wiped and started again.
Finished runs are never redone. A lock file per run keeps two processes from running it at once;
the lock is an OS lock, so a dead process's lock is released with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout

from addrop_cli.errors import StoreError

FORMAT_VERSION = 1
RunStatus = Literal["done", "failed", "unfinished", "absent"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunFolder:
    """One run's folder: the writer side of the store format."""

    path: Path

    @property
    def status(self) -> RunStatus:
        if (self.path / "DONE").exists():
            return "done"
        if (self.path / "FAILED").exists():
            return "failed"
        return "unfinished" if self.path.exists() else "absent"

    def failure_reason(self) -> str:
        with contextlib.suppress(OSError):
            return (self.path / "FAILED").read_text(encoding="utf-8").strip()
        return ""

    def start(self, run_config: dict[str, Any]) -> None:
        """Begin (or begin again) a run: wipe what an interrupted attempt left, write run.json."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        atomic_write_json(self.path / "run.json", {"format": FORMAT_VERSION, **run_config})

    def append_epoch(self, record: dict[str, Any]) -> None:
        """Append one evaluation record; readers skip a torn last line (a kill mid-write)."""
        with open(self.path / "epochs.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def finish(self, metrics: dict[str, Any]) -> None:
        """Write the final metrics, then the DONE marker: only now is the run a result."""
        atomic_write_json(self.path / "metrics.json", {"format": FORMAT_VERSION, **metrics})
        atomic_write_text(self.path / "DONE", now_iso() + "\n")

    def fail(self, reason: str, metrics: dict[str, Any]) -> None:
        """Record a failed run with its reason; it is retried by the next `addrop run`."""
        atomic_write_json(
            self.path / "metrics.json",
            {"format": FORMAT_VERSION, **metrics, "status": "failed", "error": reason},
        )
        atomic_write_text(self.path / "FAILED", reason.strip() + "\n")


class ExperimentStore:
    """``results/<experiment>/``: where the runs of one experiment live."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run(self, run_id: str) -> RunFolder:
        return RunFolder(self.runs_dir / run_id)

    def open_for_writing(self, name: str, spec_hash: str, spec_yaml: str) -> None:
        """Create the folder (or check an existing one's format) and record this spec version."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            meta = self.read_meta()
            hashes = list(meta.get("spec_hashes", []))
            if spec_hash not in hashes:
                hashes.append(spec_hash)
            atomic_write_json(
                self.root / "experiment.json",
                {
                    "format": FORMAT_VERSION,
                    "name": name,
                    "spec_hashes": hashes,
                    "updated": now_iso(),
                },
            )
            atomic_write_text(self.root / "spec.yaml", spec_yaml)
        except PermissionError as err:
            raise StoreError(
                f"{self.root}: cannot write results ({err.strerror}); make the folder writable "
                "or choose another with --results DIR"
            ) from None
        except OSError as err:
            raise StoreError(
                f"{self.root}: cannot write results ({err.strerror or err}); "
                "check the path and free disk space, or use --results DIR"
            ) from None

    def read_meta(self) -> dict[str, Any]:
        path = self.root / "experiment.json"
        if not path.exists():
            return {}
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise StoreError(
                f"{path}: unreadable ({err}); delete the file to let addrop rewrite it"
            ) from None
        if meta.get("format") != FORMAT_VERSION:
            raise StoreError(
                f"{path}: results format {meta.get('format')!r}, this addrop reads format "
                f"{FORMAT_VERSION}; use a matching addrop version or another results folder"
            )
        return meta

    @contextlib.contextmanager
    def lock(self, run_id: str) -> Iterator[bool]:
        """Hold the run's lock; yields False (without waiting) if another process holds it."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.runs_dir / f".{run_id}.lock", timeout=0)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
