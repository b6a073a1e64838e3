"""What several commands share: spec-and-overrides arguments, the execution options of `run` and
`sweep` (each an executor.* override) and ``--track``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from addrop_cli.errors import SpecError

if TYPE_CHECKING:
    from addrop_cli.spec.schema import ExperimentSpec


def split_args(args: list[str]) -> tuple[list[Path], list[str]]:
    """Positional arguments are spec files, except ``key=value`` overrides."""
    specs = [Path(a) for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    return specs, overrides


def one_spec(args: list[str]) -> tuple[Path, list[str]]:
    specs, overrides = split_args(args)
    if len(specs) != 1:
        raise SpecError(
            f"expected one spec file and key=value overrides, got {len(specs)} files: "
            f"{' '.join(map(str, specs)) or '(none)'}; e.g. addrop run experiments/smoke.yaml"
        )
    return specs[0], overrides


# Execution options shared by `run` and `sweep`; each becomes an executor.* override, so the
# command line beats the spec's executor: block and is validated with it.
BackendOpt = Annotated[
    str | None, typer.Option("--backend", help="local (default) or slurm.", show_default=False)
]
WorkersOpt = Annotated[
    str | None,
    typer.Option(
        "--workers",
        help="Local worker processes (auto: one per GPU). Default: the spec's, else 1.",
        show_default=False,
    ),
]
RunsPerGpuOpt = Annotated[
    str | None,
    typer.Option(
        "--runs-per-gpu",
        help="Local runs sharing each visible GPU (auto: as many as fit). Ignored on CPU.",
        show_default=False,
    ),
]
ThreadsOpt = Annotated[
    int | None, typer.Option(help="torch threads per local worker.", show_default=False)
]
PartitionOpt = Annotated[str | None, typer.Option(help="Slurm partition.", show_default=False)]
GpusOpt = Annotated[int | None, typer.Option(help="Slurm: GPUs per job.", show_default=False)]
CpusOpt = Annotated[int | None, typer.Option(help="Slurm: CPUs per job.", show_default=False)]
MemOpt = Annotated[
    float | None, typer.Option("--mem-gb", help="Slurm: memory per job (GB).", show_default=False)
]
TimeOpt = Annotated[
    int | None,
    typer.Option("--time-min", help="Slurm: time limit per job (minutes).", show_default=False),
]
ArrayOpt = Annotated[
    int | None,
    typer.Option(help="Slurm: array tasks running at once.", show_default=False),
]
TrackOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--track",
        help="Follow runs in tensorboard, mlflow or wandb (repeatable; adds to the spec's "
        "tracking).",
        show_default=False,
    ),
]
OnlyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--only",
        help="Run only the runs whose task, variant, seed or factor value is one of these "
        "(KEY=V1,V2, e.g. seed=1 or data.train_size=500,1000; repeatable, every KEY must "
        "match). The spec, its version and the run ids stay the full spec's.",
        show_default=False,
    ),
]


def results_path(text: str) -> Path:
    if not text.strip():
        raise SpecError("--results: empty path; give a folder, e.g. --results results")
    return Path(text)


ResultsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Results folder (default: the spec's results_dir).",
        parser=results_path,
        show_default=False,
    ),
]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.", show_default=False)]


_EXECUTOR_OPTIONS = {
    "device": "train.device",
    "backend": "executor.backend",
    "workers": "executor.workers",
    "runs_per_gpu": "executor.runs_per_gpu",
    "threads": "executor.threads",
    "partition": "executor.slurm.partition",
    "gpus": "executor.slurm.gpus",
    "cpus": "executor.slurm.cpus",
    "mem_gb": "executor.slurm.mem_gb",
    "time_min": "executor.slurm.time_min",
    "array_parallelism": "executor.slurm.array_parallelism",
}


def executor_overrides(options: dict[str, object]) -> list[str]:
    """A command's execution options (its parameters, by name) as executor.* overrides.

    None keeps the spec's value. `run` and `sweep` pass their ``locals()``: both declare the
    same option parameters, and this is the one place that maps them to spec paths.
    """
    return [
        # strings are quoted: `--partition null` is the partition "null", not YAML's null
        f"{path}={json.dumps(value) if isinstance(value, str) else value}"
        for name, path in _EXECUTOR_OPTIONS.items()
        if (value := options.get(name)) is not None
    ]


def with_tracking(spec: ExperimentSpec, track: list[str] | None) -> ExperimentSpec:
    """The spec with ``--track`` trackers added to its ``tracking`` (each once)."""
    if not track:
        return spec
    from addrop_cli.spec.trackers import TRACKERS

    for name in track:
        if name not in TRACKERS:
            raise SpecError(f"--track: {TRACKERS.unknown(name)}")
    merged = list(dict.fromkeys([*spec.tracking.to, *track]))
    return spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"to": merged})})


def grid_overrides(axes: list[str]) -> list[str]:
    """``--grid PATH=VALUES`` axes as sweep.grid.* overrides."""
    overrides = []
    for axis in axes:
        key, sep, values = axis.partition("=")
        if not sep or not key.strip():
            raise SpecError(
                f"--grid {axis!r}: expected PATH=VALUES, e.g. --grid methods.addrop.p=[0.1,0.3]"
            )
        overrides.append(f"sweep.grid.{key.strip()}={values}")
    return overrides


# Options that `addrop run` and `addrop sweep` share.
SpecArgs = Annotated[list[str], typer.Argument(help="SPEC.yaml, then key=value overrides.")]
PlainOpt = Annotated[
    bool,
    typer.Option(
        "--plain", help="One line per event (and a summary every minute) instead of the live table."
    ),
]
RetryOpt = Annotated[bool, typer.Option(help="Run again the runs that failed before.")]
RestartOpt = Annotated[
    bool,
    typer.Option(
        "--restart", help="Start interrupted runs from step 0 (discard their training state)."
    ),
]
GridOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--grid",
        help="PATH=VALUES: add a grid axis, e.g. methods.addrop.p=[0.1,0.3] or "
        "'train.lr={start: 1e-5, stop: 3e-5, step: 1e-5}' (repeatable).",
        show_default=False,
    ),
]
