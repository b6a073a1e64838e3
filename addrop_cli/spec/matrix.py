"""The run matrix: one spec -> one :class:`RunSpec` per task x variant x seed, and run identity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
)

from addrop_cli.spec.schema import (
    DataSpec,
    ExperimentSpec,
    Frozen,
    MethodParams,
    ModelSpec,
    TrainSpec,
)

Probability = Annotated[float, Field(gt=0.0, le=1.0)]
"""A rate in (0, 1]: AD-DROP's p and q."""

DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]
"""A dropout rate in [0, 1)."""


# --------------------------------------------------------------------------------------------
# Expansion: one ExperimentSpec -> the run matrix
# --------------------------------------------------------------------------------------------

# Settings that change where or how fast a run goes, not its result: left out of the run id so
# that moving the GLUE folder or the cache, running on more threads or compiling never redoes a
# run.
_TRAIN_KEYS_NOT_IN_ID = {"device", "threads", "save_checkpoint", "eval_batch_size", "compile"}
_DATA_KEYS_NOT_IN_ID = {"source", "glue_dir", "cache_dir"}


class RunSpec(Frozen):
    """One training run: a task, a method variant and a seed, with everything it needs."""

    experiment: str
    task: str
    variant: str
    params: MethodParams
    seed: int
    model: ModelSpec
    train: TrainSpec
    data: DataSpec
    sweep: dict[str, Any] | None = None
    base_dir: Path = Path(".")
    """The spec file's folder: relative paths in the spec resolve against it."""

    def identity(self) -> dict[str, Any]:
        """What determines the run's result: hashed into its run id.

        Settings at their default are left out, so a setting added in a later version (at its
        default) never changes the id of a run stored before it; changing a default is a store
        format change.
        """
        dump = {"mode": "json", "exclude_defaults": True}
        return {
            "task": self.task,
            "params": {"method": self.params.method, **self.params.model_dump(**dump)},
            "seed": self.seed,
            "model": self.model.model_dump(**dump),
            "train": self.train.model_dump(exclude=_TRAIN_KEYS_NOT_IN_ID, **dump),
            "data": self.data.model_dump(exclude=_DATA_KEYS_NOT_IN_ID, **dump),
            "sweep": self.sweep,
        }

    @property
    def run_id(self) -> str:
        return config_hash(self.identity())

    @property
    def label(self) -> str:
        """``task/variant/seedN``, with the sweep point for sweep runs (``[p=0.1, q=0.3]``)."""
        base = f"{self.task}/{self.variant}/seed{self.seed}"
        point = (self.sweep or {}).get("point")
        if not point:
            return base
        shown = ", ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in point.items())
        return f"{base} [{shown}]"


def config_hash(obj: Any, length: int = 12) -> str:
    """A short, stable hash of a JSON-serialisable object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def expand(spec: ExperimentSpec, base_dir: Path | None = None) -> list[RunSpec]:
    """The run matrix: task x variant x seed, in that nesting order."""
    from addrop_cli.data.tasks import get_task

    base = (base_dir or Path(".")).resolve()
    runs = []
    for task in spec.tasks:
        canonical = get_task(task, spec.data).name
        for variant, params in spec.methods.items():
            for seed in spec.seeds:
                runs.append(
                    RunSpec(
                        experiment=spec.name,
                        task=canonical,
                        variant=variant,
                        params=params,
                        seed=seed,
                        model=spec.model,
                        train=spec.train,
                        data=spec.data,
                        base_dir=base,
                    )
                )
    return runs
