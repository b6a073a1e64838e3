"""Expected best score for a tuning budget (Dodge et al., 2019): the estimator against brute
force, and its table and plot in the report of a sweep."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import pytest
from test_sweep import write_selection_store

from addrop_cli.report import load_runs
from addrop_cli.report.budget import budget_markdown, expected_max, shown_ks, trial_scores


def _brute_force(scores: list[float], k: int, *, higher: bool = True) -> tuple[float, float]:
    """Mean and std of the best of k draws, over every ordered sample with replacement."""
    best = max if higher else min
    maxima = [best(draw) for draw in itertools.product(scores, repeat=k)]
    return statistics.fmean(maxima), statistics.pstdev(maxima)


@pytest.mark.parametrize(
    "scores",
    [[0.61, 0.70, 0.55, 0.64], [0.5, 0.7, 0.7, 0.6], [0.3, 0.3, 0.3, 0.3], [0.9, 0.1, 0.4, 0.2]],
)
@pytest.mark.parametrize("higher", [True, False])
def test_the_estimator_equals_brute_force_over_all_ordered_samples(
    scores: list[float], higher: bool
) -> None:
    curve = expected_max(scores, higher=higher)
    assert len(curve) == 4
    for k, (mean, std) in enumerate(curve, start=1):
        want_mean, want_std = _brute_force(scores, k, higher=higher)
        assert mean == pytest.approx(want_mean, abs=1e-12)
        assert std == pytest.approx(want_std, abs=1e-9)


def test_the_curve_starts_at_the_mean_and_climbs_towards_the_best() -> None:
    scores = [0.61, 0.70, 0.55, 0.64, 0.66]
    curve = expected_max(scores)
    assert curve[0][0] == pytest.approx(statistics.fmean(scores))
    assert curve[0][1] == pytest.approx(statistics.pstdev(scores))
    means = [m for m, _ in curve]
    assert means == sorted(means) and means[-1] < max(scores)


def test_shown_ks_are_every_k_up_to_ten_then_a_spread_ending_at_n() -> None:
    assert shown_ks(4) == [1, 2, 3, 4]
    ks = shown_ks(81)
    assert ks[:10] == list(range(1, 11)) and ks[-1] == 81 and len(ks) <= 21
    assert ks == sorted(set(ks))


def test_a_sweeps_report_gets_the_budget_table_from_its_selection_points(tmp_path: Path) -> None:
    exp = tmp_path / "sel"
    write_selection_store(exp)
    (budget,) = trial_scores(load_runs(exp))
    # three points scored on both seeds; (0.3, 0.1) lost a seed and is counted apart
    assert sorted(budget.scores) == pytest.approx([0.61, 0.63, 0.65])
    assert budget.unscored == 1 and budget.metric == "accuracy"
    assert budget.curve[0][0] == pytest.approx(0.63)
    text = budget_markdown(load_runs(exp))
    assert "## Expected best score for a tuning budget" in text and "Dodge et al." in text
    assert "| 1 | 63.00 |" in text and "1 configurations without a score" in text


def test_addrop_report_adds_the_table_and_the_plot(tmp_path: Path) -> None:
    from addrop_cli.report import report_command

    exp = tmp_path / "sel"
    write_selection_store(exp)
    out = tmp_path / "report"
    report_command([exp], formats=["markdown"], out=out)
    assert "Expected best score for a tuning budget" in (out / "report.md").read_text()
    assert (out / "budget_rte.png").is_file() and (out / "budget_rte.svg").is_file()
