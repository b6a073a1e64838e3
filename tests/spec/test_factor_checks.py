"""A factor value is checked as the same setting given as an override is (issue 36): values
equal as numbers are one value, and every check `addrop validate` and `addrop run --dry-run`
make on an override (the model's layers, re-init depth and path, a train_size above the data,
a custom task's definition) runs at each factor value too."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"
QUICK = ["tasks=[sst2]", "seeds=[1]", "train.epochs=1"]


@pytest.mark.parametrize("values", ["[100,100.0]", "[0.5,100,100]", "[1.0e2,100]"])
def test_values_equal_as_numbers_are_one_value(
    capsys: pytest.CaptureFixture[str], values: str
) -> None:
    result = run_cli(capsys, "validate", SMOKE, f"factors.data.train_size={values}")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "factors.data.train_size" in lines[0] and "listed twice" in lines[0]
    assert "list each value once" in lines[0]


@pytest.mark.parametrize(
    "override, factor, expected",
    [
        ("train.reinit_layers=5", "factors.train.reinit_layers=[1,5]", "reinit_layers: 5"),
        ("train.max_length=1000", "factors.train.max_length=[16,1000]", "128 positions"),
        ("model.name_or_path=/no/such/model", "factors.model.name_or_path=[/no/such/model]",
         "does not exist"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_factor_value_meets_the_checks_an_override_meets(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    override: str,
    factor: str,
    expected: str,
    command: str,
) -> None:
    extra = ["--dry-run", "--results", tmp_path] if command == "run" else []
    as_override = run_cli(capsys, command, SMOKE, *QUICK, override, *extra)
    assert as_override.code == 2 and expected in as_override.err
    as_factor = run_cli(capsys, command, SMOKE, *QUICK, factor, *extra)
    assert as_factor.code == 2, as_factor.out
    lines = as_factor.err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], as_factor.err
    key = factor.split("=")[0]
    assert f"{SMOKE}: {key}=" in lines[0]  # the file and the factor that set the value
    assert not (tmp_path / "smoke").exists()  # nothing was started


def test_a_train_size_factor_above_the_data_says_so_as_the_override_does(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        plain = run_cli(capsys, "validate", SMOKE, *QUICK, "data.train_size=5000")
    assert plain.code == 0
    said = [r.getMessage() for r in caplog.records if "more than the" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("sst2: train_size 5000 is more than the")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        factor = run_cli(capsys, "validate", SMOKE, *QUICK, "factors.data.train_size=[16,5000]")
    assert factor.code == 0
    assert [r.getMessage() for r in caplog.records if "more than the" in r.getMessage()] == said


def test_a_factor_that_breaks_a_custom_task_is_refused_with_the_factor_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fixtures_dir: Path
) -> None:
    for split in ("train", "dev"):
        shutil.copy(fixtures_dir / "custom" / f"reviews_{split}.csv", tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: ct\nmodel: {{name_or_path: {ROOT / 'experiments/assets/tiny-bert'}, "
        "pretrained: false}\ntasks: [reviews]\ndata:\n  custom_tasks:\n    reviews: {train: "
        "reviews_train.csv, dev: reviews_dev.csv, text_a: review, label: stars, labels: "
        '["1", "2", "3", "4", "5"], metrics: [accuracy]}\nseeds: [1]\n'
        "train: {epochs: 1, device: cpu, max_length: 32}\nmethods: {baseline: {}}\n"
    )
    result = run_cli(
        capsys, "validate", spec, "factors.data.custom_tasks.reviews.metrics=[[accuracy],[pearson]]"
    )
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"error: {spec}: factors.data.custom_tasks.reviews.metrics=")
    assert "'pearson' is not a classification metric" in lines[0]
