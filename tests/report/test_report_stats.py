"""Report statistics against scipy, hand-worked Holm corrections and a plain-loop bootstrap; the
family correction, the two-level bootstrap's coverage, ASO, power and what the runs did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from addrop_cli.data.metrics import METRICS
from addrop_cli.report import build_report, holm, paired_bootstrap, seed_tests
from addrop_cli.report.comparisons import compare
from addrop_cli.report.render import grids
from addrop_cli.report.stats import NOT_ENOUGH_SEEDS, batch_metric, marker

GLUE_SMALL = Path(__file__).resolve().parents[1] / "fixtures" / "store" / "glue-small"


def test_seed_tests_match_scipy_on_known_inputs() -> None:
    variant = {1: 0.71, 2: 0.74, 3: 0.70, 4: 0.76, 5: 0.73}
    reference = {1: 0.69, 2: 0.70, 3: 0.70, 4: 0.72, 5: 0.68, 6: 0.71}
    got = seed_tests(variant, reference)
    a = [variant[s] for s in range(1, 6)]
    b = [reference[s] for s in range(1, 6)]
    assert got.n_paired == 5
    assert got.mean_diff == pytest.approx(np.mean(np.subtract(a, b)))
    assert got.t_p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert got.wilcoxon_p == pytest.approx(stats.wilcoxon(a, b).pvalue)
    welch = stats.ttest_ind(list(variant.values()), list(reference.values()), equal_var=False)
    assert got.welch_p == pytest.approx(welch.pvalue)


def test_seed_tests_undefined_cases_give_none() -> None:
    same = seed_tests({1: 0.5, 2: 0.6}, {1: 0.5, 2: 0.6})
    assert same.t_p is None and same.wilcoxon_p is None  # no difference at all
    shifted = seed_tests({1: 0.51, 2: 0.61}, {1: 0.5, 2: 0.6})
    assert shifted.t_p is None  # equal differences: t undefined, not a p of 0
    disjoint = seed_tests({1: 0.5, 2: 0.6, 3: 0.55}, {4: 0.4, 5: 0.45, 6: 0.42})
    assert disjoint.n_paired == 0 and disjoint.t_p is None and disjoint.welch_p is not None


def test_fewer_than_three_seeds_get_no_test() -> None:
    two = seed_tests({1: 0.70, 2: 0.74}, {1: 0.60, 2: 0.66})
    assert two.n_paired == 2 and two.mean_diff == pytest.approx(0.09)
    assert (two.t_p, two.wilcoxon_p, two.welch_p) == (None, None, None)
    one = seed_tests({1: 0.70}, {1: 0.60})
    assert (one.t_p, one.wilcoxon_p, one.welch_p) == (None, None, None)
    three = seed_tests({1: 0.70, 2: 0.74, 3: 0.71}, {1: 0.60, 2: 0.66, 3: 0.65})
    assert three.t_p is not None and three.wilcoxon_p is not None and three.welch_p is not None


def test_two_seed_report_says_so_instead_of_a_p_value() -> None:
    report = build_report([GLUE_SMALL], resamples=50)  # two seeds a cell
    assert all(c.seeds.t_p is None and c.p_holm is None for c in report.comparisons)
    stats_table = next(g for g in grids(report) if g.title == "Statistics")
    assert set(stats_table.text["p (uncorrected)"]) == {NOT_ENOUGH_SEEDS}
    assert set(stats_table.text["Holm p (0)"]) == {"—"}
    assert set(stats_table.text["ASO ε_min"]) == {"—"}  # no ASO on two seeds either


def test_one_variant_has_no_statistics_table(tmp_path: Path) -> None:
    store = tmp_path / "glue-small"
    shutil.copytree(GLUE_SMALL, store)
    for run in (store / "runs").iterdir():  # keep the reference variant only
        if json.loads((run / "run.json").read_text())["variant"] != "baseline":
            shutil.rmtree(run)
    report = build_report([store], resamples=50)
    assert tuple(report.table.variants) == ("baseline",)
    assert [g.title for g in grids(report)][:3] == ["Dev results", "What the runs did", "Cost"]


def test_holm_against_hand_worked_values() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(1*0.04, 0.06)
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.6, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_markers() -> None:
    assert (marker(0.009), marker(0.03), marker(0.05), marker(None)) == ("**", "*", "", "")


def test_fixture_comparisons_use_scipy_and_holm_across_tasks() -> None:
    table = build_report([GLUE_SMALL], resamples=200).table
    # the fixture has two seeds a cell: allow tests at two seeds to check the wiring
    comparisons, family = compare(table, resamples=200, min_seeds=2, aso_iterations=0)
    by_task = {c.task: c for c in comparisons}
    assert (family.size, family.variants, family.rows) == (3, 1, 3)
    rte = by_task["rte"]
    assert rte.seeds.t_p == pytest.approx(stats.ttest_rel([0.65, 0.69], [0.60, 0.62]).pvalue)
    assert rte.seeds.welch_p == pytest.approx(
        stats.ttest_ind([0.65, 0.69], [0.60, 0.62, 0.64], equal_var=False).pvalue
    )
    raw = [by_task[t].seeds.t_p for t in ("mrpc", "stsb", "rte")]
    assert [by_task[t].p_holm for t in ("mrpc", "stsb", "rte")] == pytest.approx(holm(raw))
    assert [by_task[t].p for t in ("mrpc", "stsb", "rte")] == pytest.approx(raw)
    assert all(c.marker == marker(c.p_holm) for c in by_task.values())
    boot = rte.bootstrap
    assert boot is not None and boot.seeds == (1, 2) and boot.n_examples == 100
    assert boot.diff == pytest.approx(((0.65 - 0.60) + (0.69 - 0.62)) / 2)
    assert boot.example_low < boot.diff < boot.example_high
    assert boot.low is None and boot.p is None  # two seeds: no two-level interval
    assert by_task["mrpc"].bootstrap is None  # no predictions stored for MRPC


def _record(preds, labels, guids=None) -> dict:
    guids = guids if guids is not None else [f"g{i}" for i in range(len(labels))]
    return {"guids": list(guids), "predictions": list(preds), "labels": list(labels)}


def test_paired_bootstrap_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    mine = np.where(rng.random(60) < 0.8, labels, 1 - labels)
    theirs = np.where(rng.random(60) < 0.7, labels, 1 - labels)
    got = paired_bootstrap(
        {1: (_record(mine, labels), _record(theirs, labels))}, "accuracy", resamples=300, seed=7
    )
    draws = np.random.default_rng(7).integers(0, 60, size=(300, 60))
    acc = METRICS["accuracy"].fn
    diffs = [acc(mine[i], labels[i]) - acc(theirs[i], labels[i]) for i in draws]
    low, high = np.quantile(diffs, [0.025, 0.975])
    assert (got.example_low, got.example_high) == pytest.approx((low, high))
    observed = acc(mine, labels) - acc(theirs, labels)
    assert got.diff == pytest.approx(observed)
    # one seed cannot stand for the seeds a new run would draw: no two-level interval, no p
    assert (got.low, got.high, got.p, got.seed_scale) == (None, None, None, 0)
    again = paired_bootstrap(
        {1: (_record(mine, labels), _record(theirs, labels))}, "accuracy", resamples=300, seed=7
    )
    assert again == got


def test_paired_bootstrap_matches_on_guid_and_is_null_for_equal_predictions() -> None:
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    preds = np.array([0, 1, 0, 0, 1, 1, 0, 1])
    guids = [f"g{i}" for i in range(8)]
    reversed_mine = _record(preds[::-1], labels[::-1], guids[::-1])
    got = paired_bootstrap({1: (reversed_mine, _record(preds, labels, guids))}, "f1", seed=1)
    assert (got.diff, got.example_low, got.example_high) == (0.0, 0.0, 0.0)
    assert got.low is None  # one seed: the examples-only interval alone


def test_paired_bootstrap_averages_seeds_and_detects_a_clear_gain() -> None:
    rng = np.random.default_rng(0)
    pairs = {}
    y = rng.normal(size=200)  # every seed is scored on the same dev examples
    for seed in (1, 2, 3):
        good, bad = y + rng.normal(scale=0.3, size=200), y + rng.normal(scale=1.5, size=200)
        pairs[seed] = (_record(good, y), _record(bad, y))
    got = paired_bootstrap(pairs, "pearson", resamples=400)
    expected = np.mean(
        [
            METRICS["pearson"].fn(np.array(m["predictions"]), np.array(m["labels"]))
            - METRICS["pearson"].fn(np.array(t["predictions"]), np.array(t["labels"]))
            for m, t in pairs.values()
        ]
    )
    assert got.diff == pytest.approx(expected)
    assert got.seeds == (1, 2, 3)
    assert 0 < got.low < got.diff < got.high and got.p < 0.01


@pytest.mark.parametrize("name", ["accuracy", "f1", "mcc", "pearson", "spearman", "accuracy_mm"])
def test_vectorised_metrics_agree_with_metrics_module(name: str) -> None:
    rng = np.random.default_rng(5)
    fn, reference = batch_metric(name), METRICS[name.split("_")[0]].fn
    if name in ("pearson", "spearman"):
        y = rng.normal(size=(6, 40))
        p = np.round(y + rng.normal(size=(6, 40)), 1)  # rounding makes ties for Spearman
        p[0] = 1.0  # a constant row: 0 by convention
    else:
        classes = 3 if name in ("mcc", "f1") else 2
        y = rng.integers(0, classes, size=(6, 40))
        p = np.where(rng.random((6, 40)) < 0.7, y, rng.integers(0, classes, size=(6, 40)))
        y[1], p[1] = y[1] % 2, p[1] % 2  # a binary row too
        p[2] = 0  # one predicted class only
    got = fn(p, y)
    want = [reference(p[i], y[i]) for i in range(len(y))]
    assert got == pytest.approx(want, abs=1e-12)


def test_last_epoch_reports_skip_the_best_epoch_bootstrap() -> None:
    table = build_report([GLUE_SMALL], epoch="last", resamples=50).table
    comparisons, _ = compare(table, resamples=50, min_seeds=2, aso_iterations=0)
    assert all(c.bootstrap is None for c in comparisons)
    assert all(c.seeds.t_p is not None for c in comparisons)


def test_one_seed_report_shows_no_p_value_and_claims_no_spread(tmp_path: Path) -> None:
    store = tmp_path / "glue-small"
    shutil.copytree(GLUE_SMALL, store)
    for run in (store / "runs").iterdir():  # seed 1 only
        if json.loads((run / "run.json").read_text())["seed"] != 1:
            shutil.rmtree(run)
    report = build_report([store], resamples=20)
    stats_table = next(g for g in grids(report) if g.title == "Statistics")
    assert set(stats_table.text["p (uncorrected)"]) == {NOT_ENOUGH_SEEDS}
    assert set(stats_table.text["Holm p (0)"]) == {"—"}
    assert all(c.seeds.welch_p is None and c.seeds.wilcoxon_p is None for c in report.comparisons)
    assert not any("std" in line for line in report.protocol)


def test_the_same_run_in_two_reported_folders_is_warned_about(tmp_path: Path) -> None:
    for copy in ("a", "b"):
        shutil.copytree(GLUE_SMALL, tmp_path / copy / "glue-small")
    report = build_report([tmp_path / "a", tmp_path / "b"], resamples=20)
    alone = build_report([GLUE_SMALL], resamples=20)
    assert report.table.cell("rte", "addrop").n == alone.table.cell("rte", "addrop").n
    duplicates = [w for w in report.warnings if "the same run in 2 places" in w]
    assert duplicates and len(duplicates) == sum(c.n for c in alone.table.cells.values())
    assert str(tmp_path / "b") in duplicates[0]
