"""A sweep's summary: the terminal table, summary.json and summary.md."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from addrop_cli.execution.sweeps.plan import Point, SweepPlan
from addrop_cli.execution.sweeps.selection import Selection
from addrop_cli.store.atomic import atomic_write_json, atomic_write_text

# ---------------------------------------------------------------------------------------------
# Summary: terminal table, summary.json, summary.md
# ---------------------------------------------------------------------------------------------


def summary_rows(selections: Sequence[Selection]) -> list[dict[str, Any]]:
    """One row per configuration, winners flagged (for JSON, Markdown and the terminal)."""
    rows = []
    for sel in sorted(selections, key=lambda s: (s.task, s.variant)):
        for score in sel.scores:
            rows.append(
                {
                    "task": sel.task,
                    "variant": sel.variant,
                    "point": score.point,
                    "metric": score.metric,
                    "objective": score.objective.center,
                    "std": score.objective.std,
                    "n": len(score.seeds),
                    "expected": score.expected,
                    "missing": {str(k): v for k, v in score.missing.items()},
                    "winner": score is sel.winner,
                }
            )
    return rows


def _fmt(value: float | None, std: float | None = None, missing: Any = None) -> str:
    if value is None:
        return "pruned" if any("pruned" in str(m) for m in (missing or {}).values()) else "-"
    text = f"{100 * value:.2f}"
    return text + (f" ± {100 * std:.2f}" if std is not None else "")


def _point_text(point: Point) -> str:
    return ", ".join(f"{path.split('.')[-1]}={value}" for path, value in point.items()) or "-"


def print_selection(console: Console, selections: Sequence[Selection], protocol: str) -> None:
    """Every configuration's score and the winner per task and variant."""
    for sel in sorted(selections, key=lambda s: (s.task, s.variant)):
        metric = sel.winner.metric if sel.winner else "?"
        table = Table(
            title=f"sweep {sel.task} / {sel.variant}: {metric} x100 on the selection seeds"
        )
        for column in ("point", "score", "n", ""):
            table.add_column(column)
        ranked = sorted(
            sel.scores,
            key=lambda s: (
                s.objective.center is None,
                -(s.objective.center or 0) * (1 if sel.higher_is_better else -1),
            ),
        )
        for score in ranked:
            n = f"{len(score.seeds)}/{score.expected}"
            table.add_row(
                _point_text(score.point),
                _fmt(score.objective.center, score.objective.std, score.missing),
                n,
                "winner" if score is sel.winner else "",
            )
        console.print(table)
    console.print(f"protocol: {protocol}", highlight=False)


SAMPLERS = {"tpe": "TPESampler", "cmaes": "CmaEsSampler"}
"""The Optuna sampler of each search that has one."""


def search_text(plan: SweepPlan) -> str:
    """Which search found the points: ``grid: 81 points`` or, for tpe/cmaes, the trials each
    study holds (new points, repeats asked again, states) and who proposed them."""
    sweep = plan.sweep
    if sweep.search in ("grid", "random"):
        return f"{sweep.search}: {len(plan.points)} points"
    head = (
        f"{sweep.search} (Optuna {SAMPLERS[sweep.search]}, seed {sweep.seed}; "
        f"pruner: {sweep.pruner}): sweep.trials={sweep.trials} per task and variant, "
        f"{len(plan.points)} distinct points"
    )
    return "; ".join([head, *(_study_text(n, c) for n, c in plan.study_counts.items())])


def _study_text(name: str, counts: dict[str, Any]) -> str:
    """``sst2/addrop: 8 trials (7 new points, 1 repeat asked again; 6 complete, 2 pruned);
    proposed by random 2, tpe 6``."""
    repeats = counts["repeats"]
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts["states"].items()))
    samplers = ", ".join(f"{who} {n}" for who, n in sorted(counts["samplers"].items()))
    return (
        f"{name}: {counts['trials']} trials ({counts['new']} new points, {repeats} "
        f"repeat{'s' if repeats != 1 else ''} asked again; {states or 'none'}); "
        f"proposed by {samplers or 'none'}"
    )


def protocol_text(plan: SweepPlan) -> str:
    select = ", ".join(map(str, plan.select_seeds))
    if plan.sweep.protocol == "paper":
        return (
            f"paper protocol: best of the grid on the same dev set (seeds {select}); "
            "optimistic, as in the AD-DROP paper"
        )
    report = ", ".join(map(str, plan.sweep.report_seeds or []))
    split = "held-out split" if plan.spec.data.heldout else "dev set"
    return f"two-stage: selected on seeds {select} ({split}), reported on seeds {report}"


def write_summary(folder: Path, plan: SweepPlan, selections: Sequence[Selection]) -> list[Path]:
    """``summary.json`` and ``summary.md``: every configuration's score and the winners."""
    rows = summary_rows(selections)
    protocol = protocol_text(plan)
    data = {
        "protocol": plan.sweep.protocol,
        "protocol_text": protocol,
        "select_seeds": plan.select_seeds,
        "report_seeds": plan.sweep.report_seeds,
        "points": len(plan.points),
        "search": {
            "search": plan.sweep.search,
            "sampler": SAMPLERS.get(plan.sweep.search),
            "pruner": plan.sweep.pruner,
            "trials": plan.sweep.trials if plan.sweep.search not in ("grid", "random") else None,
            "studies": plan.study_counts,
            "text": search_text(plan),
        },
        "winners": [
            {
                "task": s.task,
                "variant": s.variant,
                "point": s.winner.point,
                "objective": s.winner.objective.center,
            }
            for s in selections
            if s.winner is not None
        ],
        "configurations": rows,
    }
    json_path, md_path = folder / "summary.json", folder / "summary.md"
    atomic_write_json(json_path, data)
    lines = [f"# Sweep summary: {plan.spec.name}", "", f"Search: {search_text(plan)}.", ""]
    lines += [f"Protocol: {protocol}.", ""]
    lines += [
        "| task | variant | point | metric | score x100 | n | winner |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['task']} | {row['variant']} | {_point_text(row['point'])} | {row['metric']} "
            f"| {_fmt(row['objective'], row['std'], row['missing'])} "
            f"| {row['n']}/{row['expected']} "
            f"| {'**winner**' if row['winner'] else ''} |"
        )
    atomic_write_text(md_path, "\n".join(lines) + "\n")
    return [json_path, md_path]
