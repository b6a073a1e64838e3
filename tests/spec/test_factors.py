"""Factors: any setting as an axis of the run matrix (issue 25): expansion, run identity,
--dry-run, resume, one report row per value without a spec-version split, the curve table and
plot, and nested training subsets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cli_helpers import run_cli
from fixtures.store import make_store

from addrop_cli.data.examples import Example
from addrop_cli.data.subsets import _rng, nested_sample, stratified_order, stratified_sample
from addrop_cli.report import build_report, write_markdown_report
from addrop_cli.report.command import write_html_report
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand
from addrop_cli.store.records import RunConfig

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"
SIZES = "factors.data.train_size=[16,32]"
QUICK = ["tasks=[sst2]", "seeds=[1]", "train.epochs=1", "train.threads=1"]


def test_factor_values_cross_tasks_variants_and_seeds_with_their_own_ids() -> None:
    spec = load_spec(SMOKE, [SIZES, "factors.train.lr=[0.001,0.01]"])
    runs = expand(spec, SMOKE.parent)
    assert len(runs) == 2 * 2 * (2 * 2) * 2  # tasks x variants x (sizes x lrs) x seeds
    assert len({r.run_id for r in runs}) == len(runs)
    for run in runs:
        assert run.data.train_size == run.factors["data.train_size"]
        assert run.train.lr == run.factors["train.lr"]
        assert run.identity()["factors"] == run.factors
    first = runs[0]
    assert first.label == "sst2/baseline/seed1 [train_size=16, lr=0.001]"
    # seeds vary fastest, then factor points, then variants, then tasks
    assert [(r.factors["data.train_size"], r.seed) for r in runs[:4]] == [
        (16, 1), (16, 2), (16, 1), (16, 2)
    ]  # fmt: skip


def test_a_spec_without_factors_keeps_its_run_ids() -> None:
    runs = expand(load_spec(SMOKE), SMOKE.parent)
    assert all(r.factors is None and "factors" not in r.identity() for r in runs)
    # the ids `addrop run experiments/smoke.yaml` stored before factors existed
    assert [r.run_id for r in runs][:2] == ["92089d695809", "f64ab91bdf4b"]


def test_adding_a_factor_value_is_not_a_new_spec_version() -> None:
    from addrop_cli.spec.matrix import spec_version

    two = load_spec(SMOKE, [SIZES])
    three = load_spec(SMOKE, ["factors.data.train_size=[16,32,64]"])
    assert spec_version(two) == spec_version(three)
    shared = {r.run_id for r in expand(two, SMOKE.parent)}
    assert shared < {r.run_id for r in expand(three, SMOKE.parent)}


def test_dry_run_shows_factor_values(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run_cli(capsys, "run", SMOKE, *QUICK, SIZES, "--dry-run", "--results", tmp_path)
    assert result.code == 0, result.err
    assert "factors" in result.out
    assert "train_size=16" in result.out and "train_size=32" in result.out


def test_a_spec_with_a_factor_runs_resumes_and_reports_one_row_per_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *QUICK, SIZES)
    assert first.code == 0, first.err + first.out
    configs = [json.loads(p.read_text()) for p in tmp_path.glob("smoke/runs/*/run.json")]
    assert sorted(c["factors"]["data.train_size"] for c in configs) == [16, 16, 32, 32]
    again = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *QUICK, SIZES)
    assert "4 already in" in again.out and "0 to run" in again.out
    report = build_report([tmp_path / "smoke"], resamples=20)
    rows = [t.name for t in report.table.tasks]
    assert rows == ["sst2 [train_size=16]", "sst2 [train_size=32]"]
    assert set(report.table.variants) == {"baseline", "addrop"}
    assert not [w for w in report.warnings if "spec versions" in w]


def _factor_store(exp: Path) -> None:
    """RTE at train sizes 100 and 1000 (spec version f...) and 10000 (a later version that
    added the value), baseline and addrop, seeds 1-3, with dev predictions."""
    accuracy = {"baseline": (0.55, 0.60, 0.66), "addrop": (0.60, 0.63, 0.67)}
    slope = {"baseline": 0.01, "addrop": 0.02}  # per seed: paired differences that vary
    for k, size in enumerate((100, 1000, 10000)):
        for variant, params in (("baseline", make_store.BASELINE), ("addrop", make_store.ADDROP)):
            for seed in (1, 2, 3):
                config = make_store.run_config(
                    "sizes", task="rte", variant=variant, params=params, seed=seed,
                    data={"train_size": size},
                )  # fmt: skip
                config["factors"] = {"data.train_size": size}
                if size == 10000:
                    config["spec_hash"] = "e" * 16
                acc = round(accuracy[variant][k] + slope[variant] * seed, 6)
                predictions = make_store.rte_predictions(acc, seed)
                make_store.write_run(exp, config, {"accuracy": acc}, predictions=predictions)
    make_store.write_spec(exp, "sizes", ["baseline", "addrop"])


def test_report_keeps_factor_values_apart_and_draws_the_curve(tmp_path: Path) -> None:
    exp = tmp_path / "sizes"
    _factor_store(exp)
    report = build_report([exp], resamples=100)
    table = report.table
    assert set(table.variants) == {"baseline", "addrop"}  # no sizes@<version>/addrop split
    names = [t.name for t in table.tasks]
    assert names == [f"rte [train_size={n}]" for n in (100, 1000, 10000)]
    cell = table.cell("rte [train_size=1000]", "addrop")
    assert cell.n == 3
    assert cell.score.center == pytest.approx(0.63 + 0.04)
    assert table.glue is None  # factor rows are not the benchmark's setting

    md = write_markdown_report(tmp_path / "out" / "report.md", report).read_text()
    html = write_html_report(tmp_path / "out" / "report.html", report).read_text()
    assert "Curve: RTE: accuracy against data.train_size" in md
    assert "Holm p" in md and "bootstrap 95% CI" in md
    assert "Curve: RTE: accuracy against data.train_size" in html
    plots = sorted(p.name for p in (tmp_path / "out").glob("factor_*"))
    assert plots == ["factor_rte_data.train_size.png", "factor_rte_data.train_size.svg"]


def test_curve_differences_are_paired_and_holm_corrected_over_values(tmp_path: Path) -> None:
    from addrop_cli.report.curves import difference_frame, factor_curves

    exp = tmp_path / "sizes"
    _factor_store(exp)
    report = build_report([exp], resamples=100)
    (curve,) = factor_curves(report.table)
    assert curve.log_x  # 100 to 10000: two decades
    diffs = difference_frame(report, curve)
    assert list(diffs["x"]) == [100, 1000, 10000]
    assert list(diffs["diff"]) == pytest.approx([0.07, 0.05, 0.03])
    assert (diffs["p_holm"] >= diffs["t_p"]).all()
    assert (diffs["boot_low"] <= diffs["diff"] + 1e-9).all()


def test_variant_identity_ignores_factor_values() -> None:
    def config(size: int) -> RunConfig:
        raw = make_store.run_config(
            "x", task="rte", variant="a", params=make_store.BASELINE, seed=1,
            data={"train_size": size},
        )  # fmt: skip
        return RunConfig.model_validate(raw | {"factors": {"data.train_size": size}})

    assert config(100).variant_identity() == config(1000).variant_identity()


def _examples(labels: list) -> list[Example]:
    return [Example(str(i), "text", None, label) for i, label in enumerate(labels)]


@pytest.mark.parametrize("classes", [2, 3, None])
def test_train_size_subsets_of_a_seed_are_nested(classes: int | None) -> None:
    rng = random.Random(classes)
    regression = classes is None
    labels = [rng.random() if regression else rng.randrange(classes) for _ in range(120)]
    examples = _examples(labels)
    previous: set[int] = set()
    for n in range(1, len(examples) + 1):
        sample = set(nested_sample(examples, n, _rng(7, 3), regression=regression))
        assert len(sample) == n and previous <= sample
        previous = sample
    order = stratified_order(examples, _rng(7, 3), regression=regression)
    assert sorted(order) == list(range(len(examples)))


def test_nested_subsets_are_the_old_ones_for_two_classes() -> None:
    """Binary tasks (SST-2) keep the subsets they had before subsets were nested."""
    examples = _examples([random.Random(1).random() < 0.44 for _ in range(200)])
    for n in range(1, 200):
        old = stratified_sample(examples, n, _rng(3, 3), regression=False)
        assert nested_sample(examples, n, _rng(3, 3), regression=False) == old


def test_two_seed_curve_band_stays_within_the_metric_range(tmp_path: Path) -> None:
    from addrop_cli.report.curves import band_frame, factor_curves

    exp = tmp_path / "sizes"
    for size in (100, 1000):
        for seed, acc in ((1, 0.99), (2, 0.75)):  # one degree of freedom: +-12.7 std errors
            config = make_store.run_config(
                "sizes", task="rte", variant="baseline", params=make_store.BASELINE, seed=seed,
                data={"train_size": size},
            )  # fmt: skip
            config["factors"] = {"data.train_size": size}
            make_store.write_run(exp, config, {"accuracy": acc})
    report = build_report([exp], resamples=10)
    bands = band_frame(report.table, factor_curves(report.table)[0])
    assert len(bands) == 2 and (bands["n"] == 2).all()
    assert (bands["low"] >= 0).all() and (bands["high"] <= 1).all()
    assert (bands["high"] == 1).all()  # clipped, not dropped
