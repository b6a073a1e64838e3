"""How addrop writes to the terminal: consoles that print user text as typed and go quiet on a
closed pipe, and help screens without a value placeholder beside on/off flags."""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from typing import Any

from rich.console import Console


class _QuietPipe:
    """stdout that goes quiet once its reader has gone (``addrop report ... | head``): the
    command carries on (files are written, runs finish) instead of failing on a closed pipe."""

    gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return sys.stdout.write(text)
            except BrokenPipeError:
                self._quiet()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                self._quiet()

    def _quiet(self) -> None:
        self.gone = True
        # point the descriptor at /dev/null so that the interpreter's last flush is quiet too
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.stdout, name)


def make_consoles() -> tuple[Console, Console]:
    """The consoles for stdout and stderr.

    Off a terminal (pipes, CI logs, files) Rich would wrap tables at 80 columns: use a width
    that fits the report tables unless the user set COLUMNS. No markup or emoji codes: messages
    hold user text (paths, names, `:train:`) that must print as typed.
    """
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    out = Console(file=_QuietPipe(), soft_wrap=True, width=width, markup=False, emoji=False)  # type: ignore[arg-type]
    err = Console(stderr=True, soft_wrap=True, markup=False, emoji=False)
    return out, err


def flags_without_metavar() -> None:
    """typer's help shows ``<bool>`` beside on/off flags as if they took a value: drop it."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def reflow(text: str) -> str:
    """A docstring as a help screen: a line that continues the one before it is joined to it,
    so the terminal wraps the sentence at its own width (a docstring's line breaks fall
    mid-sentence at 80 columns); indented lines (examples) and paragraphs stay as written."""
    lines = inspect.cleandoc(text).split("\n")
    out: list[str] = []
    for line in lines:
        continues = out and out[-1].strip() and line.strip() and not line.startswith((" ", "\b"))
        if continues and not out[-1].startswith((" ", "\b")):
            out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
    # typer dedents the paragraphs after the first as one block: where they are the examples
    # alone, their indent would go too; an empty markup tag in front keeps it
    return "\n".join(f"[dim][/dim]{line}" if line.startswith("  ") else line for line in out)


def reflow_help(*apps: Any) -> None:
    """Every command's help of these Typer apps, reflowed (:func:`reflow`)."""
    for typer_app in apps:
        if isinstance(typer_app.info.help, str):
            typer_app.info.help = reflow(typer_app.info.help)
        for info in typer_app.registered_commands:
            text = info.help or (info.callback.__doc__ if info.callback else None)
            if text:
                info.help = reflow(text)
