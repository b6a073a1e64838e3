"""Report tables from the committed ``tests/fixtures/store/glue-small`` store: numbers worked out
by hand (see make_store.py), unfinished runs shown as such, every format rendered."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from fixtures.store import make_store
from rich.console import Console

from addrop_cli.errors import SpecError, StoreError
from addrop_cli.report import (
    StoreWarning,
    aggregate,
    build_report,
    load_runs,
    report_command,
    summarize,
    write_markdown_report,
)

STORE = Path(__file__).resolve().parents[1] / "fixtures" / "store"
GLUE_SMALL = STORE / "glue-small"


@pytest.fixture(scope="module")
def report():
    built = build_report([GLUE_SMALL], resamples=200)
    # the store's warnings are collected into the report (and printed by `addrop report`)
    assert [w for w in built.warnings if "metrics.json: unreadable" in w]
    return built


def approx(value: float) -> object:
    return pytest.approx(value, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def test_load_runs_marks_failed_unfinished_and_corrupt_runs() -> None:
    with pytest.warns(StoreWarning, match="metrics.json: unreadable.*run skipped"):
        runs = load_runs(GLUE_SMALL)
    status = {(r.task, r.variant, r.seed): r.status for r in runs}
    assert len(runs) == 18
    assert status[("mrpc", "baseline", 2)] == "failed"
    assert status[("rte", "addrop", 3)] == "unfinished"
    assert status[("stsb", "addrop", 1)] == "corrupt"
    assert sum(s == "done" for s in status.values()) == 15
    failed = next(r for r in runs if r.status == "failed")
    assert "out of memory" in failed.reason


def test_unreadable_run_json_is_skipped_with_a_warning(tmp_path: Path) -> None:
    exp = shutil.copytree(GLUE_SMALL, tmp_path / "glue-small")
    victim = sorted((exp / "runs").iterdir())[0]
    (victim / "run.json").write_text("{not json")
    with pytest.warns(StoreWarning) as caught:
        runs = load_runs(exp)
    assert any("run.json: unreadable" in str(w.message) for w in caught)
    assert len(runs) == 17
    assert victim not in {r.path for r in runs}


def test_store_errors_are_one_line_with_a_fix(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such folder") as err:
        load_runs(tmp_path / "nope")
    assert len(err.value.problems) == 1
    with pytest.raises(StoreError, match="not a results folder"):
        load_runs(tmp_path)
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    with pytest.raises(StoreError, match="holds no runs"):
        load_runs(tmp_path / "empty")
    newer = shutil.copytree(GLUE_SMALL, tmp_path / "newer")
    (newer / "experiment.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(StoreError, match="newer than this addrop reads"):
        load_runs(newer)


def test_a_results_folder_expands_to_its_experiments(tmp_path: Path) -> None:
    shutil.copytree(GLUE_SMALL, tmp_path / "results" / "glue-small")
    with pytest.warns(StoreWarning):
        assert len(load_runs(tmp_path / "results")) == 18


# ---------------------------------------------------------------------------------------------
# The main table against hand-worked numbers
# ---------------------------------------------------------------------------------------------


def test_cells_hold_hand_computed_means_stds_and_seed_counts(report) -> None:
    t = report.table
    assert t.reference == "baseline"
    assert t.variants == ("baseline", "addrop")
    assert [task.name for task in t.tasks] == ["mrpc", "stsb", "rte"]  # GLUE order

    rte_b, rte_a = t.cell("rte", "baseline"), t.cell("rte", "addrop")
    assert rte_b.metrics["accuracy"].center == approx(0.62)
    assert rte_b.metrics["accuracy"].std == approx(0.02)
    assert (rte_b.n, rte_b.expected) == (3, 3)
    assert rte_a.metrics["accuracy"].center == approx(0.67)
    assert rte_a.metrics["accuracy"].std == approx(math.sqrt(0.0008))
    assert (rte_a.n, rte_a.expected) == (2, 3)
    assert rte_a.missing == {3: "unfinished"}
    assert rte_a.delta["accuracy"] == approx(0.05)

    mrpc_b, mrpc_a = t.cell("mrpc", "baseline"), t.cell("mrpc", "addrop")
    assert (mrpc_b.n, mrpc_b.expected) == (2, 3)
    assert mrpc_b.missing[2].startswith("failed: RuntimeError")
    assert mrpc_b.metrics["f1"].center == approx(0.82)
    assert mrpc_b.metrics["accuracy"].center == approx(0.72)
    assert mrpc_b.score.center == approx(0.77)  # mean of (F1 + acc) / 2 per seed
    assert mrpc_a.metrics["f1"].std == approx(0.02)
    assert mrpc_a.metrics["accuracy"].std == approx(0.01)
    assert mrpc_a.score.center == approx(0.80)
    assert mrpc_a.delta == {"f1": approx(0.03), "accuracy": approx(0.03)}
    assert mrpc_a.score_delta == approx(0.03)

    stsb_a = t.cell("stsb", "addrop")
    assert (stsb_a.n, stsb_a.expected) == (2, 3)
    assert stsb_a.missing == {1: "corrupt"}
    assert stsb_a.metrics["pearson"].center == approx(0.845)
    assert stsb_a.metrics["spearman"].center == approx(0.83)
    assert stsb_a.score_delta == approx(0.8375 - 0.815)
    assert all(t.cell(task, "addrop").best for task in ("rte", "mrpc", "stsb"))
    assert not any(t.cell(task, "baseline").best for task in ("rte", "mrpc", "stsb"))


def test_glue_row_is_the_mean_of_task_scores(report) -> None:
    glue = report.table.glue
    assert glue["baseline"].score == approx((0.62 + 0.77 + 0.815) / 3)
    assert glue["addrop"].score == approx((0.67 + 0.80 + 0.8375) / 3)
    assert glue["addrop"].delta == approx((0.67 + 0.80 + 0.8375 - 0.62 - 0.77 - 0.815) / 3)
    assert glue["addrop"].best and not glue["baseline"].best
    assert set(glue["baseline"].covered) == {"rte", "mrpc", "stsb"}


def test_last_epoch_and_reference_options(report) -> None:
    with pytest.warns(StoreWarning):
        runs = load_runs(GLUE_SMALL)
    last = aggregate(runs, epoch="last")
    assert last.cell("rte", "baseline").metrics["accuracy"].center == approx(0.61)
    assert last.glue["baseline"].score == approx((0.62 + 0.77 + 0.815) / 3 - 0.01)
    flipped = aggregate(runs, reference="addrop")
    assert flipped.variants[0] == "addrop"
    assert flipped.cell("rte", "baseline").delta["accuracy"] == approx(-0.05)
    assert flipped.cell("rte", "addrop").delta is None
    with pytest.raises(SpecError, match="did you mean 'addrop'"):
        aggregate(runs, reference="adrop")


def test_summarize_mean_median_and_std() -> None:
    assert summarize([1.0, 2.0, 10.0]).center == approx(13 / 3)
    assert summarize([1.0, 2.0, 10.0], "median").center == 2.0
    assert summarize([1.0, 2.0, 10.0]).std == approx(
        math.sqrt(((1 - 13 / 3) ** 2 + (2 - 13 / 3) ** 2 + (10 - 13 / 3) ** 2) / 2)
    )
    assert summarize([0.5]).std is None
    assert summarize([]).center is None


def test_protocol_and_cost(report) -> None:
    protocol = " ".join(report.protocol)
    assert "best epoch" in protocol
    assert "dev set used for both early stopping and reporting" in protocol
    cost = {(c.task, c.variant): c for c in report.cost.itertuples()}
    assert cost["rte", "addrop"].wall_time_s == approx(150.0)
    assert cost["rte", "addrop"].wall_ratio == approx(1.5)
    assert cost["rte", "addrop"].throughput_ratio == approx(0.75)
    assert cost["rte", "addrop"].peak_memory_mb == approx(900.0)
    assert cost["rte", "baseline"].wall_ratio == approx(1.0)


def test_heldout_selection_and_dev_size_are_stated(tmp_path: Path) -> None:
    exp = tmp_path / "held"
    for variant, params in (("baseline", make_store.BASELINE), ("addrop", make_store.ADDROP)):
        for seed in (1, 2):
            config = make_store.run_config(
                "held",
                task="rte",
                variant=variant,
                params=params,
                seed=seed,
                data={"heldout": 0.1, "dev_size": 50},
            )
            make_store.write_run(exp, config, {"accuracy": 0.6 + 0.01 * seed})
    protocol = " ".join(build_report([exp]).protocol)
    assert "held-out split for selection, dev for reporting" in protocol
    assert "first 50 examples" in protocol


def test_experiments_merge_same_configs_and_key_clashing_ones(tmp_path: Path) -> None:
    other = tmp_path / "exp-b"
    for seed in (4, 5):
        base = make_store.run_config(
            "exp-b", task="rte", variant="baseline", params=make_store.BASELINE, seed=seed
        )
        make_store.write_run(other, base, {"accuracy": 0.66})
        wide = dict(make_store.ADDROP, p=0.5)
        config = make_store.run_config(
            "exp-b", task="rte", variant="addrop", params=wide, seed=seed
        )
        make_store.write_run(other, config, {"accuracy": 0.7})
    merged = build_report([GLUE_SMALL, other], resamples=50)
    t = merged.table
    assert set(t.variants) == {"baseline", "glue-small/addrop", "exp-b/addrop"}
    rte = t.cell("rte", "baseline")
    assert (rte.n, rte.expected) == (5, 5)
    assert rte.metrics["accuracy"].center == approx((0.60 + 0.62 + 0.64 + 0.66 + 0.66) / 5)
    assert t.cell("rte", "exp-b/addrop").delta["accuracy"] == approx(0.7 - 0.636)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def test_every_format_renders(tmp_path: Path) -> None:
    console = Console(record=True, width=220)
    code = report_command(
        [GLUE_SMALL],
        formats=["terminal", "markdown", "csv", "latex", "html", "json"],
        out=tmp_path,
        plots=False,
        console=console,
    )
    assert code == 0
    text = console.export_text()
    assert "Dev results" in text and "GLUE" in text
    assert "n=2/3" in text and "Δ +5.00" in text and "73.50" in text
    assert "warning:" in text and "metrics.json" in text
    assert "Runs not counted" in text and "unfinished" in text

    md = (tmp_path / "report.md").read_text()
    assert "| Task | Metric | baseline (ref) | addrop |" in re.sub(" +", " ", md)  # pads cells
    # two seeds a cell: no test, so nothing is bold however large the difference
    assert "67.00 ± 2.83<br>Δ +5.00 n=2/3" in md and "**" not in md.split("## Statistics")[0]
    assert "GLUE score = " in md and "## Statistics" in md and "## Cost" in md

    rows = list(csv.DictReader(io.StringIO((tmp_path / "table.csv").read_text())))
    rte = next(
        r for r in rows if (r["task"], r["variant"], r["metric"]) == ("rte", "addrop", "accuracy")
    )
    assert float(rte["center"]) == approx(0.67) and rte["n"] == "2" and rte["expected"] == "3"
    assert (tmp_path / "stats.csv").read_text().startswith("task,variant,reference")
    assert "wall_ratio" in (tmp_path / "cost.csv").read_text()

    tex = (tmp_path / "table.tex").read_text()
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert r"$\pm$" in tex and r"\textbf{" not in tex and "±" not in tex

    page = (tmp_path / "report.html").read_text()
    assert page.count("<table ") == 5 and not re.search(r'<td [^>]*class="[^"]*\bbest"', page)
    assert "What the runs did" in page and "ASO" in page and "detectable" in page

    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["reference"] == "baseline"
    cell = next(c for c in doc["cells"] if (c["task"], c["variant"]) == ("rte", "addrop"))
    assert cell["seed_scores"] == {"1": approx(0.65), "2": approx(0.69)}
    assert cell["missing"] == {"3": "unfinished"}
    assert {r["status"] for r in doc["runs"]} == {"done", "failed", "unfinished", "corrupt"}
    assert doc["glue"]["addrop"]["score"] == approx((0.67 + 0.80 + 0.8375) / 3)


def test_raw_export_is_the_per_run_frame(tmp_path: Path) -> None:
    report_command(
        [GLUE_SMALL],
        formats=[],
        out=tmp_path,
        plots=False,
        raw=True,
        console=Console(file=io.StringIO()),
    )
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 2 * 18  # every run (finished or not) at its best and last evaluation
    assert set(runs["evaluation"]) == {"best", "last"}
    assert {"experiment", "variant", "task", "method", "seed", "status", "run_id"} <= set(runs)
    assert runs.groupby("evaluation")["run_id"].nunique().eq(18).all()
    # a user's own groupby over the counted rows gives the table's numbers back
    best = runs[runs["counted"] & (runs["evaluation"] == "best")]
    means = best.groupby(["task", "variant"])["dev_accuracy"].mean()
    assert means["rte", "addrop"] == approx(0.67) and means["rte", "baseline"] == approx(0.62)
    assert best.groupby(["task", "variant"]).size()["stsb", "addrop"] == 2
    failed = runs[(runs["status"] == "failed")]
    assert failed["dev_f1"].isna().all() and not failed["counted"].any()


def test_default_out_folder_and_bad_format(tmp_path: Path) -> None:
    exp = shutil.copytree(GLUE_SMALL, tmp_path / "glue-small")
    report_command([exp], formats=["json"], plots=False, console=Console(file=io.StringIO()))
    assert (exp / "report" / "report.json").is_file()
    with pytest.raises(SpecError, match="did you mean 'latex'"):
        report_command([exp], formats=["latx"])


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name open files")
def test_a_full_disk_in_the_report_keeps_the_previous_files_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults
) -> None:
    """The disk fills up while the report writes its tables: one line naming the file, and
    every file keeps its previous version, whole (none half-written, no temporary left)."""
    quiet = Console(file=io.StringIO())
    formats = ["markdown", "csv", "json"]
    report_command([GLUE_SMALL], formats=formats, out=tmp_path, plots=False, console=quiet)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {"report.md", "table.csv", "report.json"} <= set(before)
    for name in before:  # what a second report would write differently
        (tmp_path / name).write_bytes(before[name] + b"\n<!-- previous -->\n")
    previous = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    faults(disk_full="table.csv")  # after report.md, before table.csv is whole
    with pytest.raises(StoreError) as caught:
        report_command([GLUE_SMALL], formats=formats, out=tmp_path, plots=False, console=quiet)
    monkeypatch.undo()
    message = str(caught.value)
    assert "\n" not in message and "table.csv" in message and "disk full" in message
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(after) == set(previous)  # no temporary file left
    assert after["report.md"] == before["report.md"]  # written whole before the disk filled
    assert after["table.csv"] == previous["table.csv"]  # kept whole, not truncated
    assert after["report.json"] == previous["report.json"]  # never reached


def test_markdown_report_links_plots_written_beside_it(tmp_path: Path) -> None:
    exp = shutil.copytree(GLUE_SMALL, tmp_path / "glue-small")
    path = write_markdown_report(exp / "REPORT.md", [exp])
    text = path.read_text()
    links = [
        line.split("](")[1].split(")")[0] for line in text.splitlines() if line.startswith("![")
    ]
    assert "bars.png" in links and "curves_rte.png" in links
    for link in links:
        png = path.parent / link
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        ET.parse(png.with_suffix(".svg"))
    page = path.with_suffix(".html").read_text()  # the HTML page beside it, plots inlined
    assert page.count('<img src="data:image/png;base64,') == len(links)
    assert "Statistics" in page and "Cost" in page and "Selection: dev set" in page
