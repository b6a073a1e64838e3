"""Machine-readable reports: the aggregates as DataFrames (CSV) and one JSON document.

Raw fractions (not x100); NaN is an empty CSV field and ``null`` in JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import pandas as pd

from addrop_cli.report.build import Report
from addrop_cli.report.frame import DEV
from addrop_cli.report.verdicts import ASO_THRESHOLD


def table_frame(report: Report) -> pd.DataFrame:
    """One row per (task, variant, metric) of the main table, raw fractions; plus GLUE rows."""
    table = report.table
    long = table.summary.stack(level=1, future_stack=True)
    long.index = long.index.set_names("column", level=2)
    long = long.reset_index()
    per_cell = pd.DataFrame(
        [
            {
                "task": t,
                "variant": v,
                "n": cell.n,
                "expected": cell.expected,
                "p_holm": c.p_holm if (c := report.comparison(t, v)) else None,
                "marker": c.marker if c else "",
                "cell_best": report.bold(t, v),
            }
            for (t, v), cell in table.cells.items()
        ]
    )
    wanted = pd.DataFrame(
        [
            {"task": t.name, "variant": v, "column": DEV + m if m != "score" else m, "metric": m}
            for t in table.tasks
            for v in table.variants
            if table.cell(t.name, v) is not None
            for m in (*t.metrics, "score")
        ]
    )
    out = wanted.merge(
        long.drop(columns=["n", "best"]), how="left", on=["task", "variant", "column"]
    )
    out = out.merge(per_cell, how="left", on=["task", "variant"])
    out = out.assign(
        epoch=table.epoch, agg=table.agg, is_reference=out["variant"] == table.reference
    )
    out = out.rename(columns={"centre": "center", "cell_best": "best"})
    glue = pd.DataFrame(
        [
            {
                "task": "glue",
                "variant": v,
                "metric": "glue_score",
                "center": g.score,
                "n": len(g.covered),
                "expected": len(g.covered) + len(g.missing),
                "delta": g.delta,
                "marker": "",
                "best": False,  # no test stands behind a GLUE score
                "is_reference": v == table.reference,
            }
            for v, g in (table.glue or {}).items()
        ]
    ).assign(epoch=table.epoch, agg=table.agg)
    columns = ["task", "variant", "metric", "epoch", "agg", "center", "std", "n", "expected"]
    columns += ["delta", "p_holm", "marker", "best", "is_reference"]
    return pd.concat([out, glue], ignore_index=True).reindex(columns=columns)


def stats_frame(report: Report) -> pd.DataFrame:
    """One row per comparison: the seed tests (uncorrected and Holm over the family), the
    two-level bootstrap, ASO and the power figures, flattened."""
    rows = []
    for c in report.comparisons:
        seeds, boot = asdict(c.seeds), asdict(c.bootstrap) if c.bootstrap else {}
        power = asdict(c.power) if c.power else {}
        rows.append(
            {"task": c.task, "variant": c.variant, "reference": c.reference}
            | {k if k != "t_p" else "paired_t_p": v for k, v in seeds.items()}
            | {"test": c.test, "p": c.p, "p_holm": c.p_holm, "family_size": report.family.size}
            | {"marker": c.marker, "significant": c.significant}
            | {f"bootstrap_{k}": boot.get(k) for k in _BOOT_KEYS}
            | {"aso_eps_min": c.aso, "aso_threshold": ASO_THRESHOLD}
            | {f"power_{k}": power.get(k) for k in ("alpha", "detectable", "seeds_needed")}
        )
    frame = pd.DataFrame(rows).rename(columns={"bootstrap_n_examples": "bootstrap_examples"})
    counts = ["bootstrap_resamples", "bootstrap_examples", "power_seeds_needed"]
    return frame.astype(dict.fromkeys(counts, "Int64")) if len(frame) else frame


_BOOT_KEYS = (
    "metric", "diff", "low", "high", "p", "example_low", "example_high", "level", "resamples",
    "n_examples", "seeds", "seed_scale",
)  # fmt: skip


def to_csv(frame: pd.DataFrame) -> str:
    out = frame.copy()
    for column in out.columns:  # lists (bootstrap seeds) as space-separated values
        if out[column].map(lambda v: isinstance(v, (list, tuple))).any():
            out[column] = out[column].map(
                lambda v: " ".join(map(str, v)) if isinstance(v, (list, tuple)) else v
            )
    return out.to_csv(index=False, lineterminator="\n")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def to_json(report: Report) -> str:
    """Every aggregate, with the per-seed values behind each cell."""
    table = report.table
    cells = []
    for (task, variant), cell in sorted(table.cells.items()):
        cells.append(
            {
                "task": task,
                "variant": variant,
                "seed_scores": {str(s): v for s, v in cell.seed_scores.items()},
                "seed_metrics": {str(s): dict(m) for s, m in cell.seed_metrics.items()},
                "metrics": {m: asdict(s) for m, s in cell.metrics.items()},
                "score": asdict(cell.score),
                "expected": cell.expected,
                "missing": {str(s): why for s, why in cell.missing.items()},
                "point": dict(cell.point) if cell.point else None,
                "protocol": cell.protocol,
                "delta": dict(cell.delta) if cell.delta else None,
                "score_delta": cell.score_delta,
                "best": cell.best,
                "bold": report.bold(task, variant),
                "runs": [r.run_id for r in cell.runs],
            }
        )
    doc = {
        "format": 1,
        "experiments": [str(p) for p in report.experiments],
        "epoch": table.epoch,
        "agg": table.agg,
        "reference": table.reference,
        "protocol": list(report.protocol),
        "glue_formula": report.glue_formula,
        "legend": report.legend,
        "family": asdict(report.family),
        "missing": {"line": report.missing.line} | asdict(report.missing),
        "tasks": [
            {"name": t.name, "display": t.display, "metrics": list(t.metrics)}
            | {"main_metric": t.main_metric}
            for t in table.tasks
        ],
        "variants": [asdict(table.variant_info[v]) for v in table.variants],
        "cells": cells,
        "glue": {v: asdict(g) for v, g in (table.glue or {}).items()},
        "table": _records(table_frame(report)),
        "statistics": _records(stats_frame(report)),
        "cost": _records(report.cost),
        "runs": _runs(report),
        "warnings": list(report.warnings),
    }
    return json.dumps(_finite(doc), indent=2, default=str, allow_nan=False) + "\n"


def _runs(report: Report) -> list[dict[str, Any]]:
    """Every run loaded, finished or not, with its status and why it is not a result."""
    return [
        {"run_id": r.run_id, "path": str(r.path), "task": r.task, "variant": r.variant}
        | {"seed": r.seed, "status": r.status, "reason": r.reason}
        for r in report.records
    ]


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
