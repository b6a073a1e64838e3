"""What every report table states beside its numbers: the protocol lines (the cost table
is :mod:`addrop_cli.report.cost`)."""

from __future__ import annotations

import pandas as pd

from addrop_cli.report.aggregate import Table


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
