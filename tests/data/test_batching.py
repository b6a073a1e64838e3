"""Batching: length-grouped order (seeded, every example once), padding, and evaluation batches
sorted by length whose outputs come back in the split's order, as properties."""

from __future__ import annotations

import random
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from addrop_cli.data.batching import EvalBatches, length_grouped_order, make_loader, padded_width
from addrop_cli.data.encoding import EncodedSplit
from addrop_cli.engine.evaluation import evaluate_split
from addrop_cli.engine.loop import run_one
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"
PAD = 0


def skewed_split(
    n: int,
    seed: int,
    *,
    pairs: bool = True,
    regression: bool = False,
    longest: int = 200,
    vocab: int = 1000,
):
    """A split with GLUE-like skewed lengths (log-normal, 3..``longest`` tokens); token ids >= 1."""
    rng = random.Random(seed)
    lengths = [min(longest, max(3, int(rng.lognormvariate(3.4, 0.6)))) for _ in range(n)]
    ids = [[rng.randint(1, vocab - 1) for _ in range(k)] for k in lengths]
    types = [[int(j >= k // 2) for j in range(k)] for k in lengths] if pairs else None
    labels = [rng.random() for _ in range(n)] if regression else [rng.randint(0, 1) for _ in ids]
    return EncodedSplit(
        name="train",
        guids=[f"g{i}" for i in range(n)],
        input_ids=ids,
        token_type_ids=types,
        labels=labels,
        is_regression=regression,
    )


def epoch_batches(loader) -> list[list[int]]:
    """Each batch as the rows' first token ids (unique enough to identify examples here)."""
    return [[tuple(row[row != PAD].tolist()) for row in b["input_ids"]] for b in loader]


def loader(split, *, seed=0, group=True, batch_size=8, multiple=None):
    return make_loader(
        split,
        batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        pad_token_id=PAD,
        group_by_length=group,
        pad_to_multiple_of=multiple,
    )


def padded_fraction(loader_) -> float:
    real = total = 0
    for b in loader_:
        real += int(b["attention_mask"].sum())
        total += b["attention_mask"].numel()
    return 1 - real / total


# ------------------------------------------------------------------ the order


@pytest.mark.parametrize("n,batch_size", [(1000, 16), (203, 8), (5, 4), (1, 32)])
def test_grouped_order_is_the_trainers_and_a_permutation(n: int, batch_size: int) -> None:
    from transformers.trainer_pt_utils import get_length_grouped_indices

    rng = random.Random(n)
    lengths = [rng.randint(3, 128) for _ in range(n)]
    ours = length_grouped_order(lengths, batch_size, torch.Generator().manual_seed(7))
    theirs = get_length_grouped_indices(
        lengths, batch_size, generator=torch.Generator().manual_seed(7)
    )
    assert sorted(ours) == list(range(n))
    assert ours == theirs
    assert lengths[ours[0]] == max(lengths)  # out of memory shows at the first step


def test_grouped_batches_same_seed_same_order_each_example_once_per_epoch() -> None:
    split = skewed_split(300, seed=1)
    everything = sorted(tuple(ids) for ids in split.input_ids)
    a, b, c = loader(split, seed=3), loader(split, seed=3), loader(split, seed=4)
    epochs_a = [epoch_batches(a) for _ in range(3)]
    assert epochs_a == [epoch_batches(b) for _ in range(3)]  # same seed, same order every epoch
    assert epochs_a[0] != epoch_batches(c)  # another seed, another order
    assert epochs_a[0] != epochs_a[1]  # reshuffled each epoch
    for epoch in epochs_a:
        assert sorted(row for batch in epoch for row in batch) == everything
        assert len(epoch) == -(-300 // 8)


def test_grouped_batches_hold_similar_lengths() -> None:
    split = skewed_split(2000, seed=2)
    grouped = loader(split, batch_size=16)
    plain = loader(split, batch_size=16, group=False)
    spread = []
    for batch in grouped:
        lengths = batch["attention_mask"].sum(-1)
        spread.append(int(lengths.max() - lengths.min()))
    # within a batch, lengths differ by a few tokens; random batches span most of the range
    assert sorted(spread)[len(spread) // 2] <= 3
    assert padded_fraction(grouped) < padded_fraction(plain) / 4


def test_without_grouping_the_order_is_the_plain_shuffle() -> None:
    """Off by default: the batches are what they were before grouping existed."""
    split = skewed_split(100, seed=5)
    before = torch.utils.data.DataLoader(  # make_loader as it was before grouping existed
        list(range(100)), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(9)
    )
    expected = [i for batch in before for i in batch.tolist()]
    got = [row for batch in epoch_batches(loader(split, seed=9, group=False)) for row in batch]
    assert got == [tuple(split.input_ids[i]) for i in expected]


def test_evaluation_order_ignores_grouping() -> None:
    split = skewed_split(50, seed=6)
    ordered = make_loader(
        split, 16, shuffle=False, generator=None, pad_token_id=PAD, group_by_length=True
    )
    rows = [row for batch in epoch_batches(ordered) for row in batch]
    assert rows == [tuple(ids) for ids in split.input_ids]


# ------------------------------------------------------------------ evaluation batches


def test_evaluation_batches_are_sorted_by_length_and_hold_every_example_once() -> None:
    split = skewed_split(203, seed=6)
    batches = EvalBatches(split, 16, pad_token_id=PAD)
    rows = [row for batch in epoch_batches(batches) for row in batch]
    assert sorted(rows) == sorted(tuple(ids) for ids in split.input_ids)
    assert [len(r) for r in rows] == sorted((len(r) for r in rows), reverse=True)
    in_split_order = make_loader(split, 16, shuffle=False, generator=None, pad_token_id=PAD)
    assert padded_fraction(batches) < padded_fraction(in_split_order) / 3


def test_restore_puts_per_example_outputs_back_in_the_split_order() -> None:
    split = skewed_split(97, seed=7)
    index = {tuple(ids): i for i, ids in enumerate(split.input_ids)}
    assert len(index) == 97  # the rows identify their examples
    batches = EvalBatches(split, 8, pad_token_id=PAD)
    in_batch_order = np.array([index[row] for batch in epoch_batches(batches) for row in batch])
    assert in_batch_order.tolist() != list(range(97))  # sorting did move them
    assert batches.restore(in_batch_order).tolist() == list(range(97))


@pytest.mark.parametrize("regression", [False, True])
def test_evaluation_equals_each_example_alone_in_the_split_order(
    tiny_bert_dir: Path, regression: bool
) -> None:
    """Sorted, padded batches give each example what a forward pass on it alone gives."""
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(tiny_bert_dir, num_labels=1 if regression else 3)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    split = skewed_split(61, seed=8, regression=regression, longest=120, vocab=config.vocab_size)
    if not regression:
        split.labels = [i % 3 for i in range(61)]
    batches = EvalBatches(split, 8, pad_token_id=PAD)
    got, loss = evaluate_split(model, batches, torch.device("cpu"), nullcontext, regression)
    with torch.no_grad():
        alone = [
            model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits[0]
            for ids, types in zip(split.input_ids, split.token_type_ids, strict=True)
        ]
    if regression:
        np.testing.assert_allclose(got, [float(x[0]) for x in alone], atol=1e-5)
    else:
        assert got.tolist() == [int(x.argmax()) for x in alone]
    assert loss is not None and loss > 0


# ------------------------------------------------------------------ padding


@pytest.mark.parametrize("multiple", [None, 1, 3, 8, 64])
@pytest.mark.parametrize("seed", range(4))
def test_padding_keeps_every_token_and_pads_to_the_multiple(multiple, seed) -> None:
    split = skewed_split(97, seed=seed, pairs=seed % 2 == 0, regression=seed == 3)
    for batch in loader(
        split, seed=seed, group=seed < 2, batch_size=1 + seed * 5, multiple=multiple
    ):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        lengths = mask.sum(-1)
        longest, width = int(lengths.max()), ids.shape[1]
        step = multiple or 1
        assert width % step == 0 and longest <= width < longest + step
        assert width == padded_width(longest, multiple)
        for row, n in enumerate(lengths.tolist()):
            assert bool((mask[row, :n] == 1).all()) and bool((mask[row, n:] == 0).all())
            assert bool((ids[row, n:] == PAD).all()) and bool((ids[row, :n] != PAD).all())
            if "token_type_ids" in batch:
                assert bool((batch["token_type_ids"][row, n:] == 0).all())
        assert batch["labels"].dtype == (torch.float32 if seed == 3 else torch.long)


def test_padded_width_property() -> None:
    for longest in range(1, 300):
        for multiple in (None, 1, 2, 7, 8, 16):
            width = padded_width(longest, multiple)
            step = multiple or 1
            assert width % step == 0 and longest <= width < longest + step


# ------------------------------------------------------------------ in a run


def test_a_run_with_grouping_and_padding_trains_and_is_deterministic() -> None:
    overrides = ["tasks=[sst2]", "seeds=[1]", "train.epochs=2", "train.group_by_length=true"]
    spec = load_spec(SMOKE, [*overrides, "train.pad_to_multiple_of=8"])
    run = next(r for r in expand(spec, SMOKE.parent) if r.variant == "addrop")
    a, b = run_one(run), run_one(run)
    assert a.metrics.best == b.metrics.best
    assert a.epochs[-1].train_loss == b.epochs[-1].train_loss
    plain = load_spec(SMOKE, ["tasks=[sst2]", "seeds=[1]", "train.epochs=2"])
    plain_run = next(r for r in expand(plain, SMOKE.parent) if r.variant == "addrop")
    assert plain_run.run_id != run.run_id  # other batches, another result: another run
