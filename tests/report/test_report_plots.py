"""Report plots (valid, non-empty PNG and SVG) and the sweep protocols behind them."""

from __future__ import annotations

import importlib.util
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from matplotlib.container import BarContainer

from addrop_cli.report import build_report, plots, write_plots

STORE = Path(__file__).resolve().parents[1] / "fixtures" / "store"
_spec = importlib.util.spec_from_file_location("make_store", STORE / "make_store.py")
make_store = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_store)

GRID = {(0.1, 0.1): 0.60, (0.1, 0.2): 0.62, (0.3, 0.1): 0.63, (0.3, 0.2): 0.66}
"""(p, q) -> RTE dev accuracy of seed 1 (seed 2 scores 0.02 more)."""


def assert_valid_figure(stem: Path) -> None:
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 1000
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and len(root) > 0


def _write_sweep(exp: Path, *, two_stage: bool) -> None:
    stage = "select" if two_stage else None
    for (p, q), acc in GRID.items():
        for seed in (1, 2):
            config = make_store.pq_run_config(
                exp.name, task="rte", p=p, q=q, seed=seed, stage=stage
            )
            make_store.write_run(exp, config, {"accuracy": acc + 0.02 * (seed - 1)})
    report_seeds = (3, 4, 5) if two_stage else (1, 2)
    for seed in report_seeds:
        base = make_store.run_config(
            exp.name, task="rte", variant="baseline", params=make_store.BASELINE, seed=seed
        )
        make_store.write_run(exp, base, {"accuracy": 0.61})
        if two_stage:
            config = make_store.pq_run_config(
                exp.name, task="rte", p=0.3, q=0.2, seed=seed, stage="report"
            )
            make_store.write_run(exp, config, {"accuracy": 0.60 + 0.01 * seed})


def test_fixture_plots_are_written_and_valid(tmp_path: Path) -> None:
    report = build_report([STORE / "glue-small"], resamples=20)
    files = write_plots(report, tmp_path)
    stems = {f.stem for f in files}
    assert stems == {"curves_mrpc", "curves_stsb", "curves_rte", "bars"}
    assert len(files) == 8
    for stem in stems:
        assert_valid_figure(tmp_path / stem)


def test_paper_protocol_sweep_picks_best_point_and_draws_heatmap(tmp_path: Path) -> None:
    exp = tmp_path / "sweep"
    _write_sweep(exp, two_stage=False)
    report = build_report([exp], resamples=20)
    cell = report.table.cell("rte", "addrop")
    assert cell.protocol.startswith("paper protocol: best of grid (4 points)")
    assert cell.point == {"methods.addrop.p": 0.3, "methods.addrop.q": 0.2}
    assert cell.metrics["accuracy"].center == pytest.approx(0.67)
    assert (cell.n, cell.expected) == (2, 2)
    assert any("paper protocol" in line for line in report.protocol)
    files = write_plots(report, tmp_path / "plots")
    assert_valid_figure(tmp_path / "plots" / "heatmap_rte_addrop")
    assert tmp_path / "plots" / "heatmap_rte_addrop.png" in files


def test_two_stage_sweep_reports_on_other_seeds(tmp_path: Path) -> None:
    exp = tmp_path / "two-stage"
    _write_sweep(exp, two_stage=True)
    report = build_report([exp], resamples=20)
    cell = report.table.cell("rte", "addrop")
    assert cell.protocol == "two-stage: selected on seeds 1, 2, reported on seeds 3, 4, 5"
    assert sorted(cell.seed_scores) == [3, 4, 5]
    assert cell.metrics["accuracy"].center == pytest.approx(0.64)
    assert (cell.n, cell.expected) == (3, 3)
    write_plots(report, tmp_path / "plots")
    assert_valid_figure(tmp_path / "plots" / "heatmap_rte_addrop")  # from the selection runs


def test_prior_experiment_plot(tmp_path: Path) -> None:
    exp = tmp_path / "prior"
    variants = {
        "drop-low": (dict(make_store.ADDROP, drop="low"), 0.6),
        "drop-high": (make_store.ADDROP, 1.0),
        "random": (dict(make_store.ADDROP, attribution="random"), 0.9),
        "baseline": (make_store.BASELINE, 0.8),
    }
    for variant, (params, scale) in variants.items():
        for seed in (1, 2):
            config = make_store.run_config(
                "prior", task="sst2", variant=variant, params=params, seed=seed
            )
            make_store.write_run(exp, config, {"accuracy": 0.85}, loss_scale=scale)
    files = write_plots(build_report([exp], resamples=20), tmp_path / "plots")
    assert {f.stem for f in files} >= {"prior_sst2", "curves_sst2", "bars"}
    assert_valid_figure(tmp_path / "plots" / "prior_sst2")


def test_prior_plot_is_the_papers_train_and_dev_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = tmp_path / "prior"
    rises = {"drop-low": 0.3, "drop-high": 0.0, "random": 0.1, "baseline": 0.2}
    variants = {
        "drop-low": dict(make_store.ADDROP, drop="low"),
        "drop-high": make_store.ADDROP,
        "random": dict(make_store.ADDROP, attribution="random"),
        "baseline": make_store.BASELINE,
    }
    for variant, params in variants.items():
        for seed in (1, 2):
            config = make_store.run_config(
                "prior", task="sst2", variant=variant, params=params, seed=seed
            )
            dev_loss = [0.5 + rises[variant] * e + 0.01 * seed for e in range(3)]
            make_store.write_run(exp, config, {"accuracy": 0.85}, dev_loss=dev_loss)
    figures = {}

    def keep(fig, stem: Path) -> list[Path]:  # type: ignore[no-untyped-def]
        figures[stem.name] = fig
        return []

    monkeypatch.setattr(plots, "_save", keep)
    write_plots(build_report([exp], resamples=20), tmp_path / "plots")
    train, dev = figures["prior_sst2"].axes
    assert "training loss" in train.get_title() and "dev loss" in dev.get_title()
    lines = {line.get_label(): line.get_ydata() for line in dev.get_lines()}
    assert set(lines) == {"drop low", "drop high", "random", "no drop"}
    for label, variant in (("drop low", "drop-low"), ("no drop", "baseline")):
        expected = [0.5 + rises[variant] * e + 0.015 for e in range(3)]  # mean of seeds 1, 2
        assert lines[label] == pytest.approx(expected)
    titles = [ax.get_title() for ax in figures["curves_sst2"].axes]
    assert len(titles) == 3 and "dev loss" in titles[2]


def _bar_store(tmp_path: Path) -> Path:
    """STS-B with two wildly different seeds (a t-interval far past a correlation's range) and
    RTE scored near 70 by both variants (bars that a zero-based axis would flatten)."""
    exp = tmp_path / "bars"
    scores = {
        ("stsb", "baseline"): (0.85, 0.10),
        ("stsb", "addrop"): (0.80, 0.05),
        ("rte", "baseline"): (0.71, 0.72),
        ("rte", "addrop"): (0.72, 0.73),
    }
    for (task, variant), per_seed in scores.items():
        params = make_store.BASELINE if variant == "baseline" else make_store.ADDROP
        for seed, score in enumerate(per_seed, start=1):
            config = make_store.run_config(
                exp.name, task=task, variant=variant, params=params, seed=seed
            )
            pair = {"pearson": score, "spearman": score}
            metrics = {"accuracy": score} if task == "rte" else pair
            make_store.write_run(exp, config, metrics)
    return exp


def test_bars_clip_intervals_zoom_and_keep_the_legend_off_the_bars(tmp_path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    report = build_report([_bar_store(tmp_path)], resamples=20)
    fig = plots._bars_figure(report.table)
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    ends = [
        y
        for bars in ax.containers
        if isinstance(bars, BarContainer)
        for segment in bars.errorbar.lines[2][0].get_segments()
        for _, y in segment
    ]
    assert ends and min(ends) >= -100 and max(ends) <= 100  # a correlation stays in [-1, 1]
    assert max(ends) == pytest.approx(100)  # the STS-B interval was clipped, not dropped
    bottom, top = ax.get_ylim()
    assert bottom < 0 < top  # STS-B's clipped interval reaches below zero, so no zoom here
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # outside the axes, so it covers no bar
    assert "95% t-interval" in ax.get_title()


def test_bars_zoom_to_the_data_and_one_seed_has_no_interval(tmp_path: Path) -> None:
    exp = _bar_store(tmp_path)
    for run in (exp / "runs").iterdir():  # RTE only, seed 1 only
        config = (run / "run.json").read_text()
        if '"stsb"' in config or '"seed": 2' in config:
            shutil.rmtree(run)
    fig = plots._bars_figure(build_report([exp], resamples=20).table)
    ax = fig.axes[0]
    bottom, top = ax.get_ylim()
    assert 60 < bottom < 71 and 72 < top < 80  # zoomed to 71-72, not from 0
    assert all(bars.errorbar is None for bars in ax.containers if isinstance(bars, BarContainer))
    assert "one seed: no interval" in ax.get_title()
    assert len(ax.lines) == 2  # the axis-break mark: two short slashes on the y axis
