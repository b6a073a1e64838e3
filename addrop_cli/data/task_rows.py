"""The task registry as plain rows (column -> text) for ``addrop list tasks``, drawn by the CLI."""

from __future__ import annotations

from pathlib import Path

from addrop_cli.data.tasks import get_task, task_names


def _count_rows(path: Path, header: bool) -> int | None:
    """Data rows in a GLUE file (lines, less the header); None when the file is absent."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return max(0, lines - (1 if header else 0))


ROWS_COLUMN = "rows (train/dev/test)"
"""The column :func:`registry_rows` adds when it counts the rows of a GLUE folder."""


def registry_rows(glue_dir: Path | None = None) -> list[dict[str, str]]:
    """The registry as plain rows (column -> text), one per task, for ``addrop list tasks``.

    With a GLUE folder, each row also holds (under :data:`ROWS_COLUMN`) the row count of each
    split found there (``-`` where a file is missing).
    """
    rows = []
    for t in (get_task(name) for name in task_names()):
        row = {
            "task": t.name,
            "name": t.display,
            "input": " + ".join(t.text_columns),
            "labels": "regression (score)" if t.is_regression else ", ".join(t.label_names),
            "metrics": ", ".join(t.metrics) or f"(scored with {t.eval_with})",
            "main": t.main_metric or "-",
            "dev splits": ", ".join(t.dev_splits) or "-",
            "leaderboard": ", ".join(t.leaderboard_files.values()),
        }
        if glue_dir:
            counts = []
            for split, layout in t.files.items():
                n = _count_rows(glue_dir / (t.folder or "") / layout.filename, layout.header)
                counts.append(f"{split} {n if n is not None else '-'}")
            row[ROWS_COLUMN] = ", ".join(counts)
        rows.append(row)
    return rows
