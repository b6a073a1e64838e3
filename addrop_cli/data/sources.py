"""Which source serves a task (own files, GLUE folder, Hub), and the public loading API.

Sources, in order of precedence:

1. A task named in ``data.custom_tasks`` is always read from the user's CSV / TSV / JSON-lines
   files. Relative paths resolve against ``base_dir`` (the spec file's folder), else the current
   folder. ``.csv`` files use standard CSV quoting; ``.tsv`` / ``.tab`` files are read like the GLUE
   files, tab-separated with quoting disabled; ``.jsonl`` / ``.json`` / ``.ndjson`` hold one JSON
   object per line. Label values must equal one of the task's ``labels`` (compared as text).
2. A GLUE task with ``data.source: glue_dir``, or ``auto`` with a GLUE folder given as
   ``data.glue_dir`` or, failing that, the environment variable ``ADDROP_GLUE_DIR``: the official
   GLUE layout (``SST-2/train.tsv``, ``MNLI/dev_matched.tsv``,
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
'''

"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from addrop_cli.data.examples import CACHE_DIR_ENV, GLUE_DIR_ENV, GLUE_FIX, HUB_DATASET, Example
from addrop_cli.data.files import (
    custom_columns,
    custom_fix,
    dict_rows,
    file_format,
    iter_delimited,
    iter_jsonl,
    missing_file_error,
    read_custom_file,
    read_glue_file,
)
from addrop_cli.data.hub import load_hub_split
from addrop_cli.data.tasks import TaskInfo
from addrop_cli.errors import DataError

if TYPE_CHECKING:
    from addrop_cli.data.config import DataSpec

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Where the data lives
# ---------------------------------------------------------------------------------------------


def resolve_path(value: str | os.PathLike[str], base_dir: Path | None) -> Path:
    """A path from a spec: absolute or ``~`` as is, relative ones against ``base_dir`` (the spec's
    folder) when there is one."""
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


def resolve_glue_dir(data: DataSpec, base_dir: Path | None = None) -> Path | None:
    """The GLUE folder: ``data.glue_dir`` (relative to ``base_dir``), else ``ADDROP_GLUE_DIR``."""
    if data.glue_dir is not None:
        return resolve_path(data.glue_dir, base_dir)
    env = os.environ.get(GLUE_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else None


def resolve_cache_dir(data: DataSpec, base_dir: Path | None = None) -> Path:
    """``data.cache_dir`` (relative to ``base_dir``), else ``ADDROP_CACHE_DIR``, else
    ``~/.cache/addrop``."""
    if data.cache_dir is not None:
        return resolve_path(data.cache_dir, base_dir)
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


def split_path(task: TaskInfo, split: str, data: DataSpec, base_dir: Path | None) -> Path:
    """The file holding ``split`` for a file-based source."""
    if task.custom is not None:
        p = getattr(task.custom, split, None)
        if p is None:
            raise DataError(
                f"data.custom_tasks.{task.name}: no {split} file; add `{split}: PATH` to the task"
            )
        return resolve_path(p, base_dir)
    glue_dir = resolve_glue_dir(data, base_dir)
    assert glue_dir is not None and task.folder is not None
    return glue_dir / task.folder / task.files[split].filename


def _check_split_name(task: TaskInfo, split: str) -> None:
    if split not in task.splits:
        raise ValueError(f"{task.display} has no split {split!r}; its splits: {task.splits}")


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
        examples = load_hub_split(task, split)
        where = f"{HUB_DATASET}/{task.hub_config}:{task.hub_splits[split]}"
    else:
        path = split_path(task, split, data, base_dir)
        if not path.is_file():
            raise missing_file_error(path, task)
        if source == "custom":
            examples = read_custom_file(task, split, path)
        else:
            examples = read_glue_file(task, split, path)
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
            path = split_path(task, split, data, base_dir)
        except DataError as e:
            problems.extend(e.problems)
            continue
        if not path.is_file():
            msg = missing_file_error(path, task).problems[0]
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
        texts, label_col = custom_columns(task, split)
        needed = texts + ([label_col] if label_col else [])
        fmt = file_format(path)
        if fmt == "jsonl":
            for line, rec in iter_jsonl(path):
                for col in needed:
                    if col not in rec:
                        raise DataError(
                            f"{path}:{line}: missing field {col!r}; {custom_fix(task, 'columns')}"
                        )
                return
            raise DataError(
                f"{path}: the {split} split has no examples; give a file with data rows"
            )
        for _ in dict_rows(path, tsv=fmt == "tsv", needed=needed, task=task):
            return
        raise DataError(f"{path}: the {split} split has no examples; give a file with data rows")
    layout = task.files[split]
    rows = iter_delimited(path, tsv=True)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: the {split} split has no examples; {GLUE_FIX}")
    line, row = first
    if layout.header:
        header = [h.strip() for h in row]
        for col in (*layout.text, *(() if layout.label is None else (layout.label,))):
            if col not in header:
                raise DataError(
                    f"{path}:1: missing column {col!r} (header: {' | '.join(header)}); "
                    f"this is not the GLUE {task.display} {split} layout; {GLUE_FIX}"
                )
    elif len(row) != layout.ncols:
        raise DataError(
            f"{path}:{line}: {len(row)} tab-separated fields, expected {layout.ncols}; "
            f"this is not the GLUE {task.display} {split} layout; {GLUE_FIX}"
        )


# ---------------------------------------------------------------------------------------------
