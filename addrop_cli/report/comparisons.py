"""Every variant against the reference, as one family of comparisons.

A report makes one comparison per non-reference variant and table row (a task, or a task at one
factor value) where a seed test applies. Those comparisons are **one family**: Holm's step-down
correction runs over all of them (the legend names its size), and the markers, the bold cell and
any "beats" follow the corrected p only; the uncorrected p stays in the statistics table,
labelled so. Beside the seed tests each comparison carries the two-level bootstrap interval
(:mod:`addrop_cli.report.bootstrap`), ASO and the power figures
(:mod:`addrop_cli.report.verdicts`).
"""

from __future__ import annotations

from dataclasses import dataclass

from addrop_cli.report import verdicts
from addrop_cli.report.aggregate import Cell, Table, TaskRow
from addrop_cli.report.bootstrap import RESAMPLES, BootstrapCI, cell_bootstrap
from addrop_cli.report.stats import MIN_SEEDS, SeedTests, holm, marker, seed_tests
from addrop_cli.report.verdicts import Power, aso_eps_min, power_of

ALPHA = 0.05
"""The family's level: a corrected p below it is significant."""


@dataclass(frozen=True)
class Family:
    """The comparisons one correction runs over."""

    size: int
    variants: int
    rows: int
    alpha: float = ALPHA

    @property
    def legend(self) -> str:
        if self.size == 0:
            return "no seed test (too few seeds), so nothing is marked"
        grid = f"{self.variants} variant{_s(self.variants)} x {self.rows} row{_s(self.rows)}"
        of = "" if self.size == self.variants * self.rows else " with a test, of"
        return (
            f"* p<0.05, ** p<0.01: paired t-test over seeds (Welch's where no seed is shared), "
            f"Holm over {self.size} comparison{_s(self.size)}{of}: {grid}"
        )


@dataclass(frozen=True)
class Comparison:
    """Everything known about one (task row, variant) against the reference."""

    task: str
    variant: str
    reference: str
    seeds: SeedTests
    test: str | None
    """The test behind the marker: "paired t", "Welch", or None when none applies."""
    p: float | None
    """That test's p-value, uncorrected."""
    p_holm: float | None
    """Holm-corrected over the report's family."""
    marker: str
    bootstrap: BootstrapCI | None
    aso: float | None = None
    """deepsig's ASO eps_min of the variant over the reference (lower: the variant dominates)."""
    power: Power | None = None

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


def compare(
    table: Table,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    min_seeds: int = MIN_SEEDS,
    aso_iterations: int | None = None,
) -> tuple[list[Comparison], Family]:
    """Every non-reference cell against the reference cell of its row, and their family.

    ``aso_iterations``: deepsig's bootstrap iterations (default
    :data:`~addrop_cli.report.verdicts.ASO_ITERATIONS`, read at call time); 0 leaves ASO out."""
    iterations = verdicts.ASO_ITERATIONS if aso_iterations is None else aso_iterations
    pending = _seed_tests(table, min_seeds)
    adjusted = holm([item[5] for item in pending])
    tested = [item for item in pending if item[5] is not None]
    family = Family(
        size=len(tested),
        variants=len({item[0].variant for item in tested}),
        rows=len({item[2].name for item in tested}),
    )
    alpha = family.alpha / max(1, family.size)
    out = []
    for (cell, base, row, tests, which, p), p_holm in zip(pending, adjusted, strict=True):
        enough = min(cell.n, base.n) >= min_seeds
        scores = list(cell.seed_scores.values()), list(base.seed_scores.values())
        out.append(
            Comparison(
                task=row.name,
                variant=cell.variant,
                reference=base.variant,
                seeds=tests,
                test=which,
                p=p,
                p_holm=p_holm,
                marker=marker(p_holm),
                bootstrap=None  # predictions.json holds the best epoch's predictions only
                if table.epoch != "best"
                else cell_bootstrap(row, cell, base, resamples=resamples, seed=seed, level=level),
                aso=aso_eps_min(
                    *scores, comparisons=max(1, family.size), seed=seed, iterations=iterations
                )
                if enough and iterations > 0
                else None,
                power=power_of(cell.seed_scores, base.seed_scores, alpha=alpha)
                if tests.n_paired >= min_seeds
                else None,
            )  # fmt: skip
        )
    return out, family


_Pending = tuple[Cell, Cell, TaskRow, SeedTests, "str | None", "float | None"]


def _seed_tests(table: Table, min_seeds: int) -> list[_Pending]:
    """(cell, reference cell, row, seed tests, the test behind the marker, its p) per pair."""
    pending: list[_Pending] = []
    for row in table.tasks:
        base = table.cell(row.name, table.reference)
        if base is None:
            continue
        for v in table.variants[1:]:
            cell = table.cell(row.name, v)
            if cell is None:
                continue
            tests = seed_tests(cell.seed_scores, base.seed_scores, min_seeds=min_seeds)
            paired = tests.t_p is not None
            which, p = ("paired t", tests.t_p) if paired else ("Welch", tests.welch_p)
            pending.append((cell, base, row, tests, which if p is not None else None, p))
    return pending


def _s(n: int) -> str:
    return "" if n == 1 else "s"
