"""Tokenisation of examples, and the on-disk cache of tokenised splits."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from addrop_cli.data.examples import CACHE_VERSION, HUB_DATASET, Example
from addrop_cli.data.sources import data_source, load_examples, resolve_cache_dir, split_path
from addrop_cli.data.tasks import TaskInfo
from addrop_cli.store.atomic import atomic_file

if TYPE_CHECKING:
    from addrop_cli.data.config import DataSpec

log = logging.getLogger(__name__)


# Tokenisation and the cache
# ---------------------------------------------------------------------------------------------


@dataclass
class EncodedSplit:
    name: str
    guids: list[str]
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[int] | list[float] | None
    is_regression: bool = field(default=False, repr=False)

    def __len__(self) -> int:
        return len(self.input_ids)

    def subset(self, indices: Sequence[int], name: str | None = None) -> EncodedSplit:
        return EncodedSplit(
            name=name or self.name,
            guids=[self.guids[i] for i in indices],
            input_ids=[self.input_ids[i] for i in indices],
            token_type_ids=None
            if self.token_type_ids is None
            else [self.token_type_ids[i] for i in indices],
            labels=None if self.labels is None else [self.labels[i] for i in indices],  # type: ignore[misc]
            is_regression=self.is_regression,
        )


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything in a tokenizer that changes its output (vocabulary, pipeline)."""
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # runtime state that encoding calls change
        spec.pop("padding", None)
        h.update(json.dumps(spec, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        h.update(repr(getattr(tokenizer, "do_lower_case", None)).encode())
    extra = {
        "special": {
            k: str(v) for k, v in (getattr(tokenizer, "special_tokens_map", {}) or {}).items()
        },
        "inputs": list(getattr(tokenizer, "model_input_names", []) or []),
        "truncation_side": getattr(tokenizer, "truncation_side", "right"),
    }
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


def _content_hash(examples: Sequence[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.guid}\x1f{e.text_a}\x1f{e.text_b}\x1f{e.label!r}\x1e".encode())
    return h.hexdigest()


def _source_id(task: TaskInfo, split: str, data: DataSpec, base_dir: Path | None) -> str:
    source = data_source(task, data, base_dir)
    if source == "hub":
        return f"hub:{HUB_DATASET}/{task.hub_config}:{task.hub_splits[split]}"
    return f"{source}:{split_path(task, split, data, base_dir).resolve()}"


def encode_examples(
    examples: Sequence[Example],
    tokenizer: Any,
    max_length: int,
    *,
    name: str,
    is_regression: bool,
) -> EncodedSplit:
    """Tokenise single or paired texts the tokenizer's way, truncating longest-first, unpadded."""
    pair = any(e.text_b is not None for e in examples)
    ids: list[list[int]] = []
    ttis: list[list[int]] | None = []
    chunk = 4096
    for start in range(0, len(examples), chunk):
        part = examples[start : start + chunk]
        enc = tokenizer(
            [e.text_a for e in part],
            [e.text_b or "" for e in part] if pair else None,
            truncation="longest_first",
            max_length=max_length,
            padding=False,
            return_attention_mask=False,
        )
        ids.extend(list(map(list, enc["input_ids"])))
        if "token_type_ids" in enc and ttis is not None:
            ttis.extend(list(map(list, enc["token_type_ids"])))
        else:
            ttis = None
    labelled = all(e.label is not None for e in examples)
    labels: list[int] | list[float] | None = None
    if labelled:
        labels = (
            [float(e.label) for e in examples]
            if is_regression
            else [int(e.label) for e in examples]
        )  # type: ignore[arg-type]
    return EncodedSplit(
        name=name,
        guids=[e.guid for e in examples],
        input_ids=ids,
        token_type_ids=ttis,
        labels=labels,
        is_regression=is_regression,
    )


def _to_arrays(split: EncodedSplit) -> dict[str, np.ndarray]:
    lengths = np.fromiter((len(x) for x in split.input_ids), dtype=np.int64, count=len(split))
    arrays = {
        "lengths": lengths,
        "input_ids": np.fromiter(
            (t for x in split.input_ids for t in x), dtype=np.int32, count=int(lengths.sum())
        ),
        "guids": np.array(split.guids, dtype=str),
    }
    if split.token_type_ids is not None:
        arrays["token_type_ids"] = np.fromiter(
            (t for x in split.token_type_ids for t in x), dtype=np.int8, count=int(lengths.sum())
        )
    if split.labels is not None:
        arrays["labels"] = np.array(
            split.labels, dtype=np.float64 if split.is_regression else np.int64
        )
    return arrays


def _from_arrays(arrays: Mapping[str, np.ndarray], name: str, is_regression: bool) -> EncodedSplit:
    bounds = np.cumsum(arrays["lengths"])[:-1]
    flat = arrays["input_ids"].astype(np.int64)
    ids = [x.tolist() for x in np.split(flat, bounds)] if len(arrays["lengths"]) else []
    tti = None
    if "token_type_ids" in arrays:
        tti = [x.astype(np.int64).tolist() for x in np.split(arrays["token_type_ids"], bounds)]
    labels = arrays["labels"].tolist() if "labels" in arrays else None
    return EncodedSplit(
        name=name,
        guids=[str(g) for g in arrays["guids"].tolist()],
        input_ids=ids,
        token_type_ids=tti,
        labels=labels,
        is_regression=is_regression,
    )


def _atomic_save(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    # 0644: the cache may be shared by a team
    with atomic_file(path, "wb", permissions=0o644) as f:
        np.savez(f, **arrays)


def cache_path(
    task: TaskInfo,
    split: str,
    examples: Sequence[Example],
    tokenizer: Any,
    max_length: int,
    data: DataSpec,
    base_dir: Path | None = None,
) -> Path:
    """Where the tokenised ``split`` is cached: a name keyed by tokenizer, task, split, length,
    source and content."""
    key = json.dumps(
        {
            "v": CACHE_VERSION,
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "task": task.name,
            "split": split,
            "max_length": max_length,
            "source": _source_id(task, split, data, base_dir),
            "content": _content_hash(examples),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return (
        resolve_cache_dir(data, base_dir)
        / "tokenized"
        / f"{task.name}-{split}-{max_length}-{digest}.npz"
    )


def encode_split(
    task: TaskInfo,
    split: str,
    data: DataSpec,
    tokenizer: Any,
    max_length: int,
    *,
    base_dir: Path | None = None,
    examples: Sequence[Example] | None = None,
) -> EncodedSplit:
    """The whole tokenised split, from the on-disk cache when a matching entry exists."""
    if examples is None:
        examples = load_examples(task, split, data, base_dir)
    path = cache_path(task, split, examples, tokenizer, max_length, data, base_dir)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return _from_arrays({k: z[k] for k in z.files}, split, task.is_regression)
        except Exception as e:  # noqa: BLE001 - a damaged cache entry is rebuilt
            log.warning("ignoring unreadable cache file %s (%s)", path, e)
    encoded = encode_examples(
        examples, tokenizer, max_length, name=split, is_regression=task.is_regression
    )
    try:
        _atomic_save(path, _to_arrays(encoded))
    except OSError as e:
        log.warning(
            "could not write the tokenisation cache %s (%s); continuing without it", path, e
        )
    return encoded


# ---------------------------------------------------------------------------------------------
