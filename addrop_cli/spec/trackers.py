"""The trackers a spec may name, in one registry: the ``tracking:`` values the schema accepts,
the pip extra and the module each needs, and what it writes.
``execution/trackers/tracking.py`` holds one class per name here (a test checks that the
two agree)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from addrop_cli.registry import Registry
from addrop_cli.settings import Frozen


@dataclass(frozen=True)
class TrackerInfo:
    name: str
    extra: str
    """The pip extra that installs it (:func:`~addrop_cli.words.install_hint`)."""
    module: str
    """The module whose presence says it is installed (looked up, never imported, up front)."""
    writes: str


TRACKERS: Registry[TrackerInfo] = Registry(
    "tracker",
    [
        TrackerInfo("tensorboard", "tensorboard", "tensorboard", "event files for TensorBoard"),
        TrackerInfo("mlflow", "mlflow", "mlflow", "runs in an MLflow store or server"),
        TrackerInfo("wandb", "wandb", "wandb", "offline Weights & Biases runs"),
    ],
    key=lambda t: t.name,
)

TrackerName = Literal[TRACKERS.names]  # type: ignore[valid-type]  # the registry's names

LOG_EVERY_STEPS = 50
"""Like the Trainer's ``logging_steps``: a tracker call per step costs more than a small step."""


class TrackingSpec(Frozen):
    """The spec's ``tracking:``, a list of trackers (``tracking: [mlflow]``) or a mapping
    (``tracking: {to: [mlflow], log_every_steps: 10}``)."""

    to: list[TrackerName] = Field(default_factory=list)
    """The trackers that follow every run (``--track`` adds to them)."""
    log_every_steps: int = Field(LOG_EVERY_STEPS, ge=1)
    """Training metrics go to the trackers every this many optimiser steps; evaluations always."""

    @model_validator(mode="before")
    @classmethod
    def _a_list_names_the_trackers(cls, data: Any) -> Any:
        return {"to": data} if isinstance(data, (list, tuple)) else data
