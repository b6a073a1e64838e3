"""A partial experiment's report says what is missing (issue 34, item 6): one line on top of the
terminal, Markdown and HTML reports naming the factor values no finished run has and the cells
short of the seeds the spec plans, and "not run" rows in the curve table."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.store import make_store
from rich.console import Console

from addrop_cli.report import build_report, write_markdown_report
from addrop_cli.report.render import curve_grids, print_terminal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "store"
SPEC = """name: sizes
tasks: [RTE]
seeds: [1, 2, 3]
methods:
  baseline: {method: baseline}
  addrop: {method: addrop}
factors:
  data.train_size: [100, 1000, 4000, 10000]
"""


def _sizes(exp: Path, spec: str | None = SPEC, *, skip=(("addrop", 1000, 3),)) -> None:
    """RTE at 100 and 1000 sentences, baseline and addrop, seeds 1-3, but the runs in ``skip``
    are unfinished (no DONE); the spec (when given) plans 4000 and 10000 too."""
    for size in (100, 1000):
        for variant, params in (("baseline", make_store.BASELINE), ("addrop", make_store.ADDROP)):
            for seed in (1, 2, 3):
                config = make_store.run_config(
                    "sizes", task="rte", variant=variant, params=params, seed=seed,
                    data={"train_size": size},
                )  # fmt: skip
                config["factors"] = {"data.train_size": size}
                acc = round(0.55 + 0.02 * seed + (0.03 if variant == "addrop" else 0), 6)
                best = "unfinished" if (variant, size, seed) in skip else {"accuracy": acc}
                make_store.write_run(
                    exp, config, best, predictions=make_store.rte_predictions(0.6, seed)
                )
    if spec is not None:
        (exp / "spec.yaml").write_text(spec)


def test_the_report_opens_with_the_factor_values_and_cells_not_run(tmp_path: Path) -> None:
    exp = tmp_path / "sizes"
    _sizes(exp)
    report = build_report([exp], resamples=20)
    line = (
        "Partial: 2 of 4 data.train_size values not run (4000, 10000); "
        "1 cell short of 3 seeds: rte [train_size=1000]/addrop (2 done)"
    )
    assert report.missing.line == line
    md = write_markdown_report(tmp_path / "out" / "report.md", report).read_text()
    assert md.splitlines()[:3] == ["# Report: sizes", "", line]
    page = (tmp_path / "out" / "report.html").read_text()
    assert f'<p class="partial">{line}</p>' in page
    console = Console(record=True, width=400)
    print_terminal(report, console)
    assert console.export_text().splitlines()[0] == line


def test_the_curve_table_shows_planned_values_as_not_run(tmp_path: Path) -> None:
    exp = tmp_path / "sizes"
    _sizes(exp)
    (grid,) = curve_grids(build_report([exp], resamples=20))
    rows = grid.text.to_dict("records")
    assert [(r["Variant"], r["data.train_size"]) for r in rows] == [
        ("addrop", "100"), ("addrop", "1000"), ("addrop", "4000"), ("addrop", "10000")
    ]  # fmt: skip
    assert rows[1]["seeds"] == "2"
    for row in rows[2:]:
        assert row["seeds"] == "0"
        assert {v for k, v in row.items() if k not in ("Variant", "data.train_size", "seeds")} == {
            "not run"
        }


def test_a_finished_study_says_nothing(tmp_path: Path) -> None:
    exp = tmp_path / "sizes"
    _sizes(exp, SPEC.replace(", 4000, 10000", ""), skip=())
    report = build_report([exp], resamples=20)
    assert report.missing.line == ""
    md = write_markdown_report(tmp_path / "out" / "report.md", report).read_text()
    assert not [line for line in md.splitlines() if line.startswith("Partial")]
    (grid,) = curve_grids(report)
    assert "not run" not in grid.text.to_numpy().tolist().__str__()


def test_the_specs_seeds_are_expected_even_where_no_run_has_them(tmp_path: Path) -> None:
    """An --only seed=1 study: every run finished, but seeds 2 and 3 are planned."""
    exp = tmp_path / "sizes"
    _sizes(exp, SPEC.replace("[100, 1000, 4000, 10000]", "[100, 1000]"), skip=())
    for run in (exp / "runs").iterdir():
        if '"seed": 1' not in (run / "run.json").read_text():
            for name in list(run.iterdir()):
                name.unlink()
            run.rmdir()
    line = build_report([exp], resamples=20).missing.line
    assert line.startswith("Partial: 4 cells short of 3 seeds: rte [train_size=100]/baseline (1 ")


def test_without_a_spec_yaml_cells_expect_the_seeds_the_runs_have(tmp_path: Path) -> None:
    """The committed glue-small store: its spec.yaml names no tasks; one run of each of three
    cells is unfinished, failed or unreadable."""
    report = build_report([FIXTURES / "glue-small"], resamples=20)
    assert report.missing.line == (
        "Partial: 3 cells short of 3 seeds: rte/addrop (2 done), mrpc/baseline (2 done), "
        "stsb/addrop (2 done)"
    )
    exp = tmp_path / "sizes"
    _sizes(exp, spec=None)  # no spec.yaml: the values the runs have are the plan
    assert build_report([exp], resamples=20).missing.line == (
        "Partial: 1 cell short of 3 seeds: rte [train_size=1000]/addrop (2 done)"
    )


@pytest.mark.parametrize("spec", ["", "- not\n- a mapping\n", "seeds: [1, 2, 3]\n"])
def test_a_spec_yaml_that_says_little_falls_back_to_the_runs(tmp_path: Path, spec: str) -> None:
    exp = tmp_path / "sizes"
    _sizes(exp, spec)
    assert build_report([exp], resamples=20).missing.line == (
        "Partial: 1 cell short of 3 seeds: rte [train_size=1000]/addrop (2 done)"
    )
