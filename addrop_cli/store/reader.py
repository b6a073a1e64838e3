"""Read the results store back into run records, validated by the typed contract.

This is the only module that reads run files (:mod:`addrop_cli.store.records` defines them). A
run folder is a result only when its ``DONE`` marker exists and its ``metrics.json`` is
readable; everything else is still loaded (so tables can show ``n=2/3`` and say why), with a
status that says what it is. An unreadable file never aborts a report: the run is kept as
``corrupt`` (or dropped, when even its ``run.json`` is unreadable) and a :class:`StoreWarning`
says which file and why.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from addrop_cli.errors import StoreError, first_line
from addrop_cli.store.identity import config_hash, recovered_identity
from addrop_cli.store.records import (
    FORMAT_VERSION,
    EpochRecord,
    RunConfig,
    RunMetrics,
    SplitPredictions,
    epochs_from_one,
)
from addrop_cli.store.status import MARKERS, RunStatus, marked_status

SELECT_STAGE = "select"
"""The ``sweep.stage`` of runs used only to choose hyperparameters."""


class StoreWarning(UserWarning):
    """A run file that cannot be read; the run is skipped, the report goes on."""


@dataclass(frozen=True)
class RunRecord:
    """One run folder: its resolved config, its status and (when done) its final metrics."""

    path: Path
    config: RunConfig = field(repr=False)
    """``run.json``."""
    status: RunStatus
    reason: str = ""
    """Why the run is not a result (FAILED text, missing DONE, unreadable metrics)."""
    metrics: RunMetrics | None = field(default=None, repr=False)
    """``metrics.json``, only when ``status == "done"``."""
    version: str = ""
    """Set (a short spec hash) only when the report must keep this run's spec version apart
    from others in the same experiment folder; it then becomes part of :attr:`experiment`."""

    @property
    def run_id(self) -> str:
        return self.config.run_id or self.path.name

    @property
    def experiment(self) -> str:
        name = self.config.experiment or self.path.parent.parent.name
        return f"{name}@{self.version}" if self.version else name

    @property
    def spec_hash(self) -> str:
        """The hash of the resolved spec that started this run ("" when not recorded)."""
        return self.config.spec_hash

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def method(self) -> str:
        return self.config.method or str(self.method_params.get("method", ""))

    @property
    def method_params(self) -> Mapping[str, Any]:
        return self.config.method_params

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def sweep_point(self) -> Mapping[str, Any] | None:
        return self.config.sweep.point if self.config.sweep else None

    @property
    def factors(self) -> Mapping[str, Any] | None:
        """Spec path -> value of the run's point in its spec's ``factors`` (None without)."""
        return self.config.factors or None

    @property
    def sweep_stage(self) -> str | None:
        return self.config.sweep.stage if self.config.sweep else None

    @property
    def selects_on_dev(self) -> bool:
        """True when early stopping used the dev set itself (no held-out split was carved)."""
        return not self.config.data.get("heldout")

    def dev_metrics(self, epoch: Literal["best", "last"]) -> dict[str, float] | None:
        """The dev metrics at the best or the last epoch; None unless the run is done."""
        if self.metrics is None:
            return None
        return dict(getattr(self.metrics, epoch).dev)

    def epochs(self) -> list[EpochRecord]:
        """The evaluations in ``epochs.jsonl``; unreadable lines are skipped with a warning."""
        path = self.path / "epochs.jsonl"
        if not path.is_file():
            return []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError) as err:  # ValueError: not UTF-8
            _warn(f"{path}: unreadable ({_why(err)}); its evaluations are left out")
            return []
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = EpochRecord.model_validate(json.loads(line))
            except ValueError as err:  # not JSON, or not an evaluation record
                _warn(f"{path}:{number}: {_why(err)}; line skipped")
                continue
            rows.append(
                row.model_copy(update={"epoch": epochs_from_one(self.config.format, row.epoch)})
            )
        return rows

    def predictions(self) -> dict[str, SplitPredictions] | None:
        """``predictions.json`` (dev split -> guids, predictions, labels), or None if absent."""
        path = self.path / "predictions.json"
        if not path.is_file():
            return None
        try:
            data = _PREDICTIONS.validate_python(_json(path))
            for split in data.values():
                n = len(split.guids)
                if len(split.predictions) != n or len(split.labels) != n:
                    raise ValueError("guids, predictions and labels differ in length")
        except (OSError, ValueError) as err:
            _warn(f"{path}: unreadable ({_why(err)}); its run is left out of the bootstrap")
            return None
        return data


_PREDICTIONS = TypeAdapter(dict[str, SplitPredictions])


def find_experiments(path: Path) -> list[Path]:
    """The experiment folders at ``path``: itself if it holds ``runs/``, else its children that do.

    Raises :class:`StoreError` when the path is missing or holds no experiment.
    """
    if not path.exists():
        raise StoreError(
            f"{path}: no such folder; pass an experiment folder written by `addrop run`, "
            "e.g. results/<name>"
        )
    if (path / "runs").is_dir():
        return [path]
    children = sorted(p for p in path.iterdir() if (p / "runs").is_dir()) if path.is_dir() else []
    if not children:
        raise StoreError(
            f"{path}: not a results folder (no runs/ inside); pass an experiment folder "
            "written by `addrop run`, e.g. results/<name>, or run the experiment first "
            "(addrop run experiments/<name>.yaml)"
        )
    return children


def load_runs(path: Path) -> list[RunRecord]:
    """Every run folder of one experiment folder (or of each experiment under ``path``).

    Raises :class:`StoreError` when the path is missing, was written by a newer store format,
    or holds no runs. Unreadable runs are skipped or marked ``corrupt`` with a
    :class:`StoreWarning`.
    """
    records: list[RunRecord] = []
    for experiment in find_experiments(path):
        _check_experiment_format(experiment)
        run_dirs = sorted(
            p for p in (experiment / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        records += recover_identities([r for r in map(read_run, run_dirs) if r is not None])
    if not records:
        raise StoreError(
            f"{path}: holds no runs (runs/ is empty or unreadable); run the experiment first "
            "with `addrop run SPEC.yaml`"
        )
    return records


def recover_identities(records: list[RunRecord]) -> list[RunRecord]:
    """Give runs stored before run.json recorded ``identity`` the identity they were run with,
    where it can be proven.

    A run id is the hash of the run's identity. For an old run, each identity recorded by a
    run of the same variant, with the old run's task and seed put in, is a candidate; the one
    whose hash is the old run's id is its identity. Without this, an experiment continued
    after the upgrade would show one variant as two (old runs and new runs compare unequal).
    Runs no candidate matches keep ``identity`` empty (the report then compares their full
    settings).
    """
    # one candidate per distinct setting (task and seed set per old run below), not per run
    known: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        if r.config.identity is not None:
            rest = {k: v for k, v in r.config.identity.items() if k not in ("task", "seed")}
            known.setdefault(r.variant, {})[config_hash(rest)] = rest
    out = []
    for r in records:
        if r.config.identity is None:
            candidates = list(known.get(r.variant, {}).values())
            found = recovered_identity(candidates, r.config.task, r.config.seed, r.run_id)
            if found is not None:
                r = replace(r, config=r.config.model_copy(update={"identity": found}))
        out.append(r)
    return out


def spec_variant_order(experiment: Path) -> list[str]:
    """Variant names in the order the experiment's ``spec.yaml`` lists them ([] if unknown)."""
    import yaml  # only needed here; the store's other files are JSON

    try:
        spec = yaml.safe_load((experiment / "spec.yaml").read_text(encoding="utf-8"))
        return [str(name) for name in spec.get("methods") or {}]
    except (OSError, ValueError, yaml.YAMLError, AttributeError):  # ValueError: not UTF-8
        return []


def _check_experiment_format(experiment: Path) -> None:
    path = experiment / "experiment.json"
    if not path.is_file():
        return
    try:
        version = json.loads(path.read_text(encoding="utf-8")).get("format", FORMAT_VERSION)
    except (OSError, ValueError, AttributeError) as err:
        _warn(f"{path}: unreadable ({_why(err)}); reading its runs anyway")
        return
    if not isinstance(version, int) or isinstance(version, bool):
        _warn(f"{path}: unreadable (format {version!r} is not a number); reading its runs anyway")
        return
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{path}: format: store format {version} is newer than this addrop reads "
            f"({FORMAT_VERSION}); upgrade addrop"
        )


def spec_hash_order(experiment: Path) -> list[str]:
    """The spec versions recorded in ``experiment.json``, oldest first ([] if unknown)."""
    try:
        meta = json.loads((experiment / "experiment.json").read_text(encoding="utf-8"))
        return [str(h) for h in meta.get("spec_hashes") or []]
    except (OSError, ValueError, AttributeError, TypeError):
        return []


def read_run(run_dir: Path) -> RunRecord | None:
    """One run folder as a record (None when nothing ran in it or its run.json is unreadable)."""
    if not (run_dir / "run.json").exists() and not any(
        (run_dir / marker).exists() for marker, _ in MARKERS
    ):
        return None  # killed while starting, before run.json: nothing ran; the next run redoes it
    config = _read_run_config(run_dir)
    if config is None:
        return None
    status = marked_status(run_dir)  # the markers' word, as the runner reads them
    if status == "failed":
        reason = _marker_text(run_dir / "FAILED")
        return RunRecord(run_dir, config, "failed", first_line(reason) or "failed")
    if status == "pruned":
        text = _marker_text(run_dir / "PRUNED")
        return RunRecord(run_dir, config, "pruned", text.partition(" ")[2] or "pruned")
    if status != "done":
        return RunRecord(run_dir, config, "unfinished", "no DONE marker (running or killed)")
    path = run_dir / "metrics.json"
    try:
        metrics = RunMetrics.model_validate(_json(path))
        _check_metrics(metrics)
        best_epoch = epochs_from_one(metrics.format, metrics.best_epoch)
        metrics = metrics.model_copy(update={"best_epoch": best_epoch, "format": FORMAT_VERSION})
    except (OSError, ValueError) as err:
        _warn(f"{path}: unreadable ({_why(err)}); run skipped{_redo(run_dir)}")
        return RunRecord(run_dir, config, "corrupt", f"metrics.json unreadable: {_why(err)}")
    return RunRecord(run_dir, config, "done", "", metrics)


def run_status(run_dir: Path) -> tuple[RunStatus, str]:
    """A run folder's state in the one vocabulary (:mod:`addrop_cli.store.status`) and why it is
    not a result, read as the report reads it (``corrupt``: DONE, but metrics.json or run.json
    unreadable); quietly: the caller shows the reason."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        record = read_run(run_dir)
    if record is not None:
        return record.status, record.reason
    status = marked_status(run_dir)
    if status == "done":  # run.json unreadable: the report leaves the run out
        return "corrupt", "run.json unreadable"
    return status, ""


def _marker_text(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(encoding="utf-8", errors="replace").strip()
    return ""


def epochs_saved(record: RunRecord) -> int:
    """Training epochs a pruned run did not spend (0 for any other run)."""
    if record.status != "pruned":
        return 0
    with contextlib.suppress(OSError, ValueError):
        ran = int((record.path / "PRUNED").read_text(encoding="utf-8").split()[0])
        return max(int(record.config.train.get("epochs", ran)) - ran, 0)
    return 0


def _read_run_config(run_dir: Path) -> RunConfig | None:
    path = run_dir / "run.json"
    try:
        config = RunConfig.model_validate(_json(path))
        if config.format > FORMAT_VERSION:
            raise ValueError(f"store format {config.format} is newer than {FORMAT_VERSION}")
    except (OSError, ValueError) as err:
        _warn(f"{path}: unreadable ({_why(err)}); run folder skipped")
        return None
    return config


def _json(path: Path) -> Any:
    # json's own messages ("Expecting value at line 1") say more than pydantic's for bad JSON
    return json.loads(path.read_text(encoding="utf-8"))


def _redo(run_dir: Path) -> str:
    # a DONE marker keeps `addrop run` from redoing the run: the folder has to go
    return f"; to redo it, delete {run_dir} and run the experiment again"


def _check_metrics(metrics: RunMetrics) -> None:
    """Raise unless the dev metrics at the best and last epochs are finite numbers."""
    for epoch in ("best", "last"):
        dev = getattr(metrics, epoch).dev
        if not dev:
            raise ValueError(f"{epoch}.dev is empty")
        for key, value in dev.items():
            if not math.isfinite(value):
                raise ValueError(f"{epoch}.dev.{key} is {value}")


def _why(err: BaseException) -> str:
    if isinstance(err, ValidationError):
        # a wrong value says more than a missing key: name it first
        errors = sorted(err.errors(), key=lambda e: e["type"] == "missing")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return _problem(errors[0]) + more
    if isinstance(err, KeyError):
        return f"missing key {err}"
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text (byte {err.start}: {err.reason})"
    if isinstance(err, json.JSONDecodeError):
        return f"not JSON: {err.msg} at line {err.lineno}"
    return str(err) or type(err).__name__


def _warn(message: str) -> None:
    warnings.warn(message, StoreWarning, stacklevel=3)


def _problem(error: Any) -> str:
    """One pydantic error of a store file as a short phrase."""
    where = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "json_invalid":
        return f"not JSON: {error['ctx'].get('error', error['msg'])}"
    if error["type"] == "missing":
        return f"missing key '{where}'"
    if error["type"] in ("float_parsing", "float_type", "int_parsing", "int_type"):
        return f"{where} is not a number: {error['input']!r}"
    return f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}, got {error['input']!r}"


@dataclass(frozen=True)
class SpecPlan:
    """What an experiment's ``spec.yaml`` plans to run (None: the file does not say)."""

    tasks: tuple[str, ...] | None
    variants: tuple[str, ...] | None
    seeds: tuple[int, ...] | None
    factors: Mapping[str, tuple[Any, ...]]
    """Factor path -> its values, in the spec's order ({} without factors)."""


def spec_plan(experiment: Path) -> SpecPlan | None:
    """The tasks, variants, seeds and factor values the experiment's ``spec.yaml`` lists (None
    when there is no readable spec.yaml). ``addrop run --only`` leaves it the full spec."""
    import yaml  # only needed here; the store's other files are JSON

    try:
        spec = yaml.safe_load((experiment / "spec.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8
        return None
    if not isinstance(spec, dict):
        return None

    def listed(key: str) -> tuple[Any, ...] | None:
        value = spec.get(key)
        return tuple(value) if isinstance(value, (list, dict)) and value else None

    seeds = tuple(s for s in listed("seeds") or () if type(s) is int)
    factors = spec.get("factors") if isinstance(spec.get("factors"), dict) else {}
    return SpecPlan(
        tasks=tuple(map(str, listed("tasks") or ())) or None,
        variants=tuple(map(str, listed("methods") or ())) or None,
        seeds=seeds or None,
        factors={str(k): tuple(v) for k, v in factors.items() if isinstance(v, list) and v},
    )
