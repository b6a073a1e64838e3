"""The run matrix: one spec -> one :class:`RunSpec` per task x variant x seed (identity: store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from addrop_cli.data.config import DataSpec
from addrop_cli.models.config import ModelSpec
from addrop_cli.settings import Frozen
from addrop_cli.spec.factors import factor_points
from addrop_cli.spec.schema import ExperimentSpec, MethodParams, TrainSpec
from addrop_cli.store.identity import (
    DATA_KEYS_NOT_IN_ID,
    TRAIN_KEYS_NOT_IN_ID,
    config_hash,
    point_label,
    run_id,
    run_identity,
)


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
    factors: dict[str, Any] | None = None
    """Spec path -> value of this run's point in the spec's ``factors`` (None without)."""
    trial: dict[str, Any] | None = None
    """A tpe/cmaes search's trial this run reports its evaluations to
    (``execution/sweeps/study.py``); not part of the run's identity: the point (in ``sweep``) is."""
    base_dir: Path = Path(".")
    """The spec file's folder: relative paths in the spec resolve against it."""

    def identity(self) -> dict[str, Any]:
        """What determines the run's result: hashed into its run id.

        Settings at their default are left out, so a setting added in a later version (at its
        default) never changes the id of a run stored before it; changing a default is a store
        format change.
        """
        dump = {"mode": "json", "exclude_defaults": True}
        return run_identity(
            task=self.task,
            seed=self.seed,
            params={"method": self.params.method, **self.params.model_dump(**dump)},
            model=self.model.model_dump(**dump),
            train=self.train.model_dump(**dump),
            data=self.data.model_dump(**dump),
            sweep=self.sweep,
            factors=self.factors,
        )

    @property
    def run_id(self) -> str:
        return run_id(self.identity())

    @property
    def label(self) -> str:
        """``task/variant/seedN``, with the factor and sweep points (``[p=0.1, q=0.3]``)."""
        point = {**(self.factors or {}), **((self.sweep or {}).get("point") or {})}
        base = f"{self.task}/{self.variant}/seed{self.seed}"
        return f"{base} [{point_label(point)}]" if point else base


def spec_version(spec: ExperimentSpec) -> str:
    """A short hash of what in the spec can change a result: the executor block, the results
    folder, the trackers and the settings left out of run identities (device, threads, data
    locations, checkpoint saving) are not part of it, so finishing an experiment with other
    workers or threads keeps one spec version. Which tasks, seeds and factor values are run is
    not part of it either: each run's own id holds its task, seed and point, so adding one (or
    running one seed at a time, as ``make study`` does) is more runs, not another version."""
    exclude = {
        "executor": True,
        "results_dir": True,
        "tracking": True,  # who watches the runs changes no result
        "tasks": True,
        "seeds": True,
        "factors": True,
        "train": set(TRAIN_KEYS_NOT_IN_ID),
        "data": set(DATA_KEYS_NOT_IN_ID),
    }
    return config_hash(spec.model_dump(mode="json", exclude=exclude, exclude_defaults=True))


def expand(spec: ExperimentSpec, base_dir: Path | None = None) -> list[RunSpec]:
    """The run matrix: task x variant x factor point x seed, in that nesting order."""
    from addrop_cli.data.tasks import get_task
    from addrop_cli.spec.sweeps import apply_point

    base = (base_dir or Path(".")).resolve()
    points = [(p, apply_point(spec, p) if p else spec) for p in factor_points(spec)]
    runs = []
    for task in spec.tasks:
        canonical = get_task(task, spec.data).name
        for variant, params in spec.methods.items():
            for point, point_spec in points:
                for seed in spec.seeds:
                    runs.append(
                        RunSpec(
                            experiment=spec.name,
                            task=canonical,
                            variant=variant,
                            params=params,
                            seed=seed,
                            model=point_spec.model,
                            train=point_spec.train_of(variant),
                            data=point_spec.data,
                            factors=point or None,
                            base_dir=base,
                        )
                    )
    return runs
