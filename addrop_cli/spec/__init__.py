"""The experiment spec: its schema, loading YAML with overrides, sweep checks and the run matrix."""

from addrop_cli.data.sources import resolve_path
from addrop_cli.spec.load import load_spec, spec_to_yaml
from addrop_cli.spec.matrix import RunSpec, expand, spec_version
from addrop_cli.spec.schema import (
    CustomTaskSpec,
    DataSpec,
    ExecutorSpec,
    ExperimentSpec,
    ModelSpec,
    SlurmSpec,
    SweepSpec,
    TrainSpec,
)
from addrop_cli.store.records import config_hash

__all__ = [
    "CustomTaskSpec",
    "DataSpec",
    "ExecutorSpec",
    "ExperimentSpec",
    "ModelSpec",
    "RunSpec",
    "SlurmSpec",
    "SweepSpec",
    "TrainSpec",
    "config_hash",
    "spec_version",
    "expand",
    "load_spec",
    "resolve_path",
    "spec_to_yaml",
]
