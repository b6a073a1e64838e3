"""One example as every source yields it, and the names of the data locations."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


HUB_DATASET = "nyu-mll/glue"
GLUE_DIR_ENV = "ADDROP_GLUE_DIR"
CACHE_DIR_ENV = "ADDROP_CACHE_DIR"
CACHE_VERSION = 1
"""Bump when the cached array layout or the encoding changes."""

_STREAM_HELDOUT = 1
_STREAM_TRAIN_SIZE = 2
_REGRESSION_STRATA = 10
GLUE_FIX = (
    "point data.glue_dir / ADDROP_GLUE_DIR at a GLUE folder in the official layout (SST-2/train.tsv"
    ", ...), or unset both to read nyu-mll/glue from the Hub (README: Data)"
)


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
