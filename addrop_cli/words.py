"""Counted nouns in what addrop prints (``1 run``, ``2 runs``), and its one install hint."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun`` as one says them: ``plural(1, "run")`` is ``1 run``,
    ``plural(2, "run")`` is ``2 runs`` (``many``: an irregular plural)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def install_hint(extra: str) -> str:
    """How to install one of addrop's extras, said once for every message that needs it: a
    clone installs itself editable, an installed package by its name on PyPI."""
    return (
        f"pip install -e '.[{extra}]' in a clone of addrop, "
        f"pip install 'addrop-cli[{extra}]' otherwise"
    )
