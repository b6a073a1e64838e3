"""The report's one view of the store: a tidy DataFrame, one row per run and evaluation.

Every run (finished or not) has a row per evaluation (``best``, ``last`` epoch) with its identity
columns, its dev metrics (``dev_<metric>``, NaN unless the run is done), its task score and its
cost. Everything else in the report is pandas on this frame. This module is the only one that
reads :class:`RunRecord` attributes for it, so a change in the store's reader is adapted here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from addrop_cli.data.metrics import higher_is_better, task_score
from addrop_cli.data.tasks import TaskInfo, get_task
from addrop_cli.errors import AddropError
from addrop_cli.store.identity import point_label
from addrop_cli.store.reader import RunRecord, epochs_saved

Epoch = Literal["best", "last"]
EVALUATIONS: tuple[Epoch, ...] = ("best", "last")
DEV = "dev_"
"""Prefix of the metric columns: ``dev_accuracy``, ``dev_f1``..."""
DEV_LOSS = "dev_loss_"
"""Prefix of the curve frame's dev-loss columns, one per dev split (``dev_loss_dev``)."""
COST = ("wall_time_s", "prepare_time_s", "train_samples_per_s", "peak_memory_mb")
RAW_HIDDEN = ("record",)
"""Columns that hold Python objects, left out of ``--raw`` exports."""


@dataclass(frozen=True)
class TaskRow:
    """A table row's task facts (the registry's, or read off the runs for unknown tasks)."""

    name: str
    display: str
    metrics: tuple[str, ...]
    main_metric: str
    info: TaskInfo | None = field(default=None, repr=False)
    task: str = ""
    """The task itself; ``name`` is the row's key (``sst2 [train_size=500]`` for a factor
    point)."""
    factors: Mapping[str, Any] | None = None
    """The factor point this row holds (spec path -> value); None for a plain task row."""

    @property
    def higher_is_better(self) -> bool:
        try:
            return higher_is_better(self.main_metric)
        except KeyError:
            return True

    def score(self, metrics: Mapping[str, float]) -> float:
        """The task score of one run's metrics (the GLUE rule; the main metric if unknown)."""
        if self.info is not None and self.info.metrics:
            return task_score(self.info, metrics)
        return float(metrics[self.main_metric])


def run_frame(
    records: Sequence[RunRecord], rows: Mapping[str, TaskRow] | None = None
) -> pd.DataFrame:
    """The tidy frame of ``records``: identity columns, ``evaluation``, metrics, score, cost.

    ``variant`` is the column key of the report (the variant name, or ``experiment/name`` when
    the name means different configurations in different experiments); ``name`` is the name.
    """
    rows = rows if rows is not None else task_rows(records)
    keys = variant_keys(records)
    out = []
    for r in records:
        identity = _identity_columns(r, keys[r.experiment, r.variant])
        for evaluation in EVALUATIONS:
            metrics = r.dev_metrics(evaluation) or {}
            out.append(
                identity
                | {"evaluation": evaluation}
                | {DEV + k: float(v) for k, v in metrics.items()}
                | {"score": rows[row_key(r)].score(metrics) if metrics else float("nan")}
            )
    frame = pd.DataFrame(out)
    frame["seed"] = frame["seed"].astype(int)
    return frame


def _identity_columns(r: RunRecord, key: str) -> dict[str, Any]:
    data = r.config.data
    cost = {k: _number(getattr(r.metrics, k, None)) for k in COST}
    return {
        "experiment": r.experiment,
        "variant": key,
        "name": r.variant,
        "task": row_key(r),
        "method": r.method,
        "seed": r.seed,
        "stage": r.sweep_stage or "",
        "point": json.dumps([r.sweep_point, r.method_params], sort_keys=True, default=str),
        "status": r.status,
        "reason": r.reason,
        "run_id": r.run_id,
        "path": str(r.path),
        "selects_on_dev": r.selects_on_dev,
        "truncated_dev": data.get("dev_size"),
        "epochs_saved": epochs_saved(r),
        **cost,
        **{f"param_{k}": v for k, v in r.method_params.items() if _scalar(v) and k != "method"},
        "record": r,
    }


def raw_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-run frame as users get it (``addrop report --raw``): plain values only."""
    return frame.drop(columns=[c for c in RAW_HIDDEN if c in frame.columns])


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(DEV)]


def _scalar(value: object) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def _number(value: object) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else float("nan")


# ---------------------------------------------------------------------------------------------
# Rows (tasks) and columns (variants)
# ---------------------------------------------------------------------------------------------


def row_key(r: RunRecord) -> str:
    """The table row of a run: its task, or ``task [train_size=500]`` at a factor point, so
    that every factor value is a row of its own (compared with the reference at that value)."""
    return f"{r.task} [{point_label(r.factors)}]" if r.factors else r.task


def task_rows(records: Sequence[RunRecord]) -> dict[str, TaskRow]:
    """Row key (:func:`row_key`) -> its row facts, for every task and factor point."""
    by_row: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        by_row[row_key(r)].append(r)
    return {key: _task_row(key, runs) for key, runs in by_row.items()}


def _task_row(key: str, runs: Sequence[RunRecord]) -> TaskRow:
    """The registry's facts; for a task it does not know, the facts the runs carry."""
    name, factors = runs[0].task, runs[0].factors
    point = f" [{point_label(factors)}]" if factors else ""
    try:
        info: TaskInfo | None = get_task(name)
    except AddropError:
        info = None  # a task of the user's own: use the facts its runs carry
    if info is not None and info.metrics:
        display = info.display + point
        return TaskRow(key, display, info.metrics, info.main_metric, info, name, factors)
    done = [r for r in runs if r.metrics is not None]
    metrics = tuple(dict.fromkeys(k for r in done for k in r.metrics.best.dev))
    main = next((r.metrics.main_metric for r in done), "") or (metrics[0] if metrics else "")
    return TaskRow(key, key, metrics, main, None, name, factors)


def variant_keys(records: Iterable[RunRecord]) -> dict[tuple[str, str], str]:
    """(experiment, variant name) -> column key: the name, or ``experiment/name`` on a clash.

    A name found in several experiments is one column when its runs' variant identity (what
    changes a result, but task, seed and sweep point) is the same in all of them.
    """
    identities: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        identities[r.variant][r.experiment].add(r.config.variant_identity())
    keys: dict[tuple[str, str], str] = {}
    for name, by_experiment in identities.items():
        same = len({frozenset(ids) for ids in by_experiment.values()}) == 1
        for experiment in by_experiment:
            keys[experiment, name] = name if same else f"{experiment}/{name}"
    return keys


def epoch_cost(r: RunRecord) -> dict[str, float]:
    """One run's per-step cost and load from its ``epochs.jsonl`` (NaN where not recorded, as
    in runs stored before addrop recorded them).

    ``step_time_s`` and ``cpu_step_s``: the median over the run's epochs of the training seconds
    and the process CPU seconds per optimiser step, each from the epoch's last evaluation (whose
    figures run from the epoch's start); ``load_mean`` and ``load_max``: the mean and the largest
    1-minute load average recorded at its evaluations; ``cpus``: the machine's logical CPUs.
    """
    rows = r.epochs()
    ends = {row.epoch: row for row in rows}.values()  # in file order: an epoch's last wins
    wall, cpu = [], []
    for row in ends:
        if row.steps:
            wall.append(row.epoch_time_s / row.steps)
            if row.cpu_time_s is not None:
                cpu.append(row.cpu_time_s / row.steps)
    loads = [row.load_1m for row in rows if row.load_1m is not None]
    nan = float("nan")
    return {
        "step_time_s": _median(wall),
        "cpu_step_s": _median(cpu),
        "load_mean": sum(loads) / len(loads) if loads else nan,
        "load_max": max(loads, default=nan),
        "cpus": float(max((row.cpus for row in rows if row.cpus), default=nan)),
    }


def _median(values: Sequence[float]) -> float:
    return float(pd.Series(values, dtype=float).median()) if values else float("nan")


def curve_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Every evaluation in the runs' ``epochs.jsonl``: one row per run and evaluation, with
    ``run_id``, ``path``, ``x`` (the epoch, from 1, or the evaluation's number when a run
    evaluates several times per epoch), ``train_loss``, ``dev_<metric>`` and, where the run
    recorded it, ``dev_loss_<split>``."""
    out = []
    for r in records:
        rows = r.epochs()
        epochs = [row.epoch for row in rows]
        by_epoch = len(set(epochs)) == len(epochs)
        for i, row in enumerate(rows):
            out.append(
                {"run_id": r.run_id, "path": str(r.path)}
                | {"x": float(row.epoch) if by_epoch else float(i + 1)}
                | {"train_loss": _number(row.train_loss)}
                | {DEV + k: _number(v) for k, v in row.dev.items()}
                | {DEV_LOSS + k: _number(v) for k, v in row.dev_loss.items()}
            )
    return pd.DataFrame(out, columns=None if out else ["run_id", "path", "x", "train_loss"])
