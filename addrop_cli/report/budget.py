"""Expected best score for a tuning budget (Dodge et al., 2019, "Show Your Work: Improved
Reporting of Experimental Results", EMNLP): from the N held-out scores of a variant's trials,
the expected maximum after k trials drawn at random from them, k = 1 .. N, with its spread.

With the scores sorted, v_(1) <= ... <= v_(N), and the empirical CDF F(v_(i)) = i / N, the best
of k draws with replacement is v_(i) with probability (i/N)^k - ((i-1)/N)^k, so

    E[max_k] = sum_i v_(i) ((i/N)^k - ((i-1)/N)^k)
    Var[max_k] = sum_i v_(i)^2 ((i/N)^k - ((i-1)/N)^k) - E[max_k]^2

(ties need no care: tied scores' weights add up to the probability of their value). For a
metric where lower is better the same is computed for the minimum. A variant's trials are its
sweep's selection-stage configurations: one score per point, the mean over the selection seeds
of the main metric on the selection split at the best epoch; pruned and unfinished points have
no score and are counted apart. Two methods compared at the same k were given the same budget.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from addrop_cli.data.metrics import higher_is_better
from addrop_cli.store.reader import SELECT_STAGE, RunRecord

SHOWN_KS = 10
"""Tables list every k up to this many trials, then a spread of k ending at N."""


def expected_max(scores: Sequence[float], *, higher: bool = True) -> list[tuple[float, float]]:
    """(E[best of k], its std) for k = 1 .. N, Dodge et al.'s estimator on ``scores``."""
    n = len(scores)
    ordered = sorted(scores, reverse=not higher)  # the best value last
    out = []
    for k in range(1, n + 1):
        weights = [(i / n) ** k - ((i - 1) / n) ** k for i in range(1, n + 1)]
        mean = sum(w * v for w, v in zip(weights, ordered, strict=True))
        square = sum(w * v * v for w, v in zip(weights, ordered, strict=True))
        out.append((mean, math.sqrt(max(square - mean * mean, 0.0))))
    return out


@dataclass(frozen=True)
class Budget:
    """One (task, variant)'s trials and its expected best score at each budget k."""

    experiment: str
    task: str
    variant: str
    metric: str
    scores: tuple[float, ...]
    curve: tuple[tuple[float, float], ...]
    unscored: int
    """Configurations without a score (pruned, failed, unfinished): not among the N."""


def trial_scores(records: Sequence[RunRecord]) -> list[Budget]:
    """Per (experiment, task, variant) with at least two scored configurations, its budget."""
    groups: dict[tuple[str, str, str], dict[str, list[RunRecord]]] = defaultdict(dict)
    for r in records:
        if r.sweep_stage == SELECT_STAGE and r.sweep_point is not None:
            point = repr(sorted(r.sweep_point.items()))
            groups[r.experiment, r.task, r.variant].setdefault(point, []).append(r)
    budgets = []
    for (experiment, task, variant), points in sorted(groups.items()):
        scores, metric, unscored = [], "", 0
        for runs in points.values():
            done = [r for r in runs if r.status == "done" and r.metrics is not None]
            if len(done) < len(runs) or not done:
                unscored += 1  # a point with a pruned or missing seed is no result
                continue
            metric = done[0].metrics.main_metric  # type: ignore[union-attr]
            values = [(r.metrics.best.select or r.metrics.best.dev)[metric] for r in done]  # type: ignore[union-attr]
            scores.append(sum(values) / len(values))
        if len(scores) < 2:
            continue
        higher = _higher(metric)
        curve = tuple(expected_max(scores, higher=higher))
        budgets.append(Budget(experiment, task, variant, metric, tuple(scores), curve, unscored))
    return budgets


def _higher(metric: str) -> bool:
    try:
        return higher_is_better(metric)
    except KeyError:  # a metric of a custom task the registry does not know: higher is better
        return True


def shown_ks(n: int) -> list[int]:
    """Every k up to SHOWN_KS, then about SHOWN_KS more spread evenly up to N."""
    if n <= SHOWN_KS:
        return list(range(1, n + 1))
    step = math.ceil((n - SHOWN_KS) / SHOWN_KS)
    return [*range(1, SHOWN_KS + 1), *range(SHOWN_KS + step, n, step), n]


def _title(b: Budget) -> str:
    return f"{b.task} / {b.variant} ({b.experiment})"


def _note(b: Budget) -> str:
    unscored = f"; {b.unscored} configurations without a score left out" if b.unscored else ""
    return (
        f"N = {len(b.scores)} configurations (selection-stage points), {b.metric} x100 on the "
        f"selection split, mean over the selection seeds{unscored}"
    )


LEGEND = (
    "Expected best score after k trials (Dodge et al., 2019, 'Show Your Work'): the expected "
    "maximum of k of the N configurations' scores drawn at random with replacement, ± its std."
)


def budget_markdown(records: Sequence[RunRecord]) -> str:
    """A Markdown section, one table per (task, variant); empty when no variant has trials."""
    budgets = trial_scores(records)
    if not budgets:
        return ""
    parts = ["## Expected best score for a tuning budget", "", LEGEND, ""]
    for b in budgets:
        parts += [f"### {_title(b)}", "", "| k | expected best | ± std |", "|---:|---:|---:|"]
        for k in shown_ks(len(b.scores)):
            mean, std = b.curve[k - 1]
            parts.append(f"| {k} | {100 * mean:.2f} | {100 * std:.2f} |")
        parts += ["", _note(b), ""]
    return "\n".join(parts)


def print_budget(records: Sequence[RunRecord], console: Console) -> None:
    """The same tables in the terminal."""
    for b in trial_scores(records):
        table = Table(title=f"Expected best score for a budget: {_title(b)}", caption=_note(b))
        for column in ("k trials", "expected best", "± std"):
            table.add_column(column, justify="right")
        for k in shown_ks(len(b.scores)):
            mean, std = b.curve[k - 1]
            table.add_row(str(k), f"{100 * mean:.2f}", f"{100 * std:.2f}")
        console.print(table)


def write_budget_plots(records: Sequence[RunRecord], out: Path) -> list[Path]:
    """``budget_<task>.png`` and ``.svg``: per task, each variant's expected best score
    against the number of trials, with a ±1 std band."""
    by_task: dict[str, list[Budget]] = defaultdict(list)
    for b in trial_scores(records):
        by_task[b.task].append(b)
    files: list[Path] = []
    for task, budgets in by_task.items():
        fig = Figure(figsize=(6.0, 4.0), layout="constrained")
        ax = fig.subplots()
        for b in budgets:
            ks = range(1, len(b.curve) + 1)
            mean = [100 * m for m, _ in b.curve]
            std = [100 * s for _, s in b.curve]
            label = b.variant + (
                f" ({b.experiment})" if len({x.experiment for x in budgets}) > 1 else ""
            )
            ax.plot(ks, mean, marker="o", markersize=3, label=f"{label}, N={len(b.scores)}")
            low = [m - s for m, s in zip(mean, std, strict=True)]
            high = [m + s for m, s in zip(mean, std, strict=True)]
            ax.fill_between(ks, low, high, alpha=0.2)
        ax.set(
            xlabel="k trials (tuning budget)",
            ylabel=f"expected best {budgets[0].metric} x100",
            title=f"{task}: expected best score for a budget (± std)",
        )
        ax.legend(fontsize=8)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"budget_{re.sub(r'[^A-Za-z0-9_.-]+', '_', task)}"
        for path in (stem.with_name(f"{stem.name}.png"), stem.with_name(f"{stem.name}.svg")):
            fig.savefig(path, dpi=150 if path.suffix == ".png" else "figure")
            files.append(path)
    return files
