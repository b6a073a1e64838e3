"""Examples from three sources, low-resource subsets, tokenisation with an on-disk cache, batching.

Sources, in order of precedence:

1. A task named in ``data.custom_tasks`` is always read from the user's CSV / TSV / JSON-lines
   files. Relative paths resolve against ``base_dir`` (the spec file's folder), else the current
   folder. ``.csv`` files use standard CSV quoting; ``.tsv`` / ``.tab`` files are read like the GLUE
   files, tab-separated with quoting disabled; ``.jsonl`` / ``.json`` / ``.ndjson`` hold one JSON
   object per line. Label values must equal one of the task's ``labels`` (compared as text).
2. A GLUE task with ``data.source: glue_dir``, or ``auto`` with a GLUE folder given as
   ``data.glue_dir`` or, failing that, the environment variable ``ADDROP_GLUE_DIR``: the official
   GLUE layout written by ``download_glue_data.py`` (``SST-2/train.tsv``, ``MNLI/dev_matched.tsv``,
   ``diagnostic/diagnostic.tsv``, ...). Files are read as UTF-8 with any byte-order mark dropped
   (MRPC), tab-separated, with quoting disabled (``csv.QUOTE_NONE``): GLUE sentences contain
   unbalanced quotes that would otherwise merge rows.
3. Otherwise (``auto`` without a folder, or ``source: hub``) the Hugging Face Hub dataset
   ``nyu-mll/glue`` through ``datasets.load_dataset``.

There is no silent fallback: a GLUE folder that lacks the task is an error, not a download.
Whatever the source, an example's ``guid`` is ``"<split>-<position>"`` (0-based position of the
row in the split), text is kept as it is in the file, and labels are ids into ``task.label_names``
(floats for STS-B), so the same task gives the same examples from every source.

Low-resource protocol (:func:`prepare_task_data`): first ``data.heldout`` examples (a count, or a
fraction of train) are carved out of train as the selection split, stratified by label and seeded
with the run seed; then ``data.train_size`` (a count or a fraction of what is left) is drawn
from the rest, stratified and seeded the same way, from its own random stream, so the held-out set
does not depend on ``train_size`` and every method with the same seed sees the same subset. The
GLUE dev split(s) stay untouched for reporting (``data.dev_size`` keeps only the first N of each).

Tokenised splits are cached on disk (``data.cache_dir``, else ``ADDROP_CACHE_DIR``, else
``~/.cache/addrop``) under a key made of the tokenizer's fingerprint (a hash of its vocabulary and
pipeline), the task, split, max length, source and a hash of the examples' content. Writes go to a
temporary file that is then renamed over the target (``os.replace``), so concurrent runs never see a
partial file.

Every problem with the data is a :class:`DataError` with one line ``path:line: what; fix``, raised
before any training starts.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from addrop_cli.errors import DataError, SpecError
from addrop_cli.tasks import SplitFile, TaskInfo

if TYPE_CHECKING:
    import torch

    from addrop_cli.spec import DataSpec

log = logging.getLogger(__name__)

HUB_DATASET = "nyu-mll/glue"
GLUE_DIR_ENV = "ADDROP_GLUE_DIR"
CACHE_DIR_ENV = "ADDROP_CACHE_DIR"
CACHE_VERSION = 1
"""Bump when the cached array layout or the encoding changes."""

_STREAM_HELDOUT = 1
_STREAM_TRAIN_SIZE = 2
_REGRESSION_STRATA = 10
_GLUE_FIX = "point data.glue_dir / ADDROP_GLUE_DIR at the output of download_glue_data.py"


@dataclass(frozen=True)
class Example:
    guid: str
    text_a: str
    text_b: str | None
    label: int | float | None
    """Index into ``task.label_names``; a float for regression; None for unlabelled test rows."""

    @classmethod
    def at(
        cls, split: str, position: int, texts: Sequence[str], label: int | float | None
    ) -> Example:
        """The example at ``position`` of ``split``: every source names examples the same way."""
        return cls(
            guid=f"{split}-{position}",
            text_a=texts[0],
            text_b=texts[1] if len(texts) > 1 else None,
            label=label,
        )


# ---------------------------------------------------------------------------------------------
# Where the data lives
# ---------------------------------------------------------------------------------------------


def _resolve(path: str | os.PathLike[str], base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def resolve_glue_dir(data: DataSpec, base_dir: Path | None = None) -> Path | None:
    """The GLUE folder: ``data.glue_dir`` (relative to ``base_dir``), else ``ADDROP_GLUE_DIR``."""
    if data.glue_dir is not None:
        return _resolve(data.glue_dir, base_dir)
    env = os.environ.get(GLUE_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else None


def resolve_cache_dir(data: DataSpec, base_dir: Path | None = None) -> Path:
    """``data.cache_dir`` (relative to ``base_dir``), else ``ADDROP_CACHE_DIR``, else
    ``~/.cache/addrop``."""
    if data.cache_dir is not None:
        return _resolve(data.cache_dir, base_dir)
    env = os.environ.get(CACHE_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/addrop").expanduser()


def data_source(task: TaskInfo, data: DataSpec, base_dir: Path | None = None) -> str:
    """Which source serves ``task``: ``"custom"``, ``"glue_dir"`` or ``"hub"``."""
    if task.custom is not None:
        return "custom"
    if data.source == "hub":
        return "hub"
    if resolve_glue_dir(data, base_dir) is not None:
        return "glue_dir"
    if data.source == "glue_dir":
        raise DataError(
            "data.source: glue_dir, but neither data.glue_dir nor ADDROP_GLUE_DIR is set; "
            "set one, or use source: auto / hub"
        )
    return "hub"


def _split_path(task: TaskInfo, split: str, data: DataSpec, base_dir: Path | None) -> Path:
    """The file holding ``split`` for a file-based source."""
    if task.custom is not None:
        p = getattr(task.custom, split, None)
        if p is None:
            raise DataError(
                f"data.custom_tasks.{task.name}: no {split} file; add `{split}: PATH` to the task"
            )
        return _resolve(p, base_dir)
    glue_dir = resolve_glue_dir(data, base_dir)
    assert glue_dir is not None and task.folder is not None
    return glue_dir / task.folder / task.files[split].filename


def _check_split_name(task: TaskInfo, split: str) -> None:
    if split not in task.splits:
        raise ValueError(f"{task.display} has no split {split!r}; its splits: {task.splits}")


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def _missing_file_error(path: Path, task: TaskInfo) -> DataError:
    if task.custom is not None:
        fix = (
            f"fix the path in data.custom_tasks.{task.name} "
            f"(relative paths start at the spec's folder)"
        )
        return DataError(f"{path}: file not found; {fix}")
    if not path.parent.parent.is_dir():
        return DataError(f"{path.parent.parent}: GLUE folder not found; {_GLUE_FIX}")
    if not path.parent.is_dir():
        return DataError(
            f"{path.parent}: folder not found, so {task.display} is not in this GLUE folder; "
            f"download {task.display} into it or use data.source: hub"
        )
    return DataError(f"{path}: file not found; {_GLUE_FIX}")


def _open_text(path: Path):
    """Open a data file as UTF-8, dropping a byte-order mark (MRPC train/dev start with one)."""
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115


def _iter_delimited(path: Path, *, tsv: bool) -> Iterator[tuple[int, list[str]]]:
    """Rows of a TSV (quoting disabled) or CSV file, with their 1-based line numbers."""
    try:
        with _open_text(path) as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.reader(f)
            line = 1
            for row in reader:
                yield line, row
                line = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); re-save the file as UTF-8"
        ) from None
    except csv.Error as e:
        raise DataError(f"{path}: unreadable CSV ({e}); fix the file's quoting") from None


def _parse_label(
    task: TaskInfo, raw: Any, where: str, column: str | int, label_map: Mapping[str, int]
) -> int | float:
    if task.is_regression:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise DataError(
                f"{where}: label {raw!r} in column {column!r} is not a number; "
                f"give a finite number for this regression task"
            )
        return value
    key = str(raw).strip() if not isinstance(raw, bool) else str(raw).lower()
    if key not in label_map:
        raise DataError(
            f"{where}: unknown label {raw!r} in column {column!r}; "
            f"expected one of {', '.join(repr(k) for k in label_map)}; "
            f"fix the row or the task's labels"
        )
    return label_map[key]


def _read_glue_file(task: TaskInfo, split: str, path: Path) -> list[Example]:
    layout: SplitFile = task.files[split]
    label_map = {raw: i for i, raw in enumerate(task.file_labels)}
    rows = _iter_delimited(path, tsv=True)
    if layout.header:
        first = next(rows, None)
        if first is None:
            raise DataError(f"{path}:1: empty file, no header; {_GLUE_FIX}")
        header = [h.strip() for h in first[1]]
        ncols = len(header)
        index: dict[str | int, int] = {}
        for col in (*layout.text, *(() if layout.label is None else (layout.label,))):
            if col not in header:
                raise DataError(
                    f"{path}:1: missing column {col!r} (header: {' | '.join(header)}); "
                    f"this is not the GLUE {task.display} {split} layout; {_GLUE_FIX}"
                )
            index[col] = header.index(col)
    else:
        ncols = layout.ncols or 0
        index = {c: c for c in (*layout.text, layout.label) if isinstance(c, int)}
    examples: list[Example] = []
    for line, row in rows:
        if not row:  # a blank line
            continue
        where = f"{path}:{line}"
        if len(row) != ncols:
            raise DataError(
                f"{where}: {len(row)} tab-separated fields, expected {ncols}; "
                f"fix or remove the row (GLUE files hold one example per line)"
            )
        texts = [row[index[c]] for c in layout.text]
        label: int | float | None = None
        if layout.label is not None:
            label = _parse_label(task, row[index[layout.label]], where, layout.label, label_map)
        examples.append(Example.at(split, len(examples), texts, label))
    return examples


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with _open_text(path) as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{path}:{line_no}: not valid JSON ({e.msg}); give one JSON object per line"
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(
                        f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}; "
                        f"give one JSON object per line"
                    )
                yield line_no, obj
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); re-save the file as UTF-8"
        ) from None


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix == ".csv":
        return "csv"
    raise DataError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")


def _custom_columns(task: TaskInfo, split: str) -> tuple[list[str], str | None]:
    spec = task.custom
    assert spec is not None
    texts = [spec.text_a] + ([spec.text_b] if spec.text_b else [])
    return texts, (spec.label if not split.startswith("test") else None)


def _custom_fix(task: TaskInfo, what: str) -> str:
    return f"fix data.custom_tasks.{task.name}.{what} or the file"


def _read_custom_file(task: TaskInfo, split: str, path: Path) -> list[Example]:
    texts, label_col = _custom_columns(task, split)
    label_map = {name: i for i, name in enumerate(task.label_names)}
    fmt = _file_format(path)
    records: Iterator[tuple[int, Mapping[str, Any]]]
    if fmt == "jsonl":
        records = _iter_jsonl(path)
    else:
        records = _dict_rows(
            path, tsv=fmt == "tsv", needed=texts + ([label_col] if label_col else []), task=task
        )
    examples: list[Example] = []
    for line, rec in records:
        where = f"{path}:{line}"
        for col, what in [
            *((c, "text_a/text_b") for c in texts),
            *(((label_col, "label"),) if label_col else ()),
        ]:
            if col not in rec or rec[col] is None:
                raise DataError(f"{where}: missing field {col!r}; {_custom_fix(task, what)}")
        values = [rec[c] for c in texts]
        for col, v in zip(texts, values, strict=True):
            if not isinstance(v, str):
                raise DataError(
                    f"{where}: field {col!r} is {type(v).__name__}, not text; "
                    f"{_custom_fix(task, 'text_a')}"
                )
        label = (
            _parse_label(task, rec[label_col], where, label_col, label_map) if label_col else None
        )
        examples.append(Example.at(split, len(examples), values, label))
    return examples


def _dict_rows(
    path: Path, *, tsv: bool, needed: Sequence[str], task: TaskInfo
) -> Iterator[tuple[int, dict[str, str]]]:
    rows = _iter_delimited(path, tsv=tsv)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}:1: empty file, no header; give a header row naming the columns")
    header = [h.strip() for h in first[1]]
    for col in needed:
        if col not in header:
            raise DataError(
                f"{path}:1: no column {col!r} (header: {' | '.join(header)}); "
                f"fix the column names in data.custom_tasks.{task.name} or the header"
            )
    for line, row in rows:
        if not row:
            continue
        if len(row) != len(header):
            sep = "tab-separated" if tsv else "comma-separated"
            raise DataError(
                f"{path}:{line}: {len(row)} {sep} fields, expected {len(header)} as in the header; "
                f"fix or remove the row"
            )
        yield line, dict(zip(header, row, strict=True))


# ---------------------------------------------------------------------------------------------
# The Hugging Face Hub
# ---------------------------------------------------------------------------------------------


def _hub_float(v: Any) -> float:
    """The Hub stores STS-B scores as float32: give back the decimal the GLUE file holds."""
    return float(str(np.float32(v)))


def examples_from_hub_rows(
    task: TaskInfo, split: str, rows: Iterable[Mapping[str, Any]], where: str | None = None
) -> list[Example]:
    """Convert rows in the Hub's column layout (``sentence``/``label``/``idx``, ...) to examples.

    The Hub marks unlabelled test rows with label -1; they become ``label=None``.
    """
    where = where or f"{HUB_DATASET}/{task.hub_config}:{task.hub_splits.get(split, split)}"
    is_test = split in task.test_splits
    examples: list[Example] = []
    for pos, row in enumerate(rows):
        at = f"{where}:{pos}"
        for col in (*task.text_columns, "label"):
            if col not in row:
                raise DataError(
                    f"{at}: missing column {col!r} (has {', '.join(row)}); "
                    f"this is not the {HUB_DATASET} {task.hub_config} layout"
                )
        raw = row["label"]
        label: int | float | None
        if is_test or raw is None or (not task.is_regression and int(raw) == -1):
            label = None
        elif task.is_regression:
            label = _hub_float(raw)
        else:
            label = int(raw)
            if not 0 <= label < len(task.label_names):
                raise DataError(
                    f"{at}: label id {raw!r} out of range for {task.display} "
                    f"({len(task.label_names)} classes); the Hub dataset changed its layout"
                )
        if label is None and not is_test:
            raise DataError(
                f"{at}: unlabelled row in the {split} split; the Hub data is incomplete"
            )
        texts = [row[c] for c in task.text_columns]
        examples.append(Example.at(split, pos, texts, label))
    return examples


def _load_hub_split(task: TaskInfo, split: str) -> list[Example]:
    """One split of ``nyu-mll/glue`` through ``datasets.load_dataset`` (downloads on first use)."""
    hub_split = task.hub_splits[split]
    where = f"{HUB_DATASET}/{task.hub_config}:{hub_split}"
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{where}: the `datasets` package is not installed; pip install datasets, "
            f"or set data.glue_dir / ADDROP_GLUE_DIR to a local GLUE folder"
        ) from None
    try:
        ds = datasets.load_dataset(HUB_DATASET, task.hub_config, split=hub_split)
    except Exception as e:  # noqa: BLE001 - any failure to fetch is the user's environment
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(
            f"{where}: could not load from the Hugging Face Hub ({type(e).__name__}: {msg}); "
            f"check the network and HF_DATASETS_OFFLINE, or set data.glue_dir / ADDROP_GLUE_DIR "
            f"to a local GLUE folder"
        ) from None
    feature = getattr(ds, "features", {}).get("label") if hasattr(ds, "features") else None
    names = tuple(getattr(feature, "names", ()) or ())
    if not task.is_regression and names and names != task.label_names:
        raise DataError(
            f"{where}: label names {names} differ from the expected {task.label_names}; "
            f"the Hub dataset changed, use a local GLUE folder"
        )
    return examples_from_hub_rows(task, split, _rows_of(ds), where)


def _rows_of(ds: Any) -> Iterable[Mapping[str, Any]]:
    """Rows of a ``datasets.Dataset`` (column-wise, which is much faster than row access)."""
    if hasattr(ds, "to_dict") and hasattr(ds, "column_names"):
        cols = ds.to_dict()
        names = list(cols)
        n = len(cols[names[0]]) if names else 0
        return ({k: cols[k][i] for k in names} for i in range(n))
    return ds


# ---------------------------------------------------------------------------------------------
# Public loading API
# ---------------------------------------------------------------------------------------------


def load_examples(
    task: TaskInfo, split: str, data: DataSpec, base_dir: Path | None = None
) -> list[Example]:
    """All examples of one split of ``task`` from the source the spec selects.

    Raises :class:`DataError` for a missing file or folder, a missing column, an unknown label, a
    row with the wrong number of fields, or an empty split.
    """
    _check_split_name(task, split)
    source = data_source(task, data, base_dir)
    if source == "hub":
        examples = _load_hub_split(task, split)
        where = f"{HUB_DATASET}/{task.hub_config}:{task.hub_splits[split]}"
    else:
        path = _split_path(task, split, data, base_dir)
        if not path.is_file():
            raise _missing_file_error(path, task)
        if source == "custom":
            examples = _read_custom_file(task, split, path)
        else:
            examples = _read_glue_file(task, split, path)
        where = str(path)
    if not examples:
        raise DataError(f"{where}: the {split} split has no examples; give a file with data rows")
    return examples


def check_data(
    task: TaskInfo, data: DataSpec, base_dir: Path | None = None, *, include_test: bool = False
) -> list[str]:
    """Cheap pre-flight: the problems that would stop a run, one line each; [] when fine.

    Checks that files and folders exist and that headers name the needed columns. For the Hub
    source it only checks that ``datasets`` is importable (nothing is downloaded).
    """
    try:
        source = data_source(task, data, base_dir)
    except DataError as e:
        return list(e.problems)
    if source == "hub":
        if importlib.util.find_spec("datasets") is None:
            return [
                f"{HUB_DATASET}: the `datasets` package is not installed; pip install datasets, "
                f"or set data.glue_dir / ADDROP_GLUE_DIR"
            ]
        return []
    splits = [s for s in (task.train_split, *task.dev_splits) if s]
    if include_test or not splits:
        splits += list(task.test_splits)
    problems: list[str] = []
    for split in splits:
        try:
            path = _split_path(task, split, data, base_dir)
        except DataError as e:
            problems.extend(e.problems)
            continue
        if not path.is_file():
            msg = _missing_file_error(path, task).problems[0]
            if msg not in problems:
                problems.append(msg)
            continue
        try:
            _check_header(task, split, path)
        except DataError as e:
            problems.extend(e.problems)
    return problems


def _check_header(task: TaskInfo, split: str, path: Path) -> None:
    """Read only the first record of a file and check its columns."""
    if task.custom is not None:
        texts, label_col = _custom_columns(task, split)
        needed = texts + ([label_col] if label_col else [])
        fmt = _file_format(path)
        if fmt == "jsonl":
            for line, rec in _iter_jsonl(path):
                for col in needed:
                    if col not in rec:
                        raise DataError(
                            f"{path}:{line}: missing field {col!r}; {_custom_fix(task, 'columns')}"
                        )
                return
            raise DataError(
                f"{path}: the {split} split has no examples; give a file with data rows"
            )
        for _ in _dict_rows(path, tsv=fmt == "tsv", needed=needed, task=task):
            return
        raise DataError(f"{path}: the {split} split has no examples; give a file with data rows")
    layout = task.files[split]
    rows = _iter_delimited(path, tsv=True)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: the {split} split has no examples; {_GLUE_FIX}")
    line, row = first
    if layout.header:
        header = [h.strip() for h in row]
        for col in (*layout.text, *(() if layout.label is None else (layout.label,))):
            if col not in header:
                raise DataError(
                    f"{path}:1: missing column {col!r} (header: {' | '.join(header)}); "
                    f"this is not the GLUE {task.display} {split} layout; {_GLUE_FIX}"
                )
    elif len(row) != layout.ncols:
        raise DataError(
            f"{path}:{line}: {len(row)} tab-separated fields, expected {layout.ncols}; "
            f"this is not the GLUE {task.display} {split} layout; {_GLUE_FIX}"
        )


# ---------------------------------------------------------------------------------------------
# Subsets: held-out carve-out and train_size
# ---------------------------------------------------------------------------------------------


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed % 2**63, stream])


def _strata(examples: Sequence[Example], regression: bool) -> list[list[int]]:
    """Index groups to stratify over: by label, or by score decile for regression."""
    if regression:
        values = np.array([float(e.label) for e in examples])  # type: ignore[arg-type]
        order = np.argsort(values, kind="stable")
        k = min(_REGRESSION_STRATA, len(examples))
        return [sorted(chunk.tolist()) for chunk in np.array_split(order, k) if len(chunk)]
    groups: dict[Any, list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(e.label, []).append(i)
    return [groups[k] for k in sorted(groups, key=lambda x: (x is None, x))]


def _allocate(sizes: Sequence[int], n: int) -> list[int]:
    """Split ``n`` over groups proportionally (largest remainder), each group >= 1 when n allows."""
    total = sum(sizes)
    quotas = [n * s / total for s in sizes]
    alloc = [math.floor(q) for q in quotas]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - alloc[i]), i))
    for i in order[: n - sum(alloc)]:
        alloc[i] += 1
    if n >= len(sizes):
        for i in range(len(sizes)):
            if alloc[i] == 0:
                donor = max(range(len(sizes)), key=lambda j: (alloc[j], -j))
                alloc[donor] -= 1
                alloc[i] += 1
    return alloc


def stratified_sample(
    examples: Sequence[Example], n: int, rng: np.random.Generator, *, regression: bool
) -> list[int]:
    """Sorted indices of ``n`` examples drawn without replacement, stratified by label."""
    if n >= len(examples):
        return list(range(len(examples)))
    groups = _strata(examples, regression)
    picked: list[int] = []
    for group, k in zip(groups, _allocate([len(g) for g in groups], n), strict=True):
        perm = rng.permutation(len(group))[:k]
        picked.extend(group[i] for i in perm)
    return sorted(picked)


def _size(value: float, total: int) -> int:
    """A count (>= 1) or a fraction (< 1) of ``total`` as a number of examples (at least 1)."""
    return int(value) if value >= 1 else max(1, round(value * total))


def split_train(
    train: Sequence[Example], data: DataSpec, seed: int, *, regression: bool, task_name: str = ""
) -> tuple[list[int], list[int] | None]:
    """Indices of (the training subset, the held-out subset or None) within ``train``."""
    remaining = list(range(len(train)))
    heldout: list[int] | None = None
    if data.heldout is not None:
        h = _size(data.heldout, len(train))
        if h >= len(train):
            raise DataError(
                f"data.heldout: {h} held-out examples leave none of the {len(train)} "
                f"{task_name} training examples; use a smaller count or fraction"
            )
        heldout = stratified_sample(train, h, _rng(seed, _STREAM_HELDOUT), regression=regression)
        taken = set(heldout)
        remaining = [i for i in remaining if i not in taken]
    if data.train_size is not None:
        n = _size(data.train_size, len(remaining))
        if n > len(remaining):
            log.warning(
                "%s: train_size %d is more than the %d training examples; using all of them",
                task_name,
                n,
                len(remaining),
            )
        pool = [train[i] for i in remaining]
        sub = stratified_sample(pool, n, _rng(seed, _STREAM_TRAIN_SIZE), regression=regression)
        remaining = [remaining[i] for i in sub]
    return remaining, heldout


# ---------------------------------------------------------------------------------------------
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
    return f"{source}:{_split_path(task, split, data, base_dir).resolve()}"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared by a team
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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


class _Collate:
    """Pads a batch to its longest sequence; labels as long (classification) or float tensors."""

    def __init__(self, split: EncodedSplit, pad_token_id: int) -> None:
        self.split = split
        self.pad = pad_token_id

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        import torch

        s = self.split
        width = max(len(s.input_ids[i]) for i in indices)
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


def make_loader(
    split: EncodedSplit,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    pad_token_id: int,
) -> torch.utils.data.DataLoader:
    """Batches of a split as dicts of tensors, padded per batch, in a seeded order.

    ``shuffle=True`` needs a ``generator`` (the run's seeded ``torch.Generator``), so the order
    never depends on global random state. Without shuffling the order is the split's order.
    """
    from torch.utils.data import DataLoader

    if shuffle and generator is None:
        raise ValueError("make_loader(shuffle=True) needs a seeded torch.Generator")
    if len(split) == 0:
        raise DataError(f"{split.name}: the split has no examples; nothing to batch")
    return DataLoader(
        list(range(len(split))),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator if shuffle else None,
        collate_fn=_Collate(split, pad_token_id),
        num_workers=0,
    )


__all__ = [
    "CACHE_DIR_ENV",
    "GLUE_DIR_ENV",
    "HUB_DATASET",
    "EncodedSplit",
    "Example",
    "TaskData",
    "cache_path",
    "check_data",
    "data_source",
    "encode_examples",
    "encode_split",
    "examples_from_hub_rows",
    "load_examples",
    "make_loader",
    "prepare_task_data",
    "resolve_cache_dir",
    "resolve_glue_dir",
    "split_train",
    "stratified_sample",
    "tokenizer_fingerprint",
]
