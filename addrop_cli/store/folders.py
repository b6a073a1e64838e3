"""The results store: one folder per run, atomic files, a DONE marker written last.

Layout (format version 1; docs/store.md documents it, reports read it)::

    results/<experiment>/
      experiment.json          {"format": N, "name": ..., "spec_hashes": [...]}
      spec.yaml                the last resolved spec that ran here
      runs/<run_id>/
        run.json               resolved run config (written first)
        epochs.jsonl           one JSON line per evaluation, appended as training goes
        metrics.json           final metrics, or the failure
        predictions.json       dev predictions at the best epoch
        train.log              the run's progress lines, every attempt's, each after a header
        attempt_times.jsonl    {"attempt": n, "seconds": t} lines, each attempt's time so far,
                               since the run last started clean (its wall_time_s is their sum)
        env.json               versions, git commit, device
        checkpoint/            optional best model (save_pretrained folder, tokenizer, card)
        checkpoint-last/       optional model at the end of training (the same)
        state/                 the latest training state of an unfinished run (store/state.py)
        DONE | FAILED | PRUNED written last: without one of them the run is unfinished
                               (PRUNED: a search's pruner stopped it; "<epochs> <reason>")
      runs/.<run_id>.lock      the run's lock file (an OS lock; the file itself means nothing)
      attempts/<run_id>.log    one line per start of the run, appended, never wiped:
                               "<UTC time> pid=<pid> host=<hostname> step=<n> epoch=<e>"
                               (the epoch it starts in, counted from 1)

A run folder without DONE or FAILED is an interrupted run: it goes on from its training state
(epochs.jsonl rewritten to the state's evaluations), or is wiped and started again without one.
Finished runs are never redone. A lock file per run keeps two processes from running it at once;
the lock is an OS lock, so a dead process's lock is released with it. Files are written to a
hidden temporary file (``.<name>.<random>.tmp``), fsynced and renamed, so a reader sees the old
file or the new one; a temporary file left by a killed process is never read.

Every write that fails (full disk, read-only folder) raises a one-line :class:`StoreError` that
names the file and the fix, never a bare ``OSError``; nothing half-written is left under a name
that a reader opens.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from addrop_cli.errors import StoreError
from addrop_cli.store.atomic import (
    append_line,
    atomic_write_json,
    atomic_write_text,
    now_iso,
    writing,
)
from addrop_cli.store.records import (
    FORMAT_VERSION,
    EpochRecord,
    FailedMetrics,
    RunConfig,
    RunMetrics,
    SplitPredictions,
)
from addrop_cli.store.state import TrainingStateFiles
from addrop_cli.store.status import RunStatus, marked_status

TRACKER_IDS = "tracking.json"
"""Each tracker's id of the run it follows (written by the trackers), so a resumed attempt
continues that tracker run."""
_STATE_NAMES = ("state", ".state.previous", "attempt_times.jsonl", TRACKER_IDS)
"""What a resumed attempt keeps of the folder (besides what it rewrites)."""
_HISTORY_NAMES = ("train.log",)
"""What every attempt keeps, resumed or started over: each attempt's log follows the last."""

EXPERIMENT_LOCK_TIMEOUT_S = 60.0
"""How long ``open_for_writing`` waits for another process updating experiment.json."""


@dataclass
class RunFolder:
    """One run's folder: the writer side of the store format."""

    path: Path

    @property
    def status(self) -> RunStatus:
        """The state its markers say (never ``corrupt``: that needs metrics.json read)."""
        return marked_status(self.path)

    def failure_reason(self) -> str:
        with contextlib.suppress(OSError):
            return (self.path / "FAILED").read_text(encoding="utf-8", errors="replace").strip()
        return ""

    def failed_at(self) -> float:
        """When the FAILED marker was written (its mtime; 0.0 when unreadable)."""
        try:
            return (self.path / "FAILED").stat().st_mtime
        except OSError:
            return 0.0

    @property
    def attempts_log(self) -> Path:
        """``<experiment>/attempts/<run_id>.log``: outside the run folder, so wiping keeps it."""
        return self.path.parent.parent / "attempts" / f"{self.path.name}.log"

    def attempts(self) -> list[str]:
        """One line per start of this run, oldest first ([] if it never started)."""
        with contextlib.suppress(FileNotFoundError):
            return self.attempts_log.read_text(encoding="utf-8", errors="replace").splitlines()
        return []

    def start(
        self,
        run_config: RunConfig,
        *,
        resume_at: tuple[int, int] | None = None,
        epochs: list[EpochRecord] | None = None,
    ) -> None:
        """Begin (or begin again) a run: wipe what an interrupted attempt left, write run.json.

        Each start appends one line to the attempts log first, with the optimiser step and epoch
        it starts from (the epoch counted from 1; ``resume_at`` holds the loop's 0-based position),
        so "each run ran exactly once" and "no requeue started over" can be
        checked after the fact, and a header line to train.log, which every attempt appends to
        (the log of a job that timed out stays above the requeued job's). With ``resume_at``
        (step, epoch) the training state is kept and epochs.jsonl is rewritten to hold exactly
        the state's ``epochs`` (an evaluation logged after the state was written is done again,
        not duplicated).
        """
        host = socket.gethostname()
        step, epoch = resume_at or (0, 0)
        started = f"{now_iso()} pid={os.getpid()} host={host} step={step} epoch={epoch + 1}"
        append_line(self.attempts_log, started)
        with writing(self.path):
            if self.path.exists():
                keep = _HISTORY_NAMES + (_STATE_NAMES if resume_at is not None else ())
                for entry in self.path.iterdir():
                    if entry.name in keep:
                        continue
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            self.path.mkdir(parents=True, exist_ok=True)
        how = f"resuming from step {step}" if resume_at is not None else "starting from step 0"
        header = f"==== attempt {len(self.attempts())}: {started}, {how}"
        append_line(self.path / "train.log", header)
        atomic_write_json(self.path / "run.json", run_config.model_dump(mode="json"))
        if epochs:
            lines = "".join(record.model_dump_json() + "\n" for record in epochs)
            atomic_write_text(self.path / "epochs.jsonl", lines)

    def record_attempt_time(self, attempt: int, seconds: float, *, sync: bool = True) -> None:
        """How long attempt ``attempt`` has run so far (the last line of an attempt counts)."""
        line = json.dumps({"attempt": attempt, "seconds": round(seconds, 3)})
        append_line(self.path / "attempt_times.jsonl", line, sync=sync)

    def attempt_times(self) -> dict[int, float]:
        """Each attempt's latest recorded time since the run last started clean ({} if none);
        a line torn by a kill is skipped."""
        times: dict[int, float] = {}
        with contextlib.suppress(FileNotFoundError):
            text = (self.path / "attempt_times.jsonl").read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    entry = json.loads(line)
                    times[int(entry["attempt"])] = float(entry["seconds"])
        return times

    @property
    def state(self) -> TrainingStateFiles:
        """The run's training state (``state/``), for resuming an interrupted attempt."""
        return TrainingStateFiles(self.path)

    def append_epoch(self, record: EpochRecord) -> None:
        """Append one evaluation record; readers skip a torn last line (a kill mid-write)."""
        append_line(self.path / "epochs.jsonl", record.model_dump_json())

    def write_predictions(self, predictions: dict[str, SplitPredictions]) -> None:
        atomic_write_json(
            self.path / "predictions.json",
            {name: split.model_dump(mode="json") for name, split in predictions.items()},
        )

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def finish(self, metrics: RunMetrics) -> None:
        """Write the final metrics, then the DONE marker: only now is the run a result."""
        atomic_write_json(self.path / "metrics.json", metrics.model_dump(mode="json"))
        atomic_write_text(self.path / "DONE", now_iso() + "\n")

    def fail(self, metrics: FailedMetrics) -> None:
        """Record a failed run with its reason; it is retried by the next `addrop run`."""
        atomic_write_json(self.path / "metrics.json", metrics.model_dump(mode="json"))
        atomic_write_text(self.path / "FAILED", metrics.error.strip() + "\n")

    def prune(self, epochs_run: int, reason: str) -> None:
        """Record a run a search's pruner stopped after ``epochs_run`` epochs: not a result, and
        never run again (its epochs.jsonl holds the scores it was judged on)."""
        atomic_write_text(self.path / "PRUNED", f"{epochs_run} {reason.strip()}\n")

    def pruned_note(self) -> str:
        """Why and when a pruned run stopped, in words ("" when unreadable)."""
        with contextlib.suppress(OSError):
            text = (self.path / "PRUNED").read_text(encoding="utf-8", errors="replace")
            epochs, _, reason = text.partition(" ")
            return f"pruned after {epochs} epochs: {reason.strip()}"
        return ""


class ExperimentStore:
    """``results/<experiment>/``: where the runs of one experiment live."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def located(
        cls, name: str, results_dir: str | os.PathLike[str], results_root: Path | None = None
    ) -> ExperimentStore:
        """``<results root>/<name>``: the root from --results, else the spec's ``results_dir``
        (``~`` expanded, a relative one against the working folder)."""
        root = results_root if results_root is not None else Path(results_dir).expanduser()
        return cls(root.resolve() / name)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run(self, run_id: str) -> RunFolder:
        return RunFolder(self.runs_dir / run_id)

    def find_run(self, prefix: str) -> str:
        """The id of the one run whose id starts with ``prefix`` (a whole id, or enough of it to
        be unique); none or several is one StoreError line (exit code 2)."""
        hint = f"addrop status {self.root} --all lists the run ids"
        folders = self.runs_dir.iterdir() if self.runs_dir.is_dir() else iter(())
        ids = sorted(p.name for p in folders if p.is_dir() and not p.name.startswith("."))
        if prefix in ids:
            return prefix
        found = [run_id for run_id in ids if prefix and run_id.startswith(prefix)]
        if not found:
            raise StoreError(f"{self.root}: no run {prefix!r}; {hint}")
        if len(found) > 1:
            shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
            raise StoreError(
                f"{self.root}: run id prefix {prefix!r} matches {len(found)} runs ({shown}); "
                f"give more of the id ({hint})"
            )
        return found[0]

    def open_for_writing(self, name: str, spec_hash: str, spec_yaml: str) -> None:
        """Create the folder (or check an existing one's format) and record this spec version.

        experiment.json is read, updated and written under a lock, so two processes starting
        different spec versions at once both get their hash recorded.
        """
        with writing(self.root):
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / ".experiment.lock", timeout=EXPERIMENT_LOCK_TIMEOUT_S)
        try:
            with writing(self.root), lock:
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
        except Timeout:
            raise StoreError(
                f"{self.root / '.experiment.lock'}: held by another process for "
                f"{EXPERIMENT_LOCK_TIMEOUT_S:.0f}s; check that no addrop process is stuck, "
                "then run the same command again"
            ) from None

    def read_meta(self) -> dict[str, Any]:
        path = self.root / "experiment.json"
        if not path.exists():
            return {}
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # ValueError: not JSON, or not UTF-8
            raise StoreError(
                f"{path}: unreadable ({err}); delete the file to let addrop rewrite it"
            ) from None
        hashes = meta.get("spec_hashes", []) if isinstance(meta, dict) else None
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise StoreError(
                f"{path}: unreadable (not the experiment.json layout: expected "
                '{"format": N, "name": ..., "spec_hashes": [...]}); delete the file to let addrop '
                "rewrite it"
            )
        # an older format's runs are read as they are (each run records its format), so new
        # runs may join them; a newer format's may hold what this addrop would misread
        if not isinstance(meta.get("format"), int) or meta["format"] > FORMAT_VERSION:
            raise StoreError(
                f"{path}: results format {meta.get('format')!r}, this addrop reads format "
                f"{FORMAT_VERSION}; use a matching addrop version or another results folder"
            )
        return meta

    def lock_path(self, run_id: str) -> Path:
        """The run's lock file: held while a process trains the run (``addrop status`` reads it)."""
        return self.runs_dir / f".{run_id}.lock"

    @contextlib.contextmanager
    def lock(self, run_id: str) -> Iterator[bool]:
        """Hold the run's lock; yields False (without waiting) if another process holds it."""
        path = self.lock_path(run_id)
        lock = FileLock(path, timeout=0)
        try:
            with writing(path):
                self.runs_dir.mkdir(parents=True, exist_ok=True)
                lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
