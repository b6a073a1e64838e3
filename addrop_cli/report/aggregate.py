"""Turn the run frame (:mod:`addrop_cli.report.frame`) into the comparison table with pandas.

Rows are tasks, columns are method variants, a cell summarises one (task, variant) over seeds.

* **Seeds.** A cell counts the seeds with a finished run (``n``) against the seeds expected: the
  distinct seeds of the experiment's runs at the same sweep stage. A failed, unfinished or
  unreadable run is listed in ``Cell.missing`` and shows as ``n=4/5``; it is never averaged away.
* **Scores.** Each run's per-metric dev values (best or last epoch) and its task score (the GLUE
  rule, :func:`addrop_cli.data.metrics.task_score`: the mean of the task's metrics). Deltas, the
  best cell of a row, the statistics and the GLUE row use the task score; for one-metric tasks
  that is the metric itself.
* **Sweeps.** When a (task, variant) holds runs at several hyperparameter points, the table shows
  one point. Runs whose ``sweep.stage`` is ``"select"`` are the selection stage; runs at any other
  stage are the reported ones ("two-stage": selected on some seeds, reported on others). Without a
  reporting stage, the point with the best centre on the dev set is shown ("paper protocol: best
  of grid on the same dev set", optimistic by construction); the table says which.
* **Several experiments.** A variant name found in several experiments is merged into one column
  when its resolved run config is the same in all of them (:func:`frame.variant_keys`);
  otherwise each becomes its own column, keyed ``experiment/variant``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from addrop_cli.data.metrics import Agg, Summary, glue_score
from addrop_cli.data.tasks import task_names
from addrop_cli.errors import SpecError
from addrop_cli.registry import did_you_mean
from addrop_cli.report.frame import (
    DEV,
    Epoch,
    TaskRow,
    metric_columns,
    run_frame,
    task_rows,
    variant_keys,
)
from addrop_cli.store.reader import SELECT_STAGE, RunRecord, StoreWarning

__all__ = ["Cell", "Epoch", "GlueCell", "Table", "TaskRow", "aggregate", "variant_keys"]

CELL = ["task", "variant"]


@dataclass(frozen=True)
class Cell:
    """One (task, variant): per-seed results of the runs the table reports."""

    task: str
    variant: str
    seed_metrics: Mapping[int, Mapping[str, float]]
    """Seed -> dev metrics of its finished run."""
    seed_scores: Mapping[int, float]
    """Seed -> task score of its finished run."""
    metrics: Mapping[str, Summary]
    score: Summary
    expected: int
    """Seeds expected (distinct seeds of the experiment at this stage)."""
    missing: Mapping[int, str]
    """Seed -> why it has no result ("failed: ...", "unfinished", "corrupt", "no run")."""
    point: Mapping[str, Any] | None = None
    """The hyperparameter point shown when the variant was swept."""
    protocol: str | None = None
    """How the point was chosen, for sweeps; None for a single configuration."""
    delta: Mapping[str, float] | None = None
    """Centre minus the reference's centre, per metric; None for the reference itself."""
    score_delta: float | None = None
    best: bool = False
    runs: tuple[RunRecord, ...] = field(default=(), repr=False, compare=False)
    """The finished runs summarised (for the bootstrap, cost and plots)."""

    @property
    def n(self) -> int:
        return len(self.seed_scores)


@dataclass(frozen=True)
class GlueCell:
    """The GLUE score of one variant, from the centres of its task metrics."""

    score: float | None
    covered: tuple[str, ...]
    missing: tuple[str, ...]
    delta: float | None = None
    best: bool = False


@dataclass(frozen=True)
class VariantInfo:
    """What a column is: its name(s) and method configuration."""

    key: str
    name: str
    experiments: tuple[str, ...]
    method: str
    method_params: Mapping[str, Any]


@dataclass(frozen=True)
class Table:
    """The main comparison table: every aggregate a renderer needs."""

    tasks: tuple[TaskRow, ...]
    variants: tuple[str, ...]
    reference: str
    cells: Mapping[tuple[str, str], Cell]
    """(task, variant) -> cell; absent where the variant never ran the task."""
    glue: Mapping[str, GlueCell] | None
    """Variant -> GLUE score; None when no GLUE task is in the table."""
    epoch: Epoch
    agg: Agg
    variant_info: Mapping[str, VariantInfo]
    frame: pd.DataFrame = field(repr=False, compare=False)
    """Every run and evaluation (:func:`frame.run_frame`), ``counted`` marking the table's."""
    summary: pd.DataFrame = field(repr=False, compare=False)
    """(task, variant) x (centre, std, n, delta) of every metric and the score."""

    def cell(self, task: str, variant: str) -> Cell | None:
        return self.cells.get((task, variant))

    @property
    def counted(self) -> pd.DataFrame:
        """The rows the table summarises: one finished run per seed, at the table's epoch."""
        return self.frame[self.frame["counted"] & (self.frame["evaluation"] == self.epoch)]


def aggregate(
    records: Sequence[RunRecord],
    *,
    epoch: Epoch = "best",
    agg: Agg = "mean",
    reference: str | None = None,
    variant_order: Sequence[str] = (),
) -> Table:
    """Build the main table from every loaded run (finished or not).

    ``reference`` names the column deltas and tests compare against (default: the first variant
    whose method is ``baseline``, else the first column). ``variant_order`` lists variant names in
    the spec's order; columns follow it, the reference first. Raises :class:`SpecError` for an
    unknown reference.
    """
    rows = task_rows(records)
    frame = run_frame(records, rows)
    info = _variant_info(frame)
    ref = _reference(info, reference)
    variants = _order_variants(info, ref, variant_order)
    runs = frame[frame["evaluation"] == epoch]
    chosen, protocols = _reported_runs(runs, rows, agg)
    done = chosen[chosen["status"] == "done"].sort_values("seed", kind="stable")
    _warn_duplicates(done)
    done = done.drop_duplicates([*CELL, "seed"])
    frame["counted"] = frame["run_id"].isin(done["run_id"]) & frame["path"].isin(done["path"])
    summary = _summary(done, rows, ref, agg)
    expected = runs.groupby(["experiment", "stage"])["seed"].agg(set)
    cells = {
        key: _cell(rows[key[0]], key, group, done, summary, expected, protocols[key])
        for key, group in chosen.groupby(CELL, sort=False)
    }
    tasks = tuple(rows[t] for t in _order_tasks(rows))
    glue = _glue(summary, tasks, variants, ref)
    return Table(tasks, variants, ref, cells, glue, epoch, agg, info, frame, summary)


def _warn_duplicates(done: pd.DataFrame) -> None:
    """Say which runs are not counted because another finished run has their task, variant and
    seed (the same run in two reported folders, or a run made twice)."""
    twice = done[done.duplicated([*CELL, "seed"], keep=False)]
    for (task, variant, seed), group in twice.groupby([*CELL, "seed"], sort=False):
        paths = list(dict.fromkeys(group["path"]))
        what = "the same run" if group["run_id"].nunique() == 1 else "finished runs"
        warnings.warn(
            f"{variant} on {task}, seed {seed}: {what} in {len(paths)} places "
            f"({', '.join(paths)}); counting {paths[0]} only",
            StoreWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------
# Which runs a cell reports (one hyperparameter point)
# ---------------------------------------------------------------------------------------------


def _reported_runs(
    runs: pd.DataFrame, rows: Mapping[str, TaskRow], agg: Agg
) -> tuple[pd.DataFrame, dict[tuple[str, str], str | None]]:
    parts, protocols = [], {}
    for key, group in runs.groupby(CELL, sort=False):
        kept, protocols[key] = _one_point(group, rows[key[0]], agg)
        parts.append(kept)
    return pd.concat(parts), protocols


def _one_point(group: pd.DataFrame, row: TaskRow, agg: Agg) -> tuple[pd.DataFrame, str | None]:
    """The runs of one hyperparameter point, and how that point was chosen (None: no sweep)."""
    selected = group[group["stage"] == SELECT_STAGE]
    reported = group[~group["stage"].isin(["", SELECT_STAGE])]
    protocol = None
    if len(selected) and len(reported):
        protocol = (
            f"two-stage: selected on seeds {_seed_list(selected)}, "
            f"reported on seeds {_seed_list(reported)}"
        )
        group = reported
    points = group["point"].unique()
    if len(points) == 1:
        return group, protocol
    sign = 1.0 if row.higher_is_better else -1.0
    finished = group[group["status"] == "done"]
    centres = sign * finished.groupby("point", sort=False)["score"].agg(agg)
    best = centres.reindex(points, fill_value=-math.inf).idxmax()
    grid = f"paper protocol: best of grid ({len(points)} points) on the same dev set"
    return group[group["point"] == best], protocol or grid


# ---------------------------------------------------------------------------------------------
# Summaries over seeds, deltas, best cells, GLUE
# ---------------------------------------------------------------------------------------------


def _summary(done: pd.DataFrame, rows: Mapping[str, TaskRow], ref: str, agg: Agg) -> pd.DataFrame:
    """(task, variant) x (stat, column): centre, std, n and delta of each metric and the score."""
    columns = [*metric_columns(done), "score"]
    grouped = done.groupby(CELL, sort=False)[columns]
    centre = grouped.agg(agg)
    reference = centre.xs(ref, level="variant") if ref in centre.index.unique("variant") else None
    if reference is None:
        delta = centre * math.nan
    else:
        delta = centre - reference.reindex(centre.index.get_level_values("task")).to_numpy()
    delta.loc[centre.index.get_level_values("variant") == ref] = math.nan
    sign = pd.Series([1.0 if rows[t].higher_is_better else -1.0 for t, _ in centre.index])
    signed = centre["score"] * sign.to_numpy()
    best = signed == signed.groupby(level="task").transform("max")
    stats = {"centre": centre, "std": grouped.std(), "n": grouped.count(), "delta": delta}
    summary = pd.concat(stats, axis=1)
    summary["best", "score"] = best
    return summary


def _cell(
    row: TaskRow,
    key: tuple[str, str],
    group: pd.DataFrame,
    done: pd.DataFrame,
    summary: pd.DataFrame,
    expected: pd.Series,
    protocol: str | None,
) -> Cell:
    finished = done[(done["task"] == key[0]) & (done["variant"] == key[1])]
    seeds = set().union(
        *(expected[pair] for pair in zip(group["experiment"], group["stage"], strict=True))
    )
    others = group[(group["status"] != "done") & ~group["seed"].isin(finished["seed"])]
    others = others.sort_values("seed", kind="stable").drop_duplicates("seed")
    missing = {
        int(s): status if status != "failed" else f"failed: {reason}"
        for s, status, reason in zip(
            others["seed"], others["status"], others["reason"], strict=True
        )
    }
    missing |= {s: "no run" for s in seeds - set(finished["seed"]) - missing.keys()}
    metrics = finished[metric_columns(finished)]
    stats = summary.loc[key] if key in summary.index else None
    delta = None if stats is None else _present(stats["delta"])
    return Cell(
        task=row.name,
        variant=key[1],
        seed_metrics={
            int(s): _present(m)
            for s, (_, m) in zip(finished["seed"], metrics.iterrows(), strict=True)
        },
        seed_scores=dict(zip(finished["seed"].astype(int), finished["score"], strict=True)),
        metrics={m: _summary_of(stats, DEV + m) for m in row.metrics},
        score=_summary_of(stats, "score"),
        expected=len(seeds | set(finished["seed"])),
        missing=dict(sorted(missing.items())),
        point=_point(group["record"].iloc[0]) if protocol else None,
        protocol=protocol,
        delta=delta or None,
        score_delta=None if stats is None else _value(stats["delta", "score"]),
        best=bool(stats is not None and stats["best", "score"]),
        runs=tuple(finished["record"]),
    )


def _present(values: pd.Series) -> dict[str, float]:
    """The metric values that are there (a run has only its own task's metrics)."""
    return {
        k.removeprefix(DEV): float(v) for k, v in values.items() if k != "score" and pd.notna(v)
    }


def _summary_of(stats: pd.Series | None, column: str) -> Summary:
    if stats is None or column not in stats["n"]:
        return Summary(None, None, 0)
    return Summary(
        _value(stats["centre", column]), _value(stats["std", column]), int(stats["n", column])
    )


def _value(x: Any) -> float | None:
    return None if pd.isna(x) else float(x)


def _glue(
    summary: pd.DataFrame, tasks: Sequence[TaskRow], variants: Sequence[str], ref: str
) -> dict[str, GlueCell] | None:
    # a factor point's row is not the task's benchmark setting: GLUE takes plain rows only
    glue_tasks = [t.name for t in tasks if t.info is not None and t.info.is_glue and not t.factors]
    if not glue_tasks:
        return None
    centres = summary["centre"].drop(columns="score")
    raw = {}
    for v in variants:
        per_task = {t: _present(centres.loc[t, v]) for t in glue_tasks if (t, v) in centres.index}
        raw[v] = glue_score(per_task)
    scores = pd.Series({v: g.score for v, g in raw.items()}, dtype=float)
    deltas = scores - scores.get(ref, math.nan)
    return {
        v: GlueCell(
            score=g.score,
            covered=g.covered,
            missing=tuple(t for t in g.missing if t in glue_tasks),
            delta=None if v == ref else _value(deltas[v]),
            best=bool(g.score is not None and g.score == scores.max()),
        )
        for v, g in raw.items()
    }


# ---------------------------------------------------------------------------------------------
# Rows, columns
# ---------------------------------------------------------------------------------------------


def _order_tasks(rows: Mapping[str, TaskRow]) -> list[str]:
    """GLUE tasks in benchmark order, then the others by name; a task's factor points by value."""
    rank = {name: i for i, name in enumerate(task_names())}

    def key(name: str) -> tuple:
        row = rows[name]
        task = row.task or name
        values = [_sortable(v) for v in (row.factors or {}).values()]
        return (rank.get(task, len(rank)), task, row.factors is not None, values)

    return sorted(rows, key=key)


def _sortable(value: Any) -> tuple[int, float, str]:
    """Numbers by size, before anything else by its text."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, float(value), "") if number else (1, 0.0, str(value))


def _variant_info(frame: pd.DataFrame) -> dict[str, VariantInfo]:
    firsts = frame.drop_duplicates("variant")
    experiments = frame.groupby("variant", sort=False)["experiment"].unique()
    return {
        key: VariantInfo(key, name, tuple(experiments[key]), method, record.method_params)
        for key, name, method, record in zip(
            firsts["variant"], firsts["name"], firsts["method"], firsts["record"], strict=True
        )
    }


def _reference(info: Mapping[str, VariantInfo], reference: str | None) -> str:
    if reference is None:
        baselines = [k for k, v in info.items() if v.method == "baseline"]
        return sorted(baselines)[0] if baselines else sorted(info)[0]
    if reference in info:
        return reference
    by_name = [k for k, v in info.items() if v.name == reference]
    if len(by_name) == 1:
        return by_name[0]
    hint = did_you_mean(reference, info, after=" ")
    raise SpecError(
        f"--reference: no variant {reference!r} in these runs; {hint}"
        f"choose one of {', '.join(sorted(info))}"
    )


def _order_variants(
    info: Mapping[str, VariantInfo], ref: str, spec_order: Sequence[str]
) -> tuple[str, ...]:
    rank = {name: i for i, name in enumerate(spec_order)}
    rest = sorted(
        (k for k in info if k != ref),
        key=lambda k: (rank.get(info[k].name, len(rank)), info[k].experiments, k),
    )
    return (ref, *rest)


def _point(r: RunRecord) -> dict[str, Any]:
    if r.sweep_point:
        return dict(r.sweep_point)
    return {k: v for k, v in r.method_params.items() if k != "method"}


def _seed_list(runs: pd.DataFrame) -> str:
    return ", ".join(str(s) for s in sorted(set(runs["seed"])))
