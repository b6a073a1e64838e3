"""Counted nouns in what addrop prints: ``1 run``, ``2 runs``."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun`` as one says them: ``plural(1, "run")`` is ``1 run``,
    ``plural(2, "run")`` is ``2 runs`` (``many``: an irregular plural)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
