"""Shared test fixtures: paths to the committed tiny model and the test fixture folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from fault_points import faults  # noqa: F401  (the fixture, for every test)

from addrop_cli.report import verdicts

ROOT = Path(__file__).resolve().parent.parent
TINY_BERT = ROOT / "experiments" / "assets" / "tiny-bert"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Tests never touch the network: the Hub is offline for every test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_bert_dir() -> Path:
    """A BERT config (2 layers, width 32, 4 heads) and word-piece tokenizer, no weights."""
    return TINY_BERT


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


ARTIFACTS = ROOT / "results" / "ci-artifacts"
"""Where tests may leave files for people to look at (screenshots); git ignores results/."""


@pytest.fixture(autouse=True)
def _quick_aso(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """deepsig's ASO costs about 6 ms per bootstrap iteration: the tests' in-process reports
    use 50 instead of its 1,000 (ASO's wiring is checked at explicit counts against deepsig's own
    call in test_report_verdicts.py; reports made by the CLI in a subprocess keep 1,000). Tests
    marked ``full_aso`` (a committed report made again) keep the real count."""
    if request.node.get_closest_marker("full_aso") is None:
        monkeypatch.setattr(verdicts, "ASO_ITERATIONS", 50)


def _results_listing() -> set[str]:
    results = ROOT / "results"
    if not results.exists():
        return set()
    kept = (p for p in results.rglob("*") if p != ARTIFACTS and ARTIFACTS not in p.parents)
    return {str(p.relative_to(results)) for p in kept}


@pytest.fixture(autouse=True, scope="session")
def _tests_leave_the_checkouts_results_alone():
    """Tests write runs under tmp folders only: a test that forgets --results would otherwise
    leave runs in the user's results/ (and make `make demo` report them)."""
    before = _results_listing()
    yield
    added = sorted(_results_listing() - before)
    assert not added, f"tests wrote into {ROOT / 'results'}: {added[:5]}"


# The slow groups by file, so a developer can select them (`pytest -m "not faults and not
# slurm"`); `make test` runs everything.
_GROUPS = {"test_faults.py": "faults", "test_slurm.py": "slurm"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = _GROUPS.get(item.path.name)
        if group:
            item.add_marker(getattr(pytest.mark, group))
