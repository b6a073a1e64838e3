"""The cost table: what a (task, variant) cost, per run and per optimiser step.

Wall time mixes the machine's load, the epochs early stopping let a run train and a method's
one-off passes, so the same run can take 304 s on one day and 425 s on another. The per-step
figures do not mix them: the training seconds and the process CPU seconds per optimiser step
(evaluations not counted), each run's median over its epochs (one epoch slowed by a neighbour
does not move it), then the mean over the cell's runs. Ratios against the reference use the
per-step figures; where a cell or its reference has none (runs stored before addrop recorded
them), the ratio falls back to wall time and says so. The 1-minute load average recorded at each
evaluation shows when the runs of one cell ran under different loads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from addrop_cli.report.aggregate import CELL, Table
from addrop_cli.report.frame import epoch_cost

LOAD_MARGIN = 1.0
"""The runs of one cell ran under different loads when their mean 1-minute load averages differ
by more than this: one busy core."""

_RUN_COST = ("step_time_s", "cpu_step_s", "load_mean", "load_max", "cpus")
_RATIOS = {
    "step_ratio": "step_time_s",
    "cpu_ratio": "cpu_step_s",
    "wall_ratio": "wall_time_s",
    "throughput_ratio": "samples_per_s",
}


def _all_or_nan(values: pd.Series) -> float:
    """The mean over the cell's runs, or NaN unless every run recorded the figure."""
    return float(values.mean(skipna=False))


def cost_frame(table: Table) -> pd.DataFrame:
    """One row per (task, variant) over its finished runs: wall time, throughput (means), peak
    memory (the largest), per-step training and CPU time (see the module), the range of the runs'
    mean load and its flags (``mixed_load``, ``over_cores``), and ratios against the reference on
    the same task: ``step_ratio`` and ``cpu_ratio`` (per step; >1: dearer), ``wall_ratio`` and
    ``throughput_ratio`` (as before; wall time mixes load and epochs)."""
    counted = table.counted
    per_run = [epoch_cost(r) for r in counted["record"]]
    runs = counted.join(pd.DataFrame(per_run, index=counted.index, columns=_RUN_COST, dtype=float))
    cost = runs.groupby(CELL).agg(
        n=("seed", "size"),
        wall_time_s=("wall_time_s", "mean"),
        prepare_time_s=("prepare_time_s", "mean"),
        samples_per_s=("train_samples_per_s", "mean"),
        peak_memory_mb=("peak_memory_mb", "max"),
        step_time_s=("step_time_s", _all_or_nan),
        cpu_step_s=("cpu_step_s", _all_or_nan),
        load_low=("load_mean", "min"),
        load_high=("load_mean", "max"),
        load_max=("load_max", "max"),
        cpus=("cpus", "max"),
    )
    order = [(t.name, v) for t in table.tasks for v in table.variants if (t.name, v) in cost.index]
    cost = cost.reindex(pd.MultiIndex.from_tuples(order, names=CELL))
    if table.reference in cost.index.unique("variant"):
        ref = cost.xs(table.reference, level="variant").replace(0, math.nan)
        ref = ref.reindex(cost.index.get_level_values("task"))
    else:
        ref = cost * math.nan
    for ratio, column in _RATIOS.items():
        cost[ratio] = cost[column].to_numpy() / ref[column].to_numpy()
    cost["mixed_load"] = (cost["load_high"] - cost["load_low"]) > LOAD_MARGIN
    cost["over_cores"] = cost["load_max"] > cost["cpus"]
    # a search's pruned selection runs: how many, and the training epochs they did not spend
    frame = table.frame[table.frame["evaluation"] == table.epoch]
    pruned = frame.assign(pruned=frame["status"] == "pruned").groupby(CELL)
    cost["pruned"] = pruned["pruned"].sum().reindex(cost.index).fillna(0).astype(int)
    cost["epochs_saved"] = pruned["epochs_saved"].sum().reindex(cost.index).fillna(0).astype(int)
    return cost.reset_index()


def cost_text(cost: pd.DataFrame, table: Table) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The cost table's display strings (a row per row of :func:`cost_frame`) and its notes."""
    display = {t.name: t.display for t in table.tasks}
    cells = cost["task"].map(lambda t: display.get(t, t)) + " / " + cost["variant"]
    by_step = cost["step_ratio"].notna()
    text = pd.DataFrame(
        {
            "Task": cost["task"].map(lambda t: display.get(t, t)),
            "Variant": cost["variant"],
            "runs": cost["n"].astype(str),
            "train ms/step": (cost["step_time_s"] * 1000).map(lambda x: _num(x, 1)),
            "CPU ms/step": (cost["cpu_step_s"] * 1000).map(lambda x: _num(x, 1)),
            "wall time (s)": cost["wall_time_s"].map(lambda x: _num(x, 1)),
            "train samples/s": cost["samples_per_s"].map(lambda x: _num(x, 1)),
            "peak memory (MB)": cost["peak_memory_mb"].map(lambda x: _num(x, 0)),
            "time/step x ref": cost.apply(_ratio_text, axis=1),
            "CPU/step x ref": cost["cpu_ratio"].map(lambda x: _num(x, 2, "x")),
            "load (1 min)": cost.apply(_load_text, axis=1),
        }
    )
    notes = [
        "Per step: training seconds (evaluations not counted) and process CPU seconds (all "
        "threads) per optimiser step, each run's median over its epochs, then the mean over the "
        "cell's runs; wall time and samples/s: means over finished runs; peak memory: the "
        f"largest. Ratios against {table.reference} on the same task use the per-step figures "
        "(wall time mixes machine load and the epochs early stopping ran)."
    ]
    notes += _fallback_notes(cost, cells, by_step)
    notes += _load_notes(cost, cells)
    if cost["prepare_time_s"].notna().any():
        after_wall = text.columns.get_loc("wall time (s)") + 1
        text.insert(after_wall, "preparation (s)", cost["prepare_time_s"].map(lambda x: _num(x, 1)))
        notes.append(
            "Preparation: a method's pass over the training data before its first step "
            "(Child-Tuning_D's Fisher information), once per run and inside the wall time."
        )
    if cost["pruned"].any():
        text["pruned runs"] = cost["pruned"].astype(str)
        text["epochs saved"] = cost["epochs_saved"].astype(str)
        notes.append("Pruned: selection runs a search's pruner stopped; the epochs they saved.")
    return text, tuple(notes)


def _fallback_notes(cost: pd.DataFrame, cells: pd.Series, by_step: pd.Series) -> list[str]:
    unknown = cost["step_time_s"].isna()
    if not unknown.any():
        return []
    note = (
        "—: per-step figures not recorded in every run of the cell (runs stored before addrop "
        "recorded steps, CPU time and load per epoch)"
    )
    wall = ~by_step & cost["wall_ratio"].notna()
    if wall.any():
        note += (
            "; '(wall)' ratios fall back to mean wall time, which mixes machine load and "
            f"early-stopped epochs: {'every cell' if wall.all() else ', '.join(cells[wall])}"
        )
    return [note + "."]


def _load_notes(cost: pd.DataFrame, cells: pd.Series) -> list[str]:
    if cost["load_high"].isna().all():
        return []
    notes = [
        "Load (1 min): the machine's 1-minute load average at each evaluation, averaged per run; "
        f"the range over the cell's runs. 'mixed': the runs' means differ by more than "
        f"{LOAD_MARGIN:g} (a busy core), so their per-step times are not alike (CPU time per step "
        "is less affected); '> N cores': some evaluation saw a load above the machine's N "
        "logical CPUs."
    ]
    mixed, over = cost["mixed_load"], cost["over_cores"]
    if mixed.any():
        notes.append(f"Runs under different loads: {', '.join(cells[mixed])}.")
    if over.any():
        notes.append(f"Load above the cores in some epochs: {', '.join(cells[over])}.")
    return notes


def _ratio_text(row: Mapping[str, float]) -> str:
    if pd.notna(row["step_ratio"]):
        return _num(row["step_ratio"], 2, "x")
    return "—" if pd.isna(row["wall_ratio"]) else _num(row["wall_ratio"], 2, "x (wall)")


def _load_text(row: Mapping[str, float]) -> str:
    low, high = row["load_low"], row["load_high"]
    if pd.isna(low):
        return "—"
    text = f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f}"
    if row["mixed_load"]:
        text += " mixed"
    if row["over_cores"]:
        text += f" > {int(row['cpus'])} cores"
    return text


def _num(value: float | None, digits: int, suffix: str = "") -> str:
    return "—" if value is None or pd.isna(value) else f"{value:,.{digits}f}{suffix}"
