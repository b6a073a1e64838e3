"""A task's splits for one run, and batching with dynamic padding (training batches in a seeded,
optionally length-grouped order; evaluation batches sorted by length)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from addrop_cli.data.encoding import EncodedSplit, encode_split
from addrop_cli.data.sources import load_examples
from addrop_cli.data.subsets import split_train
from addrop_cli.data.tasks import TaskInfo
from addrop_cli.errors import DataError, SpecError

if TYPE_CHECKING:
    import torch

    from addrop_cli.data.config import DataSpec

log = logging.getLogger(__name__)


# A task's splits for one run
# ---------------------------------------------------------------------------------------------


@dataclass
class TaskData:
    task: TaskInfo
    train: EncodedSplit
    select: dict[str, EncodedSplit]
    """Splits for early stopping / selection: ``{"heldout": ...}`` with data.heldout, else dev."""
    dev: dict[str, EncodedSplit]
    """The GLUE dev split(s) for reporting, ``data.dev_size`` applied."""
    test: dict[str, EncodedSplit]
    """Test splits (unlabelled for GLUE) when ``include_test=True``, else {}."""


def prepare_task_data(
    task: TaskInfo,
    data: DataSpec,
    tokenizer: Any,
    max_length: int,
    seed: int,
    *,
    base_dir: Path | None = None,
    include_test: bool = False,
) -> TaskData:
    """Load, subset and tokenise every split one run of ``task`` needs.

    Raises :class:`DataError` for bad data, before any training starts.
    """
    if task.train_split is None:
        raise SpecError(
            f"{task.display} has no training data; it is scored with the {task.eval_with} model"
        )
    train_ex = load_examples(task, task.train_split, data, base_dir)
    dev_ex = {s: load_examples(task, s, data, base_dir) for s in task.dev_splits}
    test_ex = (
        {s: load_examples(task, s, data, base_dir) for s in task.test_splits}
        if include_test
        else {}
    )
    train_all = encode_split(
        task, task.train_split, data, tokenizer, max_length, base_dir=base_dir, examples=train_ex
    )
    train_idx, heldout_idx = split_train(
        train_ex, data, seed, regression=task.is_regression, task_name=task.display
    )
    train = train_all.subset(train_idx)
    dev: dict[str, EncodedSplit] = {}
    for s, ex in dev_ex.items():
        enc = encode_split(task, s, data, tokenizer, max_length, base_dir=base_dir, examples=ex)
        if data.dev_size is not None and data.dev_size < len(enc):
            enc = enc.subset(range(data.dev_size))
        dev[s] = enc
    select = (
        {"heldout": train_all.subset(heldout_idx, "heldout")}
        if heldout_idx is not None
        else dict(dev)
    )
    test = {
        s: encode_split(task, s, data, tokenizer, max_length, base_dir=base_dir, examples=ex)
        for s, ex in test_ex.items()
    }
    return TaskData(task=task, train=train, select=select, dev=dev, test=test)


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------


def padded_width(longest: int, multiple: int | None) -> int:
    """A batch's width: its longest sequence, rounded up to ``multiple`` when given (tensor cores
    under mixed precision run fastest on multiples of 8)."""
    if not multiple:
        return longest
    return -(-longest // multiple) * multiple


class _Collate:
    """Pads a batch to its longest sequence; labels as long (classification) or float tensors."""

    def __init__(
        self, split: EncodedSplit, pad_token_id: int, pad_to_multiple_of: int | None = None
    ) -> None:
        self.split = split
        self.pad = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        import torch

        s = self.split
        width = padded_width(max(len(s.input_ids[i]) for i in indices), self.multiple)
        n = len(indices)
        input_ids = torch.full((n, width), self.pad, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        tti = torch.zeros((n, width), dtype=torch.long) if s.token_type_ids is not None else None
        for row, i in enumerate(indices):
            ids = s.input_ids[i]
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
            if tti is not None:
                tti[row, : len(ids)] = torch.tensor(s.token_type_ids[i], dtype=torch.long)  # type: ignore[index]
        batch = {"input_ids": input_ids, "attention_mask": mask}
        if tti is not None:
            batch["token_type_ids"] = tti
        if s.labels is not None:
            values = [s.labels[i] for i in indices]
            dtype = torch.float32 if s.is_regression else torch.long
            batch["labels"] = torch.tensor(values, dtype=dtype)
        return batch


def length_grouped_order(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[int]:
    """One epoch's order with batches of similar length, as transformers' LengthGroupedSampler.

    A seeded permutation is cut into megabatches of ``50 x batch_size`` (fewer for small
    splits: at least four megabatches), each sorted by length, longest first; the batch holding
    the longest example goes first, so running out of memory shows at the first step. The
    random megabatches keep the order shuffled; sorting inside them is what cuts the padding.
    """
    import torch

    mult = max(1, min(len(lengths) // (batch_size * 4), 50))
    size = mult * batch_size
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    megabatches = [
        sorted(perm[i : i + size], key=lambda j: lengths[j], reverse=True)
        for i in range(0, len(perm), size)
    ]
    longest = max(range(len(megabatches)), key=lambda m: lengths[megabatches[m][0]])
    first, other = megabatches[0], megabatches[longest]
    first[0], other[0] = other[0], first[0]
    return [i for megabatch in megabatches for i in megabatch]


class LengthGroupedSampler:
    """A sampler over a split that draws a new length-grouped order each epoch (seeded)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(length_grouped_order(self.lengths, self.batch_size, self.generator))


def make_loader(
    split: EncodedSplit,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    pad_token_id: int,
    group_by_length: bool = False,
    pad_to_multiple_of: int | None = None,
) -> torch.utils.data.DataLoader:
    """Batches of a split as dicts of tensors, padded per batch, in a seeded order.

    ``shuffle=True`` needs a ``generator`` (the run's seeded ``torch.Generator``), so the order
    never depends on global random state. Without shuffling the order is the split's order.
    ``group_by_length`` (with ``shuffle``) puts examples of similar length in the same batch
    (:func:`length_grouped_order`); ``pad_to_multiple_of`` rounds each batch's width up.
    """
    from torch.utils.data import DataLoader

    if shuffle and generator is None:
        raise ValueError("make_loader(shuffle=True) needs a seeded torch.Generator")
    if len(split) == 0:
        raise DataError(f"{split.name}: the split has no examples; nothing to batch")
    sampler = None
    if shuffle and group_by_length:
        assert generator is not None
        lengths = [len(ids) for ids in split.input_ids]
        sampler = LengthGroupedSampler(lengths, batch_size, generator)
    plain_shuffle = shuffle and sampler is None
    return DataLoader(
        list(range(len(split))),
        batch_size=batch_size,
        shuffle=plain_shuffle,
        sampler=sampler,
        generator=generator if plain_shuffle else None,
        collate_fn=_Collate(split, pad_token_id, pad_to_multiple_of),
        num_workers=0,
    )


class EvalBatches:
    """A split's batches for evaluation and prediction, sorted by length (longest first).

    Sorting leaves almost no padding (SST-2's dev set in its own order is about 60% padding at
    16 a batch), and the longest batch comes first, so a full GPU shows at once.
    :meth:`restore` puts per-example outputs back in the split's order.
    """

    def __init__(
        self,
        split: EncodedSplit,
        batch_size: int,
        *,
        pad_token_id: int,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        from torch.utils.data import DataLoader

        if len(split) == 0:
            raise DataError(f"{split.name}: the split has no examples; nothing to batch")
        # a stable sort: examples of equal length keep the split's order
        self.order = sorted(range(len(split)), key=lambda i: -len(split.input_ids[i]))
        self.loader = DataLoader(
            self.order,
            batch_size=batch_size,
            shuffle=False,
            collate_fn=_Collate(split, pad_token_id, pad_to_multiple_of),
            num_workers=0,
        )

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    def restore(self, outputs: Any) -> Any:
        """``outputs`` (one row per example, in batch order) in the split's order."""
        restored = outputs.copy()
        restored[self.order] = outputs
        return restored
