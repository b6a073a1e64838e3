"""``addrop list``: the tasks, methods and model families addrop knows."""

from __future__ import annotations

import os
from pathlib import Path

from rich.table import Table

from addrop_cli.cli.app import console, err_console, list_app


@list_app.command("tasks")
def list_tasks() -> None:
    """The GLUE task registry (with sizes when a GLUE folder is set).

    [bold]Examples[/bold]

      addrop list tasks

      ADDROP_GLUE_DIR=path/to/glue_data addrop list tasks
    """
    glue_dir = os.environ.get("ADDROP_GLUE_DIR", "").strip()
    folder = Path(glue_dir).expanduser() if glue_dir else None
    if folder is not None and not folder.is_dir():
        err_console.print(
            f"warning: ADDROP_GLUE_DIR={glue_dir}: no such folder, so no row counts; point it at "
            "a GLUE folder (see README, Data) or unset it",
            highlight=False,
        )
        folder = None
    console.print(tasks_table(folder))


def tasks_table(glue_dir: Path | None) -> Table:
    """The task registry as a table, with the row counts of ``glue_dir`` when given."""
    from addrop_cli.data.task_rows import registry_rows

    rows = registry_rows(glue_dir)
    table = Table(title="GLUE tasks" + (f" (rows in {glue_dir})" if glue_dir else ""))
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*row.values())
    return table


@list_app.command("methods")
def list_methods() -> None:
    """The methods a spec can use, with their parameters and defaults.

    [bold]Examples[/bold]

      addrop list methods
    """
    from addrop_cli.methods.registry import METHODS

    table = Table(title="methods")
    table.add_column("method")
    table.add_column("parameters (default)")
    table.add_column("what it does")
    for name, info in METHODS.items():
        fields = ", ".join(
            f"{key}={field.get_default(call_default_factory=True)!r}"
            for key, field in info.params.model_fields.items()
            if key != "method"
        )
        table.add_row(name, fields or "-", info.summary)
    console.print(table)


@list_app.command("models")
def list_models() -> None:
    """The encoder families AD-DROP can hook, and how each one's attention is hooked.

    [bold]Examples[/bold]

      addrop list models
    """
    from addrop_cli.models.families import FAMILIES

    table = Table(
        title="model families (the model_type in the model's config.json)",
        caption="attention-function: transformers' attention registry; untargeted layers keep "
        "fused SDPA. probability-tap: the softmax output is tapped in target layers only.",
    )
    table.add_column("family")
    table.add_column("model_type")
    table.add_column("hook")
    table.add_column("notes")
    for family in FAMILIES.values():
        table.add_row(family.label, family.model_type, family.hook, family.note or "-")
    console.print(table)
