"""The trackers a spec may name, in one registry: the ``tracking:`` values the schema accepts,
the pip extra and the module each needs, and what it writes. ``execution/tracking.py`` holds one
class per name here (a test checks that the two agree)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from addrop_cli.registry import Registry


@dataclass(frozen=True)
class TrackerInfo:
    name: str
    extra: str
    """The pip extra that installs it: ``pip install 'addrop-cli[<extra>]'``."""
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
