"""``addrop status``: what each run of an experiment is doing, from the store and the queue.

States are the store's, in the words every reader uses (:mod:`addrop_cli.store.status`):
``done``, ``corrupt`` (DONE, but its metrics cannot be read: the report leaves it out),
``failed``, ``pruned``, ``unfinished`` (a folder without a marker that nobody is working on: the
next run or sweep goes on with it) and, given a spec, ``absent``; and what only the machine and
the queue know: ``running`` (its run lock is held on this machine, or its Slurm job is running)
and ``queued`` (its Slurm job is pending). Reading never takes a run lock, so asking for the
status can never make a worker skip a run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from addrop_cli.errors import EXIT_OK, StoreError
from addrop_cli.execution.backends.base import LiveRun, live_runs
from addrop_cli.execution.sweeps.plan import plan_sweep
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import RunSpec, expand
from addrop_cli.spec.sweeps import OPTUNA_SEARCHES
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.store.reader import run_status
from addrop_cli.store.state import TrainingStateFiles
from addrop_cli.store.status import STATES, LiveStatus, RunStatus, is_final

_SHOWN_WHEN_ANY = ("corrupt", "pruned", "absent")
"""States the count line names only when some run is in them."""


@dataclass(frozen=True)
class RunState:
    """One run's state and what it is known by."""

    run_id: str
    label: str
    state: RunStatus | LiveStatus
    detail: str = ""


def held_locks() -> set[int] | None:
    """Inodes of files locked on this machine (``/proc/locks``); None where unreadable."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    inodes = set()
    for line in text.splitlines():
        for part in line.split():
            if part.count(":") == 2:  # major:minor:inode
                inodes.add(int(part.rsplit(":", 1)[1]))
                break
    return inodes


def lock_held(store: ExperimentStore, run_id: str, locks: set[int] | None) -> bool:
    path = store.lock_path(run_id)
    if locks is None or not path.exists():
        return False
    return os.stat(path).st_ino in locks


def collect(store: ExperimentStore, runs: Sequence[RunSpec] | None = None) -> list[RunState]:
    """Every run's state: the runs of a spec, or every run folder and Slurm job of the store."""
    held = live_runs(store)  # what the back-ends hold (a Slurm job, queued or running)
    locks = held_locks()
    labels: dict[str, str] = {}
    if runs is not None:
        labels = {r.run_id: _label(r.label, r.sweep) for r in runs}
    else:
        if store.runs_dir.is_dir():
            for folder in sorted(p for p in store.runs_dir.iterdir() if p.is_dir()):
                labels[folder.name] = _folder_label(folder)
        for run_id, live in held.items():
            labels.setdefault(run_id, live.label)
    states = []
    for run_id, label in labels.items():
        folder = store.run(run_id)
        status = folder.status
        live = held.get(run_id, LiveRun(label))
        if status == "done":
            status, why = run_status(folder.path)  # the report's reading: done or corrupt
        if status == "done":
            states.append(RunState(run_id, label, "done"))
        elif status == "corrupt":
            fix = f"; delete {folder.path} and run it again"
            states.append(RunState(run_id, label, "corrupt", f"{why}{fix}"))
        elif status == "failed":
            states.append(RunState(run_id, label, "failed", folder.failure_reason()))
        elif status == "pruned":
            states.append(RunState(run_id, label, "pruned", folder.pruned_note()))
        elif lock_held(store, run_id, locks) or live.state == "running":
            states.append(RunState(run_id, label, "running", live.where or "on this machine"))
        elif live.state == "queued" or (live.where and status == "absent"):
            states.append(RunState(run_id, label, "queued", live.where))
        elif status == "unfinished":
            states.append(RunState(run_id, label, "unfinished", _resume_point(folder.path)))
        else:
            states.append(RunState(run_id, label, "absent", "not started"))
    return states


def _resume_point(run_dir: Path) -> str:
    """Where an interrupted run goes on: the step of its training state, or from the start."""
    states = TrainingStateFiles(run_dir)
    manifest = states.valid_manifest()  # what a run would resume from
    if manifest is None and states.exists():  # damaged, or of an older addrop's format
        return "not running; unusable training state: starts again from step 0"
    if manifest is None:
        return "not running; no training state: starts again from step 0"
    step, epoch = manifest.get("step"), manifest.get("epoch")
    at = f"step {step} (epoch {epoch + 1})" if isinstance(epoch, int) else f"step {step}"
    return f"not running; resumes from {at} of its training state"  # epochs counted from 1


def _label(label: str, sweep: dict | None) -> str:
    if not sweep:
        return label
    point = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in (sweep.get("point") or {}).items())
    return f"{label} [{sweep.get('stage')}{': ' + point if point else ''}]"


def _folder_label(folder: Path) -> str:
    try:
        config = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        label = f"{config['task']}/{config['variant']}/seed{config['seed']}"
        return _label(label, config.get("sweep"))
    except (OSError, ValueError, KeyError, TypeError):
        return folder.name


def print_status(
    console: Console, store: ExperimentStore, states: Sequence[RunState], *, show_all: bool
) -> None:
    counts = Counter(s.state for s in states)
    shown = [state for state in STATES if counts[state] or state not in _SHOWN_WHEN_ANY]
    console.print(
        f"{store.root}: {len(states)} run{'' if len(states) == 1 else 's'}: "
        + ", ".join(f"{counts[state]} {state}" for state in shown),
        highlight=False,
    )
    rows = [s for s in states if show_all or s.state != "done"]
    if not rows:
        return
    table = Table()
    for column in ("run id", "run", "state", "detail"):
        table.add_column(column)
    order = {state: i for i, state in enumerate(STATES)}
    for s in sorted(rows, key=lambda s: (order[s.state], s.label)):
        table.add_row(s.run_id, s.label, s.state, s.detail)
    console.print(table)


def status_command(
    target: Path,
    overrides: list[str],
    *,
    results_root: Path | None = None,
    show_all: bool = False,
    run: str | None = None,
    console: Console | None = None,
) -> int:
    """Print the state of every run of a spec (file) or results folder (or of the one run whose
    id starts with ``run``); returns 0."""
    console = console or Console()
    if target.is_file() or target.suffix in (".yaml", ".yml"):
        store, runs = spec_runs(target, overrides, results_root)
    else:
        if overrides:
            raise StoreError(
                f"{target}: key=value overrides apply to a spec file, not a results folder"
            )
        if not target.is_dir():
            raise StoreError(
                f"{target}: no such folder or spec; pass results/<name> or the spec file"
            )
        if not (target / "runs").is_dir() and not (target / "experiment.json").is_file():
            raise StoreError(
                f"{target}: not a results folder (no runs/ or experiment.json inside); pass "
                "results/<name>, a folder written by `addrop run`, or the spec file"
            )
        store, runs = ExperimentStore(target.resolve()), None
    states = collect(store, runs)
    if run is not None:
        run_id = store.find_run(run)
        states, show_all = [s for s in states if s.run_id == run_id], True
    print_status(console, store, states, show_all=show_all)
    return EXIT_OK


def spec_runs(
    path: Path, overrides: list[str], results_root: Path | None
) -> tuple[ExperimentStore, list[RunSpec]]:
    """A spec's store and runs: its matrix, or for a sweep its selection and report runs."""
    spec = load_spec(path, overrides)
    store = ExperimentStore.located(spec.name, spec.results_dir, results_root)
    if spec.sweep is None:
        return store, expand(spec, path.parent)

    # the selection and the search import the GLUE metrics (scikit-learn, SciPy: seconds), which
    # `addrop status` on a plain spec never needs
    from addrop_cli.execution.sweeps.search import studied_plan
    from addrop_cli.execution.sweeps.selection import report_runs, select_winners, stage_records

    plan = plan_sweep(spec, path.parent.resolve(), str(path))
    if spec.sweep.search in OPTUNA_SEARCHES:  # the trials proposed so far
        plan = studied_plan(plan, store.root)
    runs = plan.stage1()
    if spec.sweep.protocol == "two_stage" and (store.root / "runs").is_dir():
        done = [r for r in plan.select_runs if is_final(store.run(r.run_id).status)]
        if len(done) == len(plan.select_runs):
            records = stage_records(store.root, plan.select_runs)
            selections = select_winners(records, points=plan.points)
            runs = runs + report_runs(plan, selections)
    return store, runs
