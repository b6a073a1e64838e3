"""The statistics table's text, and what the runs did: the evidence behind each comparison.

* **Statistics**: per comparison the paired difference, the uncorrected and the family-corrected
  p, the two-level bootstrap interval (seeds and examples) beside the example-only one (the
  test-set part), ASO's eps_min, the smallest difference the seeds could detect and the seeds the
  observed difference would need (:mod:`addrop_cli.report.comparisons`).
* **Run behaviour**: per variant and cell, the epochs that selection chose, how many seeds chose
  an epoch in which the method was inactive (AD-DROP's plain cross-tuning epochs; any method
  whose epoch records say it did nothing), and which runs' dev predictions are identical to the
  reference's for the same seed. A seed that selected an epoch before the method was ever
  active trained exactly as the reference did: the report warns and names the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from addrop_cli.report.aggregate import Cell, Table
from addrop_cli.report.bootstrap import p_floor
from addrop_cli.report.comparisons import Comparison, Family
from addrop_cli.report.stats import MIN_SEEDS, no_test_reason
from addrop_cli.report.verdicts import ASO_THRESHOLD, MAX_SEEDS, POWER
from addrop_cli.store.reader import RunRecord

ACTIVITY_KEYS = ("active", "addrop_epoch")
"""Keys of an epoch record's method statistics that say whether the method acted in that epoch
(1) or not (0); an epoch without them counts as active."""


@dataclass(frozen=True)
class Behaviour:
    """What one cell's finished runs did, seed by seed."""

    task: str
    variant: str
    selected: dict[int, int]
    """Seed -> the epoch selection chose (counted from 1)."""
    inactive: tuple[int, ...]
    """Seeds whose selected epoch was one in which the method did not act."""
    never_active: tuple[int, ...]
    """Seeds whose method had not acted in any epoch up to the selected one."""
    identical: tuple[int, ...]
    """Seeds whose dev predictions equal the reference's for the same seed."""


def behaviours(table: Table) -> list[Behaviour]:
    """Every cell's :class:`Behaviour` (the reference's too: its selected epochs)."""
    out = []
    for row in table.tasks:
        base = table.cell(row.name, table.reference)
        reference = {r.seed: r for r in base.runs} if base else {}
        for v in table.variants:
            cell = table.cell(row.name, v)
            if cell is not None and cell.runs:
                out.append(_behaviour(cell, reference, is_reference=v == table.reference))
    return out


def _behaviour(cell: Cell, reference: dict[int, RunRecord], *, is_reference: bool) -> Behaviour:
    selected, inactive, never, identical = {}, [], [], []
    for run in sorted(cell.runs, key=lambda r: r.seed):
        if run.metrics is None:
            continue
        best = run.metrics.best_epoch
        selected[run.seed] = best
        if is_reference:
            continue
        acted = {e.epoch: _acted(e.method) for e in run.epochs() if e.epoch <= best}
        if acted.get(best) is False:
            inactive.append(run.seed)
        if acted and not any(acted.values()):
            never.append(run.seed)
        other = reference.get(run.seed)
        if other is not None and _same_predictions(run, other):
            identical.append(run.seed)
    return Behaviour(
        cell.task, cell.variant, selected, tuple(inactive), tuple(never), tuple(identical)
    )


def _acted(stats: dict[str, float]) -> bool:
    for key in ACTIVITY_KEYS:
        if key in stats:
            return bool(stats[key])
    return True


def _same_predictions(run: RunRecord, other: RunRecord) -> bool:
    mine, theirs = run.predictions(), other.predictions()
    if not mine or not theirs or mine.keys() != theirs.keys():
        return False
    return all(
        mine[s].guids == theirs[s].guids and mine[s].predictions == theirs[s].predictions
        for s in mine
    )


def degeneracy_warnings(found: Sequence[Behaviour], display: dict[str, str]) -> list[str]:
    """One line per cell in which some seeds selected an epoch before the method ever acted."""
    lines = []
    for b in found:
        if not b.never_active:
            continue
        epochs = sorted({b.selected[s] for s in b.never_active})
        lines.append(
            f"{b.variant} on {display.get(b.task, b.task)}: seed{_s(b.never_active)} "
            f"{_list(b.never_active)} selected epoch {_list(epochs)}, before the method had acted "
            "in any epoch, so those runs trained as the reference did "
            f"({len(b.identical)} with predictions identical to it); to measure the method, "
            "use cross_tuning: false (AD-DROP), a lower learning rate, or a later first epoch "
            "of the method"
        )
    return lines


def behaviour_text(
    found: Sequence[Behaviour], table: Table
) -> tuple[pd.DataFrame, tuple[str, ...]] | None:
    """The run-behaviour table's display strings and notes (None without finished runs)."""
    if not found:
        return None
    display = {t.name: t.display for t in table.tasks}
    text = pd.DataFrame(
        {
            "Task": [display.get(b.task, b.task) for b in found],
            "Variant": [b.variant for b in found],
            "selected epochs (by seed)": [_epochs(b) for b in found],
            "inactive at selection": [
                "—" if b.variant == table.reference else _count(b.inactive, b) for b in found
            ],
            "identical to ref": [
                "—" if b.variant == table.reference else _count(b.identical, b) for b in found
            ],
        }
    )
    notes = (
        "Selected epoch: the evaluation with the best selection-split score (counted from 1), "
        "per seed in seed order. Inactive at selection: seeds whose selected epoch was one in "
        "which the method did not act (AD-DROP's plain epochs under cross-tuning). Identical to "
        f"ref: seeds whose dev predictions equal {table.reference}'s for the same seed.",
    )
    return text, notes


def stats_text(
    comparisons: Sequence[Comparison], family: Family, table: Table
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The statistics table's display strings and notes, a row per comparison."""
    display = {t.name: t.display for t in table.tasks}
    text = pd.DataFrame(
        {
            "Task": [display.get(c.task, c.task) for c in comparisons],
            "Variant": [c.variant for c in comparisons],
            "seeds": [str(c.seeds.n_paired) for c in comparisons],
            "paired Δ": [_signed(c.seeds.mean_diff) for c in comparisons],
            "p (uncorrected)": [_p_test(c) for c in comparisons],
            f"Holm p ({family.size})": [_holm(c) for c in comparisons],
            "95% CI seeds+examples": [_interval(c, "two") for c in comparisons],
            "95% CI examples only": [_interval(c, "examples") for c in comparisons],
            "boot p": [_boot_p(c) for c in comparisons],
            "ASO ε_min": [_num(c.aso, 2) for c in comparisons],
            "detectable Δ": [_detectable(c) for c in comparisons],
            "seeds for Δ": [_needed(c) for c in comparisons],
        }
    )
    notes = (
        f"Against {table.reference}, x100. Seed tests on per-seed task scores, paired on shared "
        f"seeds (Welch's where none is shared; none with fewer than {MIN_SEEDS} seeds); "
        f"{family.legend}. Only the Holm p decides a marker, a bold cell or a word like "
        "'beats'.",
        "95% CI seeds+examples: the two-level bootstrap (seeds, and dev examples with one index "
        "set shared by every seed), the interval to read; examples only: the seeds held fixed, "
        "the test-set part of the uncertainty (the only one below 3 seeds). boot p: the two-level "
        "one, no finer than its "
        "resamples resolve (docs/statistics.md).",
        f"ASO ε_min (deepsig, Bonferroni over the {family.size}): below {ASO_THRESHOLD} the "
        "variant almost stochastically dominates the reference; 0.5 is no order either way.",
        f"Detectable Δ: the smallest true difference these seeds detect with {POWER:.0%} power "
        "at the corrected level (the family's 0.05 over its size) and the observed spread; "
        f"seeds for Δ: the seeds that would detect the observed Δ so (>{MAX_SEEDS}: more).",
    )
    return text, notes


def _p_test(c: Comparison) -> str:
    if c.p is None:
        return no_test_reason(c.seeds.n_paired)
    return _p(c.p) + (" (Welch)" if c.test == "Welch" else "")


def _holm(c: Comparison) -> str:
    return "—" if c.p_holm is None else _p(c.p_holm) + c.marker


def _interval(c: Comparison, which: str) -> str:
    b = c.bootstrap
    if b is None:
        return "—"
    low, high = (b.low, b.high) if which == "two" else (b.example_low, b.example_high)
    return "—" if low is None else f"[{_signed(low)}, {_signed(high)}]"


def _boot_p(c: Comparison) -> str:
    b = c.bootstrap
    if b is None or b.p is None:
        return "—"
    floor = p_floor(b.resamples)
    return f"<{floor:g}" if b.p < floor else _p(b.p)


def _detectable(c: Comparison) -> str:
    d = c.power.detectable if c.power else None
    return "—" if d is None else f"±{100 * d:.2f}"


def _needed(c: Comparison) -> str:
    n = c.power.seeds_needed if c.power else None
    if n is None:
        return "—"
    return f">{MAX_SEEDS}" if n > MAX_SEEDS else str(n)


def _epochs(b: Behaviour) -> str:
    return " ".join(str(b.selected[s]) for s in sorted(b.selected))


def _count(seeds: tuple[int, ...], b: Behaviour) -> str:
    if not seeds:
        return f"0/{len(b.selected)}"
    return f"{len(seeds)}/{len(b.selected)} (seed{_s(seeds)} {_list(seeds)})"


def _list(values: Sequence[int]) -> str:
    return ", ".join(map(str, values))


def _s(values: Sequence[int]) -> str:
    return "" if len(values) == 1 else "s"


def _signed(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else f"{100 * value:+.2f}"


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.{digits}f}"
