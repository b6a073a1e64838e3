"""Real `addrop run` processes and the store invariants checked after each fault.

Shared by the fault-injection, concurrency and store tests. The invariants are the store's
promises (docs/store.md): a run with DONE is complete and readable; nothing a reader
opens is ever half-written; a temporary file is never read as a result; finished runs are never
redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fault_points import fault_env

from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand
from addrop_cli.store.folders import RunFolder
from addrop_cli.store.reader import StoreWarning, load_runs

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "experiments" / "smoke.yaml"
_CHILD_ENV = {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
JSON_FILES = ("run.json", "metrics.json", "predictions.json", "env.json")
DONE_FILES = (*JSON_FILES, "epochs.jsonl")

# What a resumed run may store differently from an uninterrupted one (measured, or counted)
TIMING = {"wall_time_s", "train_time_s", "prepare_time_s", "train_samples_per_s"}
TIMING |= {"peak_memory_mb", "attempts"}  # measured, or how often the run was started
EPOCH_TIMING = {"epoch_time_s", "train_samples_per_s", "cpu_time_s", "load_1m"}  # measured
METHOD_TIMING = {"fisher_seconds"}  # Child-Tuning_D's Fisher pass: measured wall time


def without_timing(record: dict, keys: set[str]) -> dict:
    """``record`` without ``keys`` (and its ``method`` numbers without measured times)."""
    out = {k: v for k, v in record.items() if k not in keys}
    if isinstance(out.get("method"), dict):
        out["method"] = without_timing(out["method"], METHOD_TIMING)
    return out


def smoke_args(seeds: Sequence[int], epochs: int = 3) -> list[str]:
    """Overrides for a small experiment: sst2 only, baseline and AD-DROP, well under 1 s a run.

    One torch thread: on a busy 2-core machine, several processes with 2 spinning threads
    each run a hundred times slower (threads are not part of the run id).
    """
    seed_list = ",".join(map(str, seeds))
    return ["tasks=[sst2]", f"seeds=[{seed_list}]", f"train.epochs={epochs}", "train.threads=1"]


def expected_run_ids(overrides: Sequence[str]) -> set[str]:
    spec = load_spec(SMOKE, list(overrides))
    return {run.run_id for run in expand(spec, SMOKE.parent)}


@dataclass
class AddropProcess:
    """A real `addrop run` subprocess whose output lines are collected as they come."""

    proc: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, timeout: float = 120.0) -> bool:
        """Wait until a line containing ``text`` was printed; False if the process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for _, line in self.lines):
                return True
            if self.proc.poll() is not None:
                assert self._reader is not None
                self._reader.join(5)
                return any(text in line for _, line in self.lines)
            time.sleep(0.01)
        raise TimeoutError(f"no line with {text!r} after {timeout}s: {self.output()}")

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the process ends first."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(seconds)

    def kill(self) -> None:
        """SIGKILL: no handler runs, no file is closed cleanly."""
        self.proc.kill()
        self.finish()

    def finish(self, timeout: float = 300.0) -> int:
        code = self.proc.wait(timeout)
        assert self._reader is not None
        self._reader.join(5)
        return code

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)


def smoke_command(results: Path, overrides: Sequence[str], *options: str) -> list[str]:
    """``addrop run experiments/smoke.yaml OVERRIDES OPTIONS --results RESULTS --plain``."""
    command = [sys.executable, "-m", "addrop_cli", "run", str(SMOKE), *overrides, *options]
    return [*command, "--results", str(results), "--plain"]


def child_env(faults: dict[str, Any] | None = None) -> dict[str, str]:
    """The environment of an `addrop` process a test starts, with ``faults`` installed in it
    and in its workers (tests/fault_points.py)."""
    return fault_env(os.environ | _CHILD_ENV, **(faults or {}))


def default_sigint() -> None:
    """A ``preexec_fn``: a background shell (nohup, &) starts us with SIGINT ignored, and Python
    keeps an ignored SIGINT ignored; give addrop the default so that the signal tests mean it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_addrop(
    results: Path, overrides: Sequence[str], *, faults: dict[str, Any] | None = None
) -> AddropProcess:
    """Start ``addrop run experiments/smoke.yaml OVERRIDES --results RESULTS --plain``.

    ``faults``: fault points (tests/fault_points.py) installed in the process and its workers,
    ``{"slow_writes": 0.03}`` for example, which only widens the store's write windows so that
    random kills land inside writes more often.
    """
    proc = subprocess.Popen(
        smoke_command(results, overrides),
        cwd=ROOT,
        env=child_env(faults),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
    process = AddropProcess(proc)
    process._reader = threading.Thread(target=process._read, daemon=True)
    process._reader.start()
    return process


def run_until_killed(results: Path, overrides: Sequence[str], **faults: Any) -> Path:
    """Run ``addrop run experiments/smoke.yaml OVERRIDES`` until its ``kill_at`` fault point
    SIGKILLs it (tests/fault_points.py); returns the folder of the run it was in."""
    command = smoke_command(results, overrides)
    killed = subprocess.run(
        command, cwd=ROOT, env=child_env(faults), capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    (folder,) = [p for p in (results / "smoke" / "runs").iterdir() if p.is_dir()]
    return folder


@dataclass(frozen=True)
class DoneRun:
    """What must never change once a run is DONE."""

    done: bytes
    metrics: bytes
    attempts: int


def attempts(experiment: Path, run_id: str) -> list[str]:
    return RunFolder(experiment / "runs" / run_id).attempts()


def check_store(experiment: Path, epochs: int, *, failed: bool = False) -> dict[str, DoneRun]:
    """Assert the store invariants; return a snapshot of the DONE runs.

    * a DONE run holds every result file, each complete and parseable, and no FAILED marker;
    * in an unfinished run, every file a reader opens by name is complete (atomic writes), and
      epochs.jsonl has at most a torn last line;
    * temporary files are hidden (``.name.tmp``) and the report's loader never reads them: it
      loads without a warning and counts exactly the DONE runs as results;
    * no run is recorded failed, unless ``failed`` (a test that made one fail on purpose).
    """
    runs = experiment / "runs"
    if not runs.is_dir():
        return {}
    done: dict[str, DoneRun] = {}
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()):
        assert not folder.name.startswith("."), folder
        for stray in folder.rglob("*.tmp"):
            assert stray.name.startswith("."), stray  # temporary files are hidden
        if (folder / "DONE").is_file():
            assert not (folder / "FAILED").exists(), folder
            for name in DONE_FILES:
                assert (folder / name).is_file(), f"{folder.name}: DONE without {name}"
            for name in JSON_FILES:
                json.loads((folder / name).read_text())
            metrics = json.loads((folder / "metrics.json").read_text())
            assert metrics["status"] == "done" and metrics["format"] == 2
            lines = (folder / "epochs.jsonl").read_text().splitlines()
            assert [json.loads(line)["epoch"] for line in lines] == list(range(1, epochs + 1))
            assert json.loads((folder / "run.json").read_text())["run_id"] == folder.name
            done[folder.name] = DoneRun(
                (folder / "DONE").read_bytes(),
                (folder / "metrics.json").read_bytes(),
                len(attempts(experiment, folder.name)),
            )
        else:
            for name in JSON_FILES:
                if (folder / name).exists():
                    json.loads((folder / name).read_text())  # never half-written
            log = folder / "epochs.jsonl"
            if log.exists():
                for line in log.read_text().splitlines()[:-1]:
                    json.loads(line)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        records = load_runs(experiment) if done or _has_run_json(runs) else []
    assert not [str(w.message) for w in caught], [str(w.message) for w in caught]
    assert {r.path.name for r in records if r.status == "done"} == set(done)
    allowed = ("done", "unfinished", "failed") if failed else ("done", "unfinished")
    assert all(r.status in allowed for r in records), [(r.path.name, r.status) for r in records]
    return done


def _has_run_json(runs: Path) -> bool:
    return any((p / "run.json").is_file() for p in runs.iterdir() if p.is_dir())


def kill_phase(experiment: Path) -> str:
    """Where the last kill landed, read from what the killed run left (for the soak summary)."""
    unfinished = [
        p
        for p in (experiment / "runs").iterdir()
        if p.is_dir() and not (p / "DONE").exists() and not (p / "FAILED").exists()
    ]
    if not unfinished:
        return "between runs or before training"
    folder = unfinished[0]
    names = {p.name for p in folder.iterdir()}
    if any(n.endswith(".tmp") for n in names):
        return "inside a file write"
    if "state" in names or ".state.previous" in names:
        return "training, with a state to resume from"
    if "metrics.json" in names:
        return "between metrics.json and DONE"
    if "predictions.json" in names or "env.json" in names:
        return "during the final writes"
    if "epochs.jsonl" in names:
        return "training or evaluation (after an epoch)"
    if "run.json" in names:
        return "first epoch"
    return "while starting the run"
