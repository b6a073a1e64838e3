"""Data sources, bad data, low-resource subsets, tokenisation, the cache and batching."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from addrop_cli.data import encoding as data_mod
from addrop_cli.data.batching import make_loader, prepare_task_data
from addrop_cli.data.config import CustomTaskSpec, DataSpec
from addrop_cli.data.encoding import cache_path, encode_split
from addrop_cli.data.examples import Example
from addrop_cli.data.hub import examples_from_hub_rows
from addrop_cli.data.sources import (
    check_data,
    data_source,
    load_examples,
    resolve_cache_dir,
    resolve_glue_dir,
)
from addrop_cli.data.subsets import split_train
from addrop_cli.data.tasks import get_task, task_names
from addrop_cli.errors import DataError, SpecError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GLUE = FIXTURES / "glue"
HUB = FIXTURES / "hub"
BAD = FIXTURES / "bad"
CUSTOM = FIXTURES / "custom"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("ADDROP_GLUE_DIR", raising=False)
    monkeypatch.setenv("ADDROP_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    root = Path(__file__).resolve().parents[2]
    return AutoTokenizer.from_pretrained(root / "experiments" / "assets" / "tiny-bert")


def glue(**kw) -> DataSpec:
    return DataSpec(glue_dir=GLUE, **kw)


def hub_rows(task, split):
    path = HUB / task.hub_config / f"{task.hub_splits[split]}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


ALL_SPLITS = [(name, split) for name in task_names() for split in get_task(name).splits]


# ------------------------------------------------------------------ where the data comes from


def test_resolve_glue_dir_spec_wins_over_env(monkeypatch, tmp_path):
    assert resolve_glue_dir(DataSpec()) is None
    monkeypatch.setenv("ADDROP_GLUE_DIR", str(tmp_path / "env"))
    assert resolve_glue_dir(DataSpec()) == tmp_path / "env"
    assert resolve_glue_dir(DataSpec(glue_dir=tmp_path / "spec")) == tmp_path / "spec"
    assert resolve_glue_dir(DataSpec(glue_dir="rel"), base_dir=tmp_path) == tmp_path / "rel"


def test_resolve_cache_dir_precedence(monkeypatch, tmp_path):
    assert resolve_cache_dir(DataSpec(cache_dir=tmp_path / "c")) == tmp_path / "c"
    assert resolve_cache_dir(DataSpec()) == tmp_path / "cache"
    monkeypatch.delenv("ADDROP_CACHE_DIR")
    assert resolve_cache_dir(DataSpec()) == Path("~/.cache/addrop").expanduser()


def test_data_source_choice(monkeypatch):
    sst2 = get_task("sst2")
    assert data_source(sst2, DataSpec()) == "hub"
    assert data_source(sst2, glue()) == "glue_dir"
    assert data_source(sst2, DataSpec(source="hub", glue_dir=GLUE)) == "hub"
    monkeypatch.setenv("ADDROP_GLUE_DIR", str(GLUE))
    assert data_source(sst2, DataSpec()) == "glue_dir"
    monkeypatch.delenv("ADDROP_GLUE_DIR")
    with pytest.raises(DataError, match="neither data.glue_dir nor ADDROP_GLUE_DIR"):
        data_source(sst2, DataSpec(source="glue_dir"))


# ------------------------------------------------------------------ the GLUE folder layout


@pytest.mark.parametrize("name, split", ALL_SPLITS)
def test_every_fixture_split_loads(name, split):
    task = get_task(name)
    ex = load_examples(task, split, glue())
    assert len(ex) >= 2
    assert [e.guid for e in ex] == [f"{split}-{i}" for i in range(len(ex))]
    assert all((e.text_b is not None) == task.is_pair for e in ex)
    if split in task.test_splits:
        assert all(e.label is None for e in ex)
    elif task.is_regression:
        assert all(isinstance(e.label, float) for e in ex)
    else:
        assert {e.label for e in ex} <= set(range(task.num_labels))


def test_cola_header_less_with_quotes_and_no_final_newline():
    train = load_examples(get_task("cola"), "train", glue())
    assert len(train) == 8
    assert train[2] == Example("train-2", '"Bill left," said Mary.', None, 1)
    assert train[6].text_a == 'Sue is taller than "Jane is tall.'  # unbalanced quote, one row
    dev = load_examples(get_task("cola"), "dev", glue())
    assert len(dev) == 4 and dev[-1].text_a == "Him saw she."  # last line has no newline
    test = load_examples(get_task("cola"), "test", glue())
    assert test[2].text_a == '"Open quote never closed.'


def test_sst2_keeps_text_verbatim_and_quotes_do_not_merge_rows():
    train = load_examples(get_task("sst2"), "train", glue())
    assert len(train) == 8
    assert train[0] == Example("train-0", "hide new secretions from the parental units ", None, 0)
    assert train[6].text_a == 'a "too long '


def test_mrpc_byte_order_mark_and_columns():
    train = load_examples(get_task("mrpc"), "train", glue())
    assert len(train) == 6 and train[0].label == 1 and train[1].label == 0
    assert train[0].text_a.startswith("Amrozi accused his brother , whom he called")
    assert train[0].text_b.startswith("Referring to him as only")
    test = load_examples(get_task("mrpc"), "test", glue())
    assert test[0].text_a.startswith("PCCW 's chief") and test[0].label is None


def test_stsb_scores_are_floats():
    train = load_examples(get_task("stsb"), "train", glue())
    assert [e.label for e in train[:3]] == [5.0, 3.8, 3.8]


def test_mnli_labels_and_splits():
    mnli = get_task("mnli")
    train = load_examples(mnli, "train", glue())
    assert train[0].label == 1  # neutral
    assert Counter(e.label for e in train) == {0: 5, 1: 3, 2: 2}
    mm = load_examples(mnli, "dev_mismatched", glue())
    assert [e.label for e in mm] == [2, 1, 0]
    assert len(load_examples(mnli, "test_mismatched", glue())) == 2


def test_rte_and_wnli_label_order():
    rte = load_examples(get_task("rte"), "train", glue())
    assert rte[0].label == 1 and rte[1].label == 0  # not_entailment=1, entailment=0
    wnli = load_examples(get_task("wnli"), "train", glue())
    assert wnli[0].label == 1  # "1" = entailment, id 1


def test_ax_diagnostic_file():
    ax = load_examples(get_task("ax"), "test", glue())
    assert ax[0] == Example(
        "test-0", "The cat sat on the mat.", "The cat did not sit on the mat.", None
    )


def test_unknown_split_is_a_programming_error():
    with pytest.raises(ValueError):
        load_examples(get_task("sst2"), "dev_matched", glue())


# ------------------------------------------------------------------ the Hub layout


@pytest.mark.parametrize("name, split", ALL_SPLITS)
def test_hub_layout_gives_the_same_examples_as_the_glue_folder(name, split):
    task = get_task(name)
    from_hub = examples_from_hub_rows(task, split, hub_rows(task, split))
    from_folder = load_examples(task, split, glue())
    assert from_hub == from_folder


def _fake_load_dataset(calls):
    import datasets

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        task = get_task(name)
        rows = [json.loads(x) for x in (HUB / name / f"{split}.jsonl").read_text().splitlines()]
        features = {c: datasets.Value("string") for c in task.text_columns}
        features["label"] = (
            datasets.Value("float32")
            if task.is_regression
            else datasets.ClassLabel(names=list(task.label_names))
        )
        features["idx"] = datasets.Value("int32")
        return datasets.Dataset.from_list(rows, features=datasets.Features(features))

    return load_dataset


@pytest.mark.parametrize("name", ["sst2", "stsb", "mnli", "mrpc"])
def test_hub_source_through_load_dataset(monkeypatch, name):
    import datasets

    calls: list = []
    monkeypatch.setattr(datasets, "load_dataset", _fake_load_dataset(calls))
    task = get_task(name)
    for split in task.splits:
        assert load_examples(task, split, DataSpec(source="hub")) == load_examples(
            task, split, glue()
        )
    assert calls[0][:2] == ("nyu-mll/glue", task.hub_config)
    assert {c[2] for c in calls} == set(task.hub_splits.values())


def test_hub_label_names_must_match(monkeypatch):
    import datasets

    def load_dataset(path, name, split):
        return datasets.Dataset.from_list(
            [{"sentence": "x", "label": 0, "idx": 0}],
            features=datasets.Features(
                {
                    "sentence": datasets.Value("string"),
                    "label": datasets.ClassLabel(names=["positive", "negative"]),
                    "idx": datasets.Value("int32"),
                }
            ),
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(DataError, match="label names"):
        load_examples(get_task("sst2"), "train", DataSpec())


def test_hub_failure_is_a_data_error_that_names_the_fix(monkeypatch):
    import datasets

    def load_dataset(*a, **k):
        raise ConnectionError("offline\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(DataError) as err:
        load_examples(get_task("rte"), "train", DataSpec())
    msg = str(err.value)
    assert "\n" not in msg and "nyu-mll/glue/rte:train" in msg and "ADDROP_GLUE_DIR" in msg


def test_hub_rows_with_bad_labels():
    sst2 = get_task("sst2")
    with pytest.raises(DataError, match="out of range"):
        examples_from_hub_rows(sst2, "train", [{"sentence": "x", "label": 2, "idx": 0}])
    with pytest.raises(DataError, match="unlabelled row"):
        examples_from_hub_rows(sst2, "dev", [{"sentence": "x", "label": -1, "idx": 0}])
    with pytest.raises(DataError, match="missing column 'sentence'"):
        examples_from_hub_rows(sst2, "train", [{"text": "x", "label": 1, "idx": 0}])


# ------------------------------------------------------------------ custom tasks


def custom_data(**tasks) -> DataSpec:
    return DataSpec(custom_tasks={k: CustomTaskSpec(**v) for k, v in tasks.items()})


REVIEWS = {
    "train": "reviews_train.csv",
    "dev": "reviews_dev.csv",
    "test": "reviews_test.csv",
    "text_a": "review",
    "label": "sentiment",
    "labels": ["neg", "pos"],
}
NLI = {
    "train": "nli_train.tsv",
    "dev": "nli_dev.tsv",
    "text_a": "premise",
    "text_b": "hypothesis",
    "label": "gold",
    "labels": ["yes", "no"],
}
SIM = {
    "train": "similarity_train.jsonl",
    "dev": "similarity_dev.jsonl",
    "text_a": "s1",
    "text_b": "s2",
    "label": "score",
    "regression": True,
    "metrics": ["pearson", "spearman"],
}


def test_custom_csv_task_relative_to_base_dir():
    data = custom_data(reviews=REVIEWS)
    task = get_task("reviews", data)
    assert data_source(task, data, CUSTOM) == "custom"
    train = load_examples(task, "train", data, base_dir=CUSTOM)
    assert train[0] == Example("train-0", 'Great phone, battery lasts "forever".', None, 1)
    assert [e.label for e in train] == [1, 0, 1, 0, 1, 0]
    test = load_examples(task, "test", data, base_dir=CUSTOM)
    assert [e.label for e in test] == [None, None]
    assert check_data(task, data, CUSTOM, include_test=True) == []


def test_custom_tsv_pair_task_reads_quotes_verbatim():
    data = custom_data(nli=NLI)
    train = load_examples(get_task("nli", data), "train", data, base_dir=CUSTOM)
    assert len(train) == 4
    assert train[1] == Example("train-1", "A man sleeps.", 'The man is running a "marathon.', 1)


def test_custom_jsonl_regression_task_skips_blank_lines():
    data = custom_data(sim=SIM)
    train = load_examples(get_task("sim", data), "train", data, base_dir=CUSTOM)
    assert [e.label for e in train] == [5.0, 3.8, 2.6, 0.5]


def test_custom_task_glue_source_settings_do_not_apply():
    data = DataSpec(source="hub", glue_dir=GLUE, custom_tasks={"sim": CustomTaskSpec(**SIM)})
    assert data_source(get_task("sim", data), data, CUSTOM) == "custom"


def test_custom_missing_file_is_reported(tmp_path):
    data = custom_data(reviews=REVIEWS)
    task = get_task("reviews", data)
    with pytest.raises(
        DataError, match="file not found; fix the path in data.custom_tasks.reviews"
    ):
        load_examples(task, "train", data, base_dir=tmp_path)
    problems = check_data(task, data, tmp_path)
    assert len(problems) == 2 and all("file not found" in p for p in problems)


@pytest.mark.parametrize(
    "spec, file, match",
    [
        (
            {**REVIEWS, "train": "../bad/custom_unknown_label.csv"},
            "custom_unknown_label.csv:3",
            "unknown label 'negative'",
        ),
        (
            {**REVIEWS, "train": "../bad/custom_wrong_fields.csv"},
            "custom_wrong_fields.csv:3",
            "3 comma-separated fields, expected 2",
        ),
        (
            {**SIM, "train": "../bad/custom_bad_json.jsonl"},
            "custom_bad_json.jsonl:2",
            "not valid JSON",
        ),
        (
            {**SIM, "train": "../bad/custom_missing_field.jsonl"},
            "custom_missing_field.jsonl:2",
            "missing field 's2'",
        ),
        ({**REVIEWS, "text_a": "text"}, "reviews_train.csv:1", "no column 'text'"),
    ],
)
def test_bad_custom_data(spec, file, match):
    data = custom_data(mine=spec)
    with pytest.raises(DataError) as err:
        load_examples(get_task("mine", data), "train", data, base_dir=CUSTOM)
    msg = str(err.value)
    assert "\n" not in msg and file in msg and match in msg and "; " in msg


# ------------------------------------------------------------------ bad GLUE data


@pytest.mark.parametrize(
    "case, task, where, match",
    [
        ("missing_column", "sst2", "SST-2/train.tsv:1", "missing column 'sentence'"),
        ("unknown_label", "sst2", "SST-2/train.tsv:4", "unknown label '2'"),
        ("empty_split", "sst2", "SST-2/train.tsv", "the train split has no examples"),
        ("wrong_fields", "sst2", "SST-2/train.tsv:3", "3 tab-separated fields, expected 2"),
        ("wrong_fields", "cola", "CoLA/train.tsv:2", "3 tab-separated fields, expected 4"),
        (
            "bad_score",
            "stsb",
            "STS-B/train.tsv:3",
            "label 'five' in column 'score' is not a number",
        ),
    ],
)
def test_bad_glue_data_is_one_line_with_file_and_line(case, task, where, match):
    with pytest.raises(DataError) as err:
        load_examples(get_task(task), "train", DataSpec(glue_dir=BAD / case))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(str(BAD / case / where))
    assert match in msg
    assert "; " in msg  # what is wrong; how to fix it


def test_missing_glue_folder_task_folder_and_file(tmp_path):
    with pytest.raises(DataError, match="GLUE folder not found"):
        load_examples(get_task("sst2"), "train", DataSpec(glue_dir=tmp_path / "nope"))
    with pytest.raises(DataError, match="QQP is not in this GLUE folder"):
        load_examples(get_task("qqp"), "train", DataSpec(glue_dir=BAD / "missing_file"))
    with pytest.raises(DataError, match=r"SST-2/dev.tsv: file not found"):
        load_examples(get_task("sst2"), "dev", DataSpec(glue_dir=BAD / "missing_file"))


def test_bad_data_is_raised_before_tokenising(tokenizer):
    with pytest.raises(DataError):
        prepare_task_data(
            get_task("sst2"), DataSpec(glue_dir=BAD / "unknown_label"), tokenizer, 32, 0
        )


def test_check_data():
    assert check_data(get_task("sst2"), glue()) == []
    assert check_data(get_task("mnli"), glue(), include_test=True) == []
    assert check_data(get_task("ax"), glue()) == []
    p = check_data(get_task("sst2"), DataSpec(glue_dir=BAD / "missing_column"))
    assert len(p) == 1 and "missing column 'sentence'" in p[0]
    p = check_data(get_task("cola"), DataSpec(glue_dir=BAD / "missing_column"))
    assert len(p) == 1 and "CoLA is not in this GLUE folder" in p[0]
    p = check_data(get_task("sst2"), DataSpec(glue_dir=BAD / "missing_file"))
    assert len(p) == 1 and p[0].endswith(
        "dev.tsv: file not found; point data.glue_dir / ADDROP_GLUE_DIR at a GLUE folder in "
        "the official layout (SST-2/train.tsv, ...), or unset both to read nyu-mll/glue from "
        "the Hub (README: Data)"
    )
    assert check_data(get_task("sst2"), DataSpec()) == []  # Hub: `datasets` importable
    assert check_data(get_task("sst2"), DataSpec(source="glue_dir"))  # no folder given


# ------------------------------------------------------------------ train_size and heldout


def write_sst2(root: Path, n: int, pos_every: int = 4) -> Path:
    """An SST-2 folder with ``n`` train rows, 1 in ``pos_every`` positive."""
    (root / "SST-2").mkdir(parents=True)
    rows = [f"sentence number {i} \t{int(i % pos_every == 0)}" for i in range(n)]
    (root / "SST-2" / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (root / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[:10]) + "\n")
    return root


def _train(n=200):
    return [Example(f"train-{i}", f"s{i}", None, int(i % 4 == 0)) for i in range(n)]


def test_train_size_count_is_stratified_and_seeded():
    train = _train()
    idx, held = split_train(train, DataSpec(train_size=40), seed=3, regression=False)
    assert held is None and len(idx) == 40 and idx == sorted(idx)
    assert Counter(train[i].label for i in idx) == {0: 30, 1: 10}  # 3:1 as in the full set
    again, _ = split_train(train, DataSpec(train_size=40), seed=3, regression=False)
    other, _ = split_train(train, DataSpec(train_size=40), seed=4, regression=False)
    assert again == idx and other != idx


def test_train_size_fraction_and_cap():
    train = _train()
    idx, _ = split_train(train, DataSpec(train_size=0.1), seed=0, regression=False)
    assert len(idx) == 20
    idx, _ = split_train(train, DataSpec(train_size=1000), seed=0, regression=False)
    assert idx == list(range(200))


def test_small_train_size_keeps_every_class():
    train = _train()
    idx, _ = split_train(train, DataSpec(train_size=2), seed=0, regression=False)
    assert {train[i].label for i in idx} == {0, 1}


def test_heldout_is_carved_first_and_independent_of_train_size():
    train = _train()
    idx_a, held_a = split_train(train, DataSpec(heldout=0.25), seed=7, regression=False)
    idx_b, held_b = split_train(
        train, DataSpec(heldout=0.25, train_size=30), seed=7, regression=False
    )
    assert held_a == held_b and len(held_a) == 50
    assert Counter(train[i].label for i in held_a) == {0: 37, 1: 13} or Counter(
        train[i].label for i in held_a
    ) == {0: 38, 1: 12}
    assert set(idx_a) == set(range(200)) - set(held_a)
    assert not set(idx_b) & set(held_b) and len(idx_b) == 30
    _, held_c = split_train(train, DataSpec(heldout=0.25), seed=8, regression=False)
    assert held_c != held_a


def test_heldout_too_large_is_an_error():
    with pytest.raises(DataError, match="leave none"):
        split_train(_train(10), DataSpec(heldout=10), seed=0, regression=False)


def test_regression_subsets_are_stratified_by_score():
    train = [Example(f"train-{i}", "x", "y", float(i % 50) / 10) for i in range(500)]
    idx, _ = split_train(train, DataSpec(train_size=50), seed=0, regression=True)
    scores = sorted(train[i].label for i in idx)
    assert len(idx) == 50 and scores[0] < 0.5 and scores[-1] >= 4.5  # spans the range


# ------------------------------------------------------------------ tokenisation and cache


def test_prepare_task_data_with_heldout_train_size_and_dev_size(tmp_path, tokenizer):
    root = write_sst2(tmp_path / "g", 100)
    data = DataSpec(glue_dir=root, heldout=20, train_size=40, dev_size=5)
    td = prepare_task_data(get_task("sst2"), data, tokenizer, 16, seed=1)
    assert (
        len(td.train) == 40 and list(td.select) == ["heldout"] and len(td.select["heldout"]) == 20
    )
    assert not set(td.train.guids) & set(td.select["heldout"].guids)
    assert list(td.dev) == ["dev"] and len(td.dev["dev"]) == 5 and td.test == {}
    assert Counter(td.train.labels) == {0: 30, 1: 10}
    same = prepare_task_data(get_task("sst2"), data, tokenizer, 16, seed=1)
    assert same.train.guids == td.train.guids and same.train.input_ids == td.train.input_ids


def test_prepare_task_data_without_heldout_selects_on_dev(tokenizer):
    td = prepare_task_data(get_task("mnli"), glue(), tokenizer, 32, seed=0, include_test=True)
    assert list(td.select) == ["dev_matched", "dev_mismatched"]
    assert td.select["dev_matched"] is td.dev["dev_matched"]
    assert set(td.test) == {"test_matched", "test_mismatched"}
    assert td.test["test_matched"].labels is None
    assert len(td.train) == 10


def test_prepare_task_data_refuses_ax(tokenizer):
    with pytest.raises(SpecError, match="MNLI|mnli"):
        prepare_task_data(get_task("ax"), glue(), tokenizer, 32, seed=0)


def test_pairs_get_token_type_ids_and_longest_first_truncation(tokenizer):
    long_a = "word " * 40
    ex = [Example("dev-0", long_a, "short one", 1), Example("dev-1", "a b", "c d", 0)]
    enc = data_mod.encode_examples(ex, tokenizer, 16, name="dev", is_regression=False)
    assert len(enc.input_ids[0]) == 16  # truncated
    tti = enc.token_type_ids[0]
    assert tti[0] == 0 and tti[-1] == 1
    # longest-first: the long first text was cut, the short second text survived whole
    b_ids = tokenizer("short one", add_special_tokens=False)["input_ids"]
    assert enc.input_ids[0][-len(b_ids) - 1 : -1] == b_ids
    single = data_mod.encode_examples(
        [Example("t-0", "hello world", None, 0)], tokenizer, 16, name="t", is_regression=False
    )
    assert set(single.token_type_ids[0]) == {0}
    assert single.input_ids[0] == tokenizer("hello world")["input_ids"]


def test_models_without_token_type_ids(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    tok.model_input_names = ["input_ids", "attention_mask"]
    enc = data_mod.encode_examples(
        [Example("d-0", "a b", "c", 1)], tok, 16, name="d", is_regression=False
    )
    assert enc.token_type_ids is None
    batch = next(iter(make_loader(enc, 4, shuffle=False, generator=None, pad_token_id=0)))
    assert "token_type_ids" not in batch


def test_cache_is_written_once_and_reused(monkeypatch, tmp_path, tokenizer):
    task = get_task("rte")
    first = encode_split(task, "train", glue(), tokenizer, 32)
    files = list((tmp_path / "cache" / "tokenized").iterdir())
    assert (
        len(files) == 1 and files[0].name.startswith("rte-train-32-") and files[0].suffix == ".npz"
    )

    def boom(*a, **k):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(data_mod, "encode_examples", boom)
    again = encode_split(task, "train", glue(), tokenizer, 32)
    assert again == first
    assert not list((tmp_path / "cache" / "tokenized").glob("*.tmp"))


def test_cache_key_depends_on_length_task_split_tokenizer_and_content(tmp_path, tokenizer):
    sst2, d = get_task("sst2"), glue()
    ex = load_examples(sst2, "train", d)
    p = cache_path(sst2, "train", ex, tokenizer, 32, d)
    assert p.parent == tmp_path / "cache" / "tokenized"
    assert cache_path(sst2, "train", ex, tokenizer, 64, d) != p
    assert cache_path(sst2, "dev", ex, tokenizer, 32, d) != p
    assert cache_path(sst2, "train", ex[:-1], tokenizer, 32, d) != p
    assert cache_path(sst2, "train", ex, tokenizer, 32, DataSpec(source="hub")) != p
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(
        Path(__file__).resolve().parents[2] / "experiments" / "assets" / "tiny-bert"
    )
    assert cache_path(sst2, "train", ex, other, 32, d) == p  # same files, same key
    other.add_tokens(["newtokenxyz"])
    assert cache_path(sst2, "train", ex, other, 32, d) != p


def test_cache_key_ignores_tokenizer_truncation_state(tokenizer):
    before = data_mod.tokenizer_fingerprint(tokenizer)
    tokenizer(["a b c d e f"], truncation=True, max_length=4)
    assert data_mod.tokenizer_fingerprint(tokenizer) == before


def test_damaged_cache_file_is_rebuilt(tmp_path, tokenizer):
    task, d = get_task("wnli"), glue()
    first = encode_split(task, "dev", d, tokenizer, 32)
    path = next((tmp_path / "cache" / "tokenized").iterdir())
    path.write_bytes(b"not an npz")
    assert encode_split(task, "dev", d, tokenizer, 32) == first
    with np.load(path) as z:
        assert int(z["lengths"].shape[0]) == len(first)


def test_cache_dir_from_spec(tmp_path, tokenizer):
    d = glue(cache_dir=tmp_path / "speccache")
    encode_split(get_task("wnli"), "dev", d, tokenizer, 32)
    assert list((tmp_path / "speccache" / "tokenized").iterdir())
    assert not (tmp_path / "cache").exists()


def test_unwritable_cache_does_not_fail_the_run(tmp_path, tokenizer):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    enc = encode_split(get_task("wnli"), "dev", glue(cache_dir=blocker), tokenizer, 32)
    assert len(enc) == 3


# ------------------------------------------------------------------ batching


def test_loader_pads_per_batch_and_types_labels(tokenizer):
    td = prepare_task_data(get_task("rte"), glue(), tokenizer, 64, seed=0)
    loader = make_loader(
        td.train, 4, shuffle=False, generator=None, pad_token_id=tokenizer.pad_token_id
    )
    batches = list(loader)
    assert [len(b["labels"]) for b in batches] == [4, 2]
    for b, start in zip(batches, (0, 4), strict=True):
        lengths = [len(x) for x in td.train.input_ids[start : start + 4]]
        assert b["input_ids"].shape == (len(lengths), max(lengths))  # padded to the batch's longest
        assert b["attention_mask"].sum(1).tolist() == lengths
        assert b["input_ids"].dtype == torch.long and b["labels"].dtype == torch.long
        assert set(b) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
        for row, n in enumerate(lengths):
            assert (b["input_ids"][row, n:] == tokenizer.pad_token_id).all()
    assert batches[0]["labels"].tolist() == td.train.labels[:4]


def test_regression_labels_are_float(tokenizer):
    td = prepare_task_data(get_task("stsb"), glue(), tokenizer, 64, seed=0)
    b = next(iter(make_loader(td.dev["dev"], 8, shuffle=False, generator=None, pad_token_id=0)))
    assert b["labels"].dtype == torch.float32
    assert b["labels"].tolist() == pytest.approx([5.0, 4.75, 5.0, 2.4])


def test_unlabelled_test_split_has_no_labels(tokenizer):
    td = prepare_task_data(get_task("sst2"), glue(), tokenizer, 32, seed=0, include_test=True)
    b = next(iter(make_loader(td.test["test"], 8, shuffle=False, generator=None, pad_token_id=0)))
    assert "labels" not in b and b["input_ids"].shape[0] == 3


def test_shuffle_is_deterministic_per_generator_seed(tmp_path, tokenizer):
    td = prepare_task_data(
        get_task("sst2"), DataSpec(glue_dir=write_sst2(tmp_path / "g", 64)), tokenizer, 16, seed=0
    )

    def order(seed):
        loader = make_loader(
            td.train, 8, shuffle=True, generator=torch.Generator().manual_seed(seed), pad_token_id=0
        )
        torch.manual_seed(12345)  # global state must not matter
        return [tuple(map(tuple, b["input_ids"].tolist())) for b in loader]

    assert order(1) == order(1)
    assert order(1) != order(2)
    with pytest.raises(ValueError, match="Generator"):
        make_loader(td.train, 8, shuffle=True, generator=None, pad_token_id=0)
