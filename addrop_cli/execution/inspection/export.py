"""``addrop track RESULTS --to NAME``: the finished runs of a results folder sent to a tracker
after the fact, from the store's records (run.json, epochs.jsonl, metrics.json).

Each run becomes a tracker run as if it had been tracked while it ran, less the per-step
training curves (the store keeps one record per evaluation): its config as hyperparameters,
its tags, every evaluation at its step, and (TensorBoard) its best dev metrics in HParams.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from addrop_cli.errors import EXIT_OK, SpecError
from addrop_cli.execution.trackers.tracking import (
    RunInfo,
    installed,
    start_trackers,
    tracker_ids,
    where_files_go,
)
from addrop_cli.spec.trackers import TRACKERS
from addrop_cli.store.reader import RunRecord, StoreWarning, load_runs
from addrop_cli.store.records import EpochRecord
from addrop_cli.words import plural


def export_runs(path: Path, to: str, console: Console, tracking_dir: Path | None = None) -> int:
    """Send every done run under ``path`` to tracker ``to`` (its files in ``tracking_dir``, else
    each experiment's ``tracking/``); 0, or 2 for a bad ``--to`` or ``--dir``."""
    if to not in TRACKERS:
        raise SpecError(f"--to: {TRACKERS.unknown(to)}")
    _, missing = installed([to])
    if missing:
        raise SpecError(missing[0])
    if tracking_dir is not None:
        _writable(tracking_dir)
    records = load_runs(path)
    left = Counter(r.status for r in records if r.status != "done")
    done, again, bare = [], [], 0
    for record in (r for r in records if r.status == "done"):
        evaluations = _evaluations(record, console)
        if not evaluations:  # a result without its curve: not exported as one with no metrics
            bare += 1
            continue
        if to in _TRACKER_RUNS and to in tracker_ids(record.path):
            again.append(record)
        for tracker in start_trackers([to], _info(record, tracking_dir), _warn(console)):
            for evaluation in evaluations:
                tracker.on_eval(evaluation)
            tracker.on_end("done", "")
        done.append(record)
    places = sorted({str(r.path.parent.parent) for r in done})
    for place in places:
        line = where_files_go([to], Path(place), tracking_dir)
        console.print(line, highlight=False, markup=False)
    others = ", ".join(f"{n} {state}" for state, n in sorted(left.items()))
    if bare:
        others += f"{', ' if others else ''}{bare} done without evaluations"
    console.print(
        f"exported {plural(len(done), 'finished run')} to {to}"
        + (f"; left out: {others}" if others else ""),
        highlight=False,
    )
    if again:
        _warn(console)(
            f"{len(again)} of these runs had been sent to {to} before (their tracking.json holds "
            f"a {to} run id): where {to} still holds those, it now holds two runs for each; "
            f"delete the older ones in {to} to keep one"
        )
    return EXIT_OK


def _evaluations(record: RunRecord, console: Console) -> list[EpochRecord]:
    """The run's evaluations, each damaged line one warning; none readable: one line that the
    run is left out, naming the file and the fix."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        evaluations = record.epochs()
    lines = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    if not evaluations:
        why = lines[0] if lines else f"{record.path / 'epochs.jsonl'}: missing"
        lines = [
            f"{why}; run {record.run_id} is done but not exported (to export it, delete "
            f"{record.path} and run the experiment again)"
        ]
    for line in lines:
        _warn(console)(line)
    return evaluations


_TRACKER_RUNS = ("mlflow", "wandb")
"""Trackers where each export is a new run (TensorBoard rewrites the run's folder)."""


def _writable(folder: Path) -> None:
    """``--dir``: a folder addrop can create and write in, or one line naming it (exit 2)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".addrop-write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as err:
        raise SpecError(
            f"--dir {folder}: cannot write there ({err.strerror or err}); give a folder you can "
            "write to"
        ) from None


def _info(record: RunRecord, tracking_dir: Path | None = None) -> RunInfo:
    return RunInfo(
        run_id=record.run_id,
        experiment=record.experiment,
        task=record.task,
        variant=record.variant,
        method=record.method,
        seed=record.seed,
        folder=record.path,
        experiment_dir=record.path.parent.parent,
        config=record.config.model_dump(mode="json"),
        tracking_dir=tracking_dir.resolve() if tracking_dir is not None else None,
    )


def _warn(console: Console) -> Callable[[str], None]:
    return lambda line: console.print(f"warning: {line}", highlight=False, markup=False)
