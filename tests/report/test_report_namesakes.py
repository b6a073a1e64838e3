"""`addrop report A B` over two results folders whose experiments share a name (issue 23, item
8): runs are grouped by what was run, not by name, and the report says when folders disagree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from addrop_cli.report.build import build_report

STORE = Path(__file__).resolve().parents[1] / "fixtures" / "store" / "glue-small"


def copy(tmp_path: Path, where: str, lr: float | None = None) -> Path:
    folder = tmp_path / where / STORE.name
    shutil.copytree(STORE, folder)
    for run_json in (folder / "runs").glob("*/run.json"):
        config = json.loads(run_json.read_text())
        if lr is not None and config["variant"] == "addrop":
            config["train"]["lr"] = lr
            config.pop("identity", None)
            run_json.write_text(json.dumps(config))
    return folder


def columns(report) -> set[str]:  # type: ignore[no-untyped-def]
    return set(report.table.variants)


def test_namesakes_with_different_settings_are_kept_apart_and_named(tmp_path: Path) -> None:
    a, b = copy(tmp_path, "A"), copy(tmp_path, "B", lr=5e-5)
    report = build_report([a, b], resamples=10)
    names = columns(report)
    assert "addrop" not in names, "runs of two settings averaged in one column"
    assert {f"{STORE.name}@A/addrop", f"{STORE.name}@B/addrop"} <= names
    assert "baseline" in names, "the variants run alike stay one column"
    said = [w for w in report.warnings if "different settings" in w]
    assert said and "addrop" in said[0] and str(a) in said[0] and str(b) in said[0]


def test_namesakes_with_the_same_settings_stay_one_column(tmp_path: Path) -> None:
    a, b = copy(tmp_path, "A"), copy(tmp_path, "B")
    report = build_report([a, b], resamples=10)
    assert "addrop" in columns(report)
    assert not [w for w in report.warnings if "different settings" in w]
