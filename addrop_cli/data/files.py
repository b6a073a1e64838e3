"""Reading GLUE-layout and custom CSV / TSV / JSON-lines files, one clear line per bad row."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from addrop_cli.data.examples import GLUE_FIX, Example
from addrop_cli.data.tasks import SplitFile, TaskInfo
from addrop_cli.errors import DataError

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


# Reading files
# ---------------------------------------------------------------------------------------------


def missing_file_error(path: Path, task: TaskInfo) -> DataError:
    if task.custom is not None:
        fix = (
            f"fix the path in data.custom_tasks.{task.name} "
            f"(relative paths start at the spec's folder)"
        )
        return DataError(f"{path}: file not found; {fix}")
    if not path.parent.parent.is_dir():
        return DataError(f"{path.parent.parent}: GLUE folder not found; {GLUE_FIX}")
    if not path.parent.is_dir():
        return DataError(
            f"{path.parent}: folder not found, so {task.display} is not in this GLUE folder; "
            f"download {task.display} into it or use data.source: hub"
        )
    return DataError(f"{path}: file not found; {GLUE_FIX}")


def _open_text(path: Path):
    """Open a data file as UTF-8, dropping a byte-order mark (MRPC train/dev start with one)."""
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115


def iter_delimited(path: Path, *, tsv: bool) -> Iterator[tuple[int, list[str]]]:
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
        low, high = task.score_range or (-math.inf, math.inf)
        if not low <= value <= high:
            raise DataError(
                f"{where}: label {raw!r} in column {column!r} is outside {task.display}'s "
                f"range {low:g} to {high:g}; fix the row"
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


def read_glue_file(task: TaskInfo, split: str, path: Path) -> list[Example]:
    layout: SplitFile = task.files[split]
    label_map = {raw: i for i, raw in enumerate(task.file_labels)}
    rows = iter_delimited(path, tsv=True)
    if layout.header:
        first = next(rows, None)
        if first is None:
            raise DataError(f"{path}:1: empty file, no header; {GLUE_FIX}")
        header = [h.strip() for h in first[1]]
        ncols = len(header)
        index: dict[str | int, int] = {}
        for col in (*layout.text, *(() if layout.label is None else (layout.label,))):
            if col not in header:
                raise DataError(
                    f"{path}:1: missing column {col!r} (header: {' | '.join(header)}); "
                    f"this is not the GLUE {task.display} {split} layout; {GLUE_FIX}"
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


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
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


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix == ".csv":
        return "csv"
    raise DataError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")


def custom_columns(task: TaskInfo, split: str) -> tuple[list[str], str | None]:
    spec = task.custom
    assert spec is not None
    texts = [spec.text_a] + ([spec.text_b] if spec.text_b else [])
    return texts, (spec.label if not split.startswith("test") else None)


def custom_fix(task: TaskInfo, what: str) -> str:
    return f"fix data.custom_tasks.{task.name}.{what} or the file"


def read_custom_file(task: TaskInfo, split: str, path: Path) -> list[Example]:
    texts, label_col = custom_columns(task, split)
    label_map = {name: i for i, name in enumerate(task.label_names)}
    fmt = file_format(path)
    records: Iterator[tuple[int, Mapping[str, Any]]]
    if fmt == "jsonl":
        records = iter_jsonl(path)
    else:
        records = dict_rows(
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
                raise DataError(f"{where}: missing field {col!r}; {custom_fix(task, what)}")
        values = [rec[c] for c in texts]
        for col, v in zip(texts, values, strict=True):
            if not isinstance(v, str):
                raise DataError(
                    f"{where}: field {col!r} is {type(v).__name__}, not text; "
                    f"{custom_fix(task, 'text_a')}"
                )
        label = (
            _parse_label(task, rec[label_col], where, label_col, label_map) if label_col else None
        )
        examples.append(Example.at(split, len(examples), values, label))
    return examples


def dict_rows(
    path: Path, *, tsv: bool, needed: Sequence[str], task: TaskInfo
) -> Iterator[tuple[int, dict[str, str]]]:
    rows = iter_delimited(path, tsv=tsv)
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
