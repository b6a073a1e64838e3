"""The real GLUE files in ``$ADDROP_GLUE_DIR``: official row counts and label sets.

Runs only where the GLUE folder is available, e.g.::

    ADDROP_GLUE_DIR=path/to/glue_data pytest tests/data/test_glue_real.py

The expected numbers are the official GLUE sizes (see the GLUE folder's README.md). QQP, QNLI and
MNLI are not in that folder; the fixture tests cover them.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from addrop_cli.data.config import DataSpec
from addrop_cli.data.sources import check_data, load_examples
from addrop_cli.data.tasks import get_task

GLUE_DIR = os.environ.get("ADDROP_GLUE_DIR", "").strip()

pytestmark = pytest.mark.skipif(
    not GLUE_DIR,
    reason="ADDROP_GLUE_DIR not set: point it at a GLUE folder (see README, Data) to run "
    "the real-data checks",
)

# task -> split -> official number of rows
OFFICIAL_ROWS = {
    "cola": {"train": 8551, "dev": 1043, "test": 1063},
    "sst2": {"train": 67349, "dev": 872, "test": 1821},
    "mrpc": {"train": 3668, "dev": 408, "test": 1725},
    "stsb": {"train": 5749, "dev": 1500, "test": 1379},
    "rte": {"train": 2490, "dev": 277, "test": 3000},
    "wnli": {"train": 635, "dev": 71, "test": 146},
    "ax": {"test": 1104},
}

# task -> split -> label counts by label id (label names in task.label_names order)
OFFICIAL_LABELS = {
    "cola": {"train": {0: 2528, 1: 6023}, "dev": {0: 322, 1: 721}},
    "sst2": {"train": {0: 29780, 1: 37569}, "dev": {0: 428, 1: 444}},
    "mrpc": {"train": {0: 1194, 1: 2474}, "dev": {0: 129, 1: 279}},
    "rte": {"train": {0: 1249, 1: 1241}, "dev": {0: 146, 1: 131}},  # entailment, not_entailment
    "wnli": {"train": {0: 323, 1: 312}, "dev": {0: 40, 1: 31}},
}

CASES = [(t, s, n) for t, splits in OFFICIAL_ROWS.items() for s, n in splits.items()]


@pytest.fixture(scope="module")
def data() -> DataSpec:
    return DataSpec(source="glue_dir", glue_dir=Path(GLUE_DIR))


@pytest.mark.parametrize("task_name", list(OFFICIAL_ROWS))
def test_preflight_finds_nothing_wrong(task_name, data):
    assert check_data(get_task(task_name), data, include_test=True) == []


@pytest.mark.parametrize("task_name, split, rows", CASES)
def test_official_row_counts(task_name, split, rows, data):
    task = get_task(task_name)
    examples = load_examples(task, split, data)
    assert len(examples) == rows
    assert all(e.text_a for e in examples)
    assert all((e.text_b is not None) == task.is_pair for e in examples)
    if split in task.test_splits:
        assert all(e.label is None for e in examples)


@pytest.mark.parametrize(
    "task_name, split", [(t, s) for t, splits in OFFICIAL_LABELS.items() for s in splits]
)
def test_official_label_counts(task_name, split, data):
    examples = load_examples(get_task(task_name), split, data)
    assert dict(Counter(e.label for e in examples)) == OFFICIAL_LABELS[task_name][split]


@pytest.mark.parametrize("split", ["train", "dev"])
def test_stsb_scores_are_in_range(split, data):
    scores = [e.label for e in load_examples(get_task("stsb"), split, data)]
    assert all(isinstance(s, float) and 0.0 <= s <= 5.0 for s in scores)
    assert min(scores) == 0.0 and max(scores) == 5.0


def test_quotes_do_not_merge_rows(data):
    # CoLA, MRPC, STS-B, RTE hold unbalanced quotes; with quoting enabled rows would merge
    cola = load_examples(get_task("cola"), "train", data)
    assert sum('"' in e.text_a for e in cola) == 2  # the two lines of train.tsv with a quote
    mrpc = load_examples(get_task("mrpc"), "train", data)
    assert mrpc[0].text_a.startswith('Amrozi accused his brother , whom he called " the witness "')
