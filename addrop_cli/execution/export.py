"""``addrop track RESULTS --to NAME``: the finished runs of a results folder sent to a tracker
after the fact, from the store's records (run.json, epochs.jsonl, metrics.json).

Each run becomes a tracker run as if it had been tracked while it ran, less the per-step
training curves (the store keeps one record per evaluation): its config as hyperparameters,
its tags, every evaluation at its step, and (TensorBoard) its best dev metrics in HParams.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from addrop_cli.errors import SpecError
from addrop_cli.execution.tracking import RunInfo, installed, start_trackers, where_files_go
from addrop_cli.spec.trackers import TRACKERS
from addrop_cli.store.reader import RunRecord, load_runs


def export_runs(path: Path, to: str, console: Console) -> int:
    """Send every done run under ``path`` to tracker ``to``; 0, or 2 for a bad ``--to``."""
    if to not in TRACKERS:
        raise SpecError(f"--to: {TRACKERS.unknown(to)}")
    _, missing = installed([to])
    if missing:
        raise SpecError(missing[0])
    done = [record for record in load_runs(path) if record.status == "done"]
    for record in done:
        for tracker in start_trackers([to], _info(record), _warn(console)):
            for evaluation in record.epochs():
                tracker.on_eval(evaluation)
            tracker.on_end("done", "")
    places = sorted({str(r.path.parent.parent) for r in done})
    for place in places:
        console.print(where_files_go([to], Path(place)), highlight=False, markup=False)
    console.print(f"exported {len(done)} finished runs to {to}", highlight=False)
    return 0


def _info(record: RunRecord) -> RunInfo:
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
    )


def _warn(console: Console) -> Callable[[str], None]:
    return lambda line: console.print(f"warning: {line}", highlight=False, markup=False)
