"""What every report table states beside its numbers: the protocol lines and the cost table."""

from __future__ import annotations

import math

import pandas as pd

from addrop_cli.report.aggregate import CELL, Table


def describe_protocol(table: Table) -> list[str]:
    """The lines every table states under it: epoch, centre, selection split, sweep protocol."""
    epoch = (
        "best epoch (the evaluation with the best selection-split score)"
        if table.epoch == "best"
        else "last epoch"
    )
    most = max((c.n for c in table.cells.values()), default=0)
    spread = "± sample std over seeds" if most > 1 else "one seed per cell, so no spread"
    lines = [
        f"Dev-set scores x100 at the {epoch}; {table.agg} {spread}; "
        f"n=k/N: k finished seeds of the N the experiment ran; Δ against {table.reference}."
    ]
    runs = table.frame[table.frame["evaluation"] == table.epoch]
    done = runs[runs["status"] == "done"]
    on_dev = set(done["selects_on_dev"])
    if on_dev == {True}:
        lines.append("Selection: dev set used for both early stopping and reporting.")
    elif on_dev == {False}:
        lines.append("Selection: held-out split for selection, dev for reporting.")
    elif on_dev:
        dev_variants = ", ".join(sorted(set(done.loc[done["selects_on_dev"], "name"])))
        lines.append(
            "Selection: mixed; dev set used for both early stopping and reporting in "
            f"{dev_variants}; held-out split for selection, dev for reporting elsewhere."
        )
    protocols = pd.Series({key: c.protocol for key, c in table.cells.items() if c.protocol})
    for protocol, variants in protocols.groupby(protocols, sort=True):
        names = ", ".join(sorted({v for _, v in variants.index}))
        lines.append(f"Hyperparameters ({names}): {protocol}.")
    sizes = sorted(done["truncated_dev"].dropna().unique())
    if sizes:
        listed = ", ".join(str(int(s)) for s in sizes)
        lines.append(f"Quick check: dev truncated to the first {listed} examples.")
    return lines


def cost_frame(table: Table) -> pd.DataFrame:
    """Wall time, throughput (means) and peak memory (the largest) per (task, variant) over its
    finished runs, with ratios against the reference on the same task (wall >1 and samples/s
    <1: slower)."""
    cost = table.counted.groupby(CELL).agg(
        n=("seed", "size"),
        wall_time_s=("wall_time_s", "mean"),
        prepare_time_s=("prepare_time_s", "mean"),
        samples_per_s=("train_samples_per_s", "mean"),
        peak_memory_mb=("peak_memory_mb", "max"),
    )
    order = [(t.name, v) for t in table.tasks for v in table.variants if (t.name, v) in cost.index]
    cost = cost.reindex(pd.MultiIndex.from_tuples(order, names=CELL))
    if table.reference in cost.index.unique("variant"):
        ref = cost.xs(table.reference, level="variant").replace(0, math.nan)
        ref = ref.reindex(cost.index.get_level_values("task"))
    else:
        ref = cost * math.nan
    cost["wall_ratio"] = cost["wall_time_s"].to_numpy() / ref["wall_time_s"].to_numpy()
    cost["throughput_ratio"] = cost["samples_per_s"].to_numpy() / ref["samples_per_s"].to_numpy()
    # a search's pruned selection runs: how many, and the training epochs they did not spend
    runs = table.frame[table.frame["evaluation"] == table.epoch]
    pruned = runs.assign(pruned=runs["status"] == "pruned").groupby(CELL)
    cost["pruned"] = pruned["pruned"].sum().reindex(cost.index).fillna(0).astype(int)
    cost["epochs_saved"] = pruned["epochs_saved"].sum().reindex(cost.index).fillna(0).astype(int)
    return cost.reset_index()
