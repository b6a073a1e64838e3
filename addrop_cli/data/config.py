"""The data settings: the spec's ``data:`` section, defined here so the data layer never imports
the spec (the spec's schema uses these models as they are)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from addrop_cli.settings import Frozen, check_names


class CustomTaskSpec(Frozen):
    """A task of the user's own, read from CSV / TSV / JSON-lines files with a column mapping."""

    train: Path
    dev: Path
    test: Path | None = None
    text_a: str = Field(min_length=1)
    text_b: str | None = None
    label: str = "label"
    labels: list[str] | None = None
    """Label names in order (classification); omit with ``regression: true``."""
    regression: bool = False
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"])
    main_metric: str | None = None

    @model_validator(mode="after")
    def _labels_or_regression(self) -> CustomTaskSpec:
        if self.regression and self.labels:
            raise ValueError("give either labels (classification) or regression: true, not both")
        if not self.regression and not self.labels:
            raise ValueError("a classification task needs labels: [name, ...]")
        return self


class DataSpec(Frozen):
    """Where the data comes from and how much of it a run uses."""

    source: Literal["auto", "glue_dir", "hub"] = "auto"
    """auto: ``glue_dir`` (or ADDROP_GLUE_DIR) when set, else the Hub dataset ``nyu-mll/glue``."""
    glue_dir: Path | None = None
    train_size: Annotated[float, Field(gt=0)] | None = None
    """A count (>= 1) or a fraction (< 1) of the training set, stratified by label, seeded."""
    heldout: Annotated[float, Field(gt=0)] | None = None
    """Carve this many (>= 1) or this fraction (< 1) of train out as the selection split, used
    for early stopping and selection, leaving the GLUE dev set for reporting only."""
    dev_size: Annotated[int, Field(ge=1)] | None = None
    """Use only the first N dev examples (quick checks; reports say so)."""
    cache_dir: Path | None = None
    custom_tasks: dict[str, CustomTaskSpec] = Field(default_factory=dict)

    @field_validator("custom_tasks", mode="before")
    @classmethod
    def _task_names(cls, v: Any) -> Any:
        return check_names(v, "custom task")

    @field_validator("train_size", "heldout")
    @classmethod
    def _count_or_fraction(cls, v: float | None) -> float | None:
        if v is not None and v >= 1 and v != int(v):
            raise ValueError(f"must be a fraction below 1 or a whole count, got {v}")
        return v
