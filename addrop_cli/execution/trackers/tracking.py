"""Experiment trackers: TensorBoard, MLflow and Weights & Biases, each an optional extra.

A tracker receives what the training loop logs (per step: loss, learning rate, dropped fraction
per target layer, samples/s; per evaluation: every dev and selection metric), the resolved run
config as hyperparameters, and the run id, task, variant, method and seed as tags. Nothing needs
a network: W&B runs in offline mode and MLflow writes a local file store unless the user points
them elsewhere (``WANDB_MODE``, ``MLFLOW_TRACKING_URI``).

Each tracker is a :class:`~addrop_cli.engine.loggers.RunLogger`, an optional one of the run's
:class:`~addrop_cli.engine.loggers.Loggers`. Trackers never decide a run's fate: one that is not
installed or fails to start is one line (:class:`TrackerProblem`) and the run goes on without it;
one that fails mid-run is reported once and dropped by the fan-out.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from addrop_cli.engine.loggers import QuietLogger, tracker_error
from addrop_cli.spec.trackers import TRACKERS
from addrop_cli.store.atomic import atomic_write_json
from addrop_cli.store.folders import TRACKER_IDS
from addrop_cli.store.status import EndStatus
from addrop_cli.words import install_hint

if TYPE_CHECKING:
    from addrop_cli.engine.loggers import StepEvent
    from addrop_cli.store.records import EpochRecord


@dataclass(frozen=True)
class RunInfo:
    """What a tracker needs to know about the run it follows."""

    run_id: str
    experiment: str
    task: str
    variant: str
    method: str
    seed: int
    folder: Path
    """The run's folder in the store (results/<experiment>/runs/<run_id>)."""
    experiment_dir: Path
    """results/<experiment>: trackers keep their files under ``tracking/`` there."""
    config: Mapping[str, Any]
    """The resolved run config (run.json), logged as hyperparameters."""
    resume_step: int | None = None
    """The last optimiser step before this attempt when it resumes a run (None: a fresh start);
    each tracker then continues the run it followed before (ids kept in the run folder)."""
    log_every_steps: int = 1
    """Training metrics go to the trackers every this many optimiser steps (the spec's
    ``tracking.log_every_steps``); evaluations always do."""
    tracking_dir: Path | None = None
    """Where the trackers' files go instead of results/<experiment>/tracking (track --dir)."""

    @property
    def params(self) -> dict[str, Any]:
        """The config as hyperparameters: without ``identity``, which repeats its settings."""
        return {k: v for k, v in self.config.items() if k != "identity"}

    @property
    def tracking_folder(self) -> Path:
        return self.tracking_dir or self.experiment_dir / "tracking"

    @property
    def label(self) -> str:
        return f"{self.task}/{self.variant}/seed{self.seed}"

    @property
    def tags(self) -> dict[str, str]:
        return {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "task": self.task,
            "variant": self.variant,
            "method": self.method,
            "seed": str(self.seed),
        }


class Tracker(QuietLogger):
    """A run logger that sends numbers to a tracking tool: each step's and each evaluation's
    metrics (:func:`step_metrics`, :func:`eval_metrics`) through :meth:`log`, and the run's
    status through :meth:`finish`."""

    name = "tracker"
    every = 1
    """Training metrics are logged at the steps that are a multiple of this."""
    last_step = 0

    @property
    def wants_method_stats(self) -> bool:
        """The method's statistics only for a step that is logged (reading them costs a device
        copy, a synchronisation on a GPU)."""
        return (self.last_step + 1) % self.every == 0

    def on_step(self, event: StepEvent) -> None:
        self.last_step = event.global_step
        if event.global_step % self.every == 0:
            self.log_numbers(step_metrics(event), event.global_step)

    def on_eval(self, record: EpochRecord) -> None:
        self.log_numbers(eval_metrics(record), record.step)

    def on_end(self, status: EndStatus, detail: str) -> None:
        self.finish(status)

    def log_numbers(self, metrics: Mapping[str, Any], step: int) -> None:
        """:meth:`log` the entries that are numbers (booleans are not), if any."""
        clean = {k: float(v) for k, v in metrics.items() if _is_number(v)}
        if clean:
            self.log(clean, step)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def finish(self, status: EndStatus) -> None:
        raise NotImplementedError


def remembered(run: RunInfo, name: str) -> str | None:
    """The id ``name`` gave this run in an earlier attempt, when this attempt resumes it."""
    if run.resume_step is None:
        return None
    return tracker_ids(run.folder).get(name)


def tracker_ids(folder: Path) -> dict[str, str]:
    """Each tracker's id of the run in ``folder`` ({} when none, or when the file is damaged:
    the trackers then start new runs)."""
    try:
        known = json.loads((folder / TRACKER_IDS).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent (no tracker followed the run), or damaged
        return {}
    return {str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {}


def remember(run: RunInfo, name: str, ident: str) -> None:
    """Keep ``name``'s id of this run for a later attempt that resumes it."""
    atomic_write_json(run.folder / TRACKER_IDS, tracker_ids(run.folder) | {name: ident})


class TrackerProblem(Exception):
    """A tracker that cannot start: the message is the one line shown to the user."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 2e-5}}`` -> ``{"train.lr": 2e-5}``; lists become JSON text."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, f"{name}.")
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, default=str)
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------------------------------------
# The three trackers
# ---------------------------------------------------------------------------------------------


class TensorBoardTracker(Tracker):
    """Event files under ``tracking/tensorboard/<task>_<variant>_seed<seed>_<run_id>/``: one
    folder per run, so ``tensorboard --logdir results/<experiment>/tracking/tensorboard`` lists
    the runs by name. The config is an ``hparams`` entry and a text summary; a finished run adds
    its best dev metrics (``best_dev/<metric>``, from metrics.json) to that entry, so that the
    HParams dashboard compares runs by dev score. A resumed attempt
    appends to the same folder from the step after the state it resumes (``purge_step``: what
    the interrupted attempt logged after that state is dropped by TensorBoard's readers)."""

    name = "tensorboard"

    def __init__(self, run: RunInfo) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError as err:
            raise _missing(self.name, err) from err
        folder = run.tracking_folder / "tensorboard" / _slug(run)
        self.folder, self.metrics_file, self._hparams = folder, run.folder / "metrics.json", hparams
        self.params = {k: _hparam(v) for k, v in flatten(run.params).items()} | run.tags
        if run.resume_step is not None:
            self.writer = SummaryWriter(log_dir=str(folder), purge_step=run.resume_step + 1)
            return
        shutil.rmtree(folder, ignore_errors=True)  # a run started over starts its curves afresh
        self.writer = SummaryWriter(log_dir=str(folder))
        # the session's start now; the experiment (its metric columns) once the run has them:
        # TensorBoard's readers keep the first experiment entry they see
        self.writer.file_writer.add_summary(hparams(self.params, {})[1])
        self.writer.add_text("config", f"```\n{json.dumps(run.config, indent=2)}\n```")

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def finish(self, status: EndStatus) -> None:
        self.writer.add_text("status", status)
        scores: dict[str, float] = {}
        # a done run's metrics.json is written before its end reaches the trackers
        if status == "done" and self.metrics_file.exists():
            metrics = json.loads(self.metrics_file.read_text(encoding="utf-8"))
            best = metrics["best"]["dev"]
            scores = {f"best_dev/{k}": v for k, v in best.items() if _is_number(v)}
            for key, value in scores.items():
                self.writer.add_scalar(key, value, metrics.get("best_step", 0))
        experiment, _, end = self._hparams(self.params, scores)
        for event in (experiment, end):
            self.writer.file_writer.add_summary(event)
        self.writer.close()


class MLflowTracker(Tracker):
    """One MLflow run per addrop run, in the experiment named after the spec. Without
    ``MLFLOW_TRACKING_URI`` the store is the local SQLite file ``tracking/mlflow.db`` (MLflow 3
    retired its folder store): ``mlflow ui --backend-store-uri
    sqlite:///results/<experiment>/tracking/mlflow.db``. A resumed attempt reopens the run the
    interrupted one created (its id is kept in the run folder) and skips the steps that run
    already holds (the resumed attempt redoes the steps after its training state)."""

    name = "mlflow"

    def __init__(self, run: RunInfo) -> None:
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            raise _missing(self.name, err) from err

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no INFO lines among ours
        logging.getLogger("alembic").setLevel(logging.WARNING)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_store(
            run.experiment_dir, run.tracking_folder
        )
        # parallel workers would race to create the database and the experiment
        with FileLock(run.tracking_folder / ".mlflow.lock"):
            self.client = MlflowClient(tracking_uri=uri)
            experiment = self.client.get_experiment_by_name(run.experiment)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(run.experiment)
            )
        self._metric = Metric
        self.logged: dict[str, int] = {}
        """The last step each metric holds in a reopened run."""
        earlier = remembered(run, self.name)
        if earlier is not None:
            self.run_id = earlier
            self.client.update_run(earlier, status="RUNNING")
            for key in self.client.get_run(earlier).data.metrics:
                history = self.client.get_metric_history(earlier, key)
                self.logged[key] = max(m.step for m in history)
            return
        tags = run.tags | {"mlflow.runName": run.label}
        self.run_id = self.client.create_run(experiment_id, tags=tags).info.run_id
        remember(run, self.name, self.run_id)
        params = [Param(k[:250], str(v)[:6000]) for k, v in flatten(run.params).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params a call
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [
            self._metric(k, float(v), now, step)
            for k, v in metrics.items()
            if step > self.logged.get(k, -1)
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def finish(self, status: EndStatus) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if status == "done" else "FAILED")


def mlflow_store(experiment_dir: Path, folder: Path | None = None) -> str:
    """The default tracking URI: a SQLite file under the experiment's ``tracking/`` (or
    ``folder``)."""
    folder = folder or experiment_dir / "tracking"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}"


class WandbTracker(Tracker):
    """A W&B run, offline unless ``WANDB_MODE`` says otherwise: its files go under
    ``tracking/wandb/`` (``wandb sync results/<experiment>/tracking/wandb/offline-run-*`` uploads
    them later). Project = the experiment, group = task/variant, tags = task, variant, method.
    A resumed attempt resumes the W&B run of the interrupted one (same id, kept in the run
    folder); offline, each attempt is its own ``offline-run-*`` folder of that run."""

    name = "wandb"

    def __init__(self, run: RunInfo) -> None:
        try:
            import wandb
        except ImportError as err:
            raise _missing(self.name, err) from err
        folder = run.tracking_folder
        folder.mkdir(parents=True, exist_ok=True)
        ident = remembered(run, self.name) or secrets.token_hex(4)  # W&B ids: [a-z0-9]
        remember(run, self.name, ident)
        self.run = wandb.init(
            id=ident,
            resume="allow",
            project=os.environ.get("WANDB_PROJECT") or run.experiment,
            name=run.label,
            group=f"{run.task}/{run.variant}",
            job_type=run.method,
            tags=list(dict.fromkeys([run.task, run.variant, run.method, f"seed{run.seed}"])),
            config=dict(run.params) | {"tags": run.tags},
            dir=str(folder),
            mode=os.environ.get("WANDB_MODE") or "offline",
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def finish(self, status: EndStatus) -> None:
        import wandb

        self.run.summary["status"] = status
        self.run.finish(exit_code=0 if status == "done" else 1)
        # finish() can return before W&B's service has written the run's file; teardown waits
        # for it (and a pool worker may exit right after this run)
        wandb.teardown()


BUILDERS: dict[str, Callable[[RunInfo], Tracker]] = {
    cls.name: cls for cls in (TensorBoardTracker, MLflowTracker, WandbTracker)
}
"""One class per name of :data:`~addrop_cli.spec.trackers.TRACKERS`."""


def _missing(name: str, err: ImportError) -> TrackerProblem:
    return TrackerProblem(
        f"tracking: {name} is not installed ({err.name or err}); "
        f"{_install(name)}, or drop it from tracking"
    )


def _install(name: str) -> str:
    return install_hint(TRACKERS[name].extra)


def _slug(run: RunInfo) -> str:
    text = f"{run.task}_{run.variant}_seed{run.seed}_{run.run_id}"
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)


def _hparam(value: Any) -> Any:
    """TensorBoard's hparams take numbers, strings and booleans."""
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def start_trackers(
    names: Sequence[str], run: RunInfo, warn: Callable[[str], None]
) -> list[Tracker]:
    """The trackers of one run that start; each that does not is one line through ``warn``
    and the run goes on without it."""
    started: list[Tracker] = []
    for name in dict.fromkeys(names):
        try:
            tracker = BUILDERS[name](run)
            tracker.every, tracker.last_step = run.log_every_steps, run.resume_step or 0
            started.append(tracker)
        except TrackerProblem as err:
            warn(str(err))
        except Exception as err:  # noqa: BLE001 - a tracker never fails the run
            why = tracker_error(err)
            warn(f"tracking: {name} did not start ({why}); the run goes on without it")
    return started


def where_files_go(names: Sequence[str], experiment_dir: Path, folder: Path | None = None) -> str:
    """One line saying where each tracker's files (or runs) go, shown once per experiment."""
    folder = folder or experiment_dir / "tracking"
    places = {
        "tensorboard": f"{folder / 'tensorboard'} (tensorboard --logdir {folder / 'tensorboard'})",
        "mlflow": os.environ.get("MLFLOW_TRACKING_URI") or f"{folder / 'mlflow.db'}",
        "wandb": f"{folder / 'wandb'}"
        + (" (offline)" if (os.environ.get("WANDB_MODE") or "offline") == "offline" else ""),
    }
    return "trackers: " + "; ".join(f"{n} -> {places[n]}" for n in dict.fromkeys(names))


def installed(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The trackers whose package is installed, and one line for each that is not (checked
    once per experiment, without importing them)."""
    found, problems = [], []
    for name in dict.fromkeys(names):
        if importlib.util.find_spec(TRACKERS[name].module) is None:
            problems.append(
                f"tracking: {name} is not installed; {_install(name)} (runs go on without it)"
            )
        else:
            found.append(name)
    return found, problems


# ---------------------------------------------------------------------------------------------
# What the trackers log
# ---------------------------------------------------------------------------------------------


def step_metrics(event: StepEvent) -> dict[str, float]:
    """Per optimiser step: loss, learning rate, samples/s, the fractional epoch, and the
    method's statistics (AD-DROP: ``dropped_frac_l<layer>`` per target layer)."""
    return {
        "train/loss": event.loss,
        "train/lr": event.lr,
        "train/samples_per_s": event.samples_per_s,
        "train/epoch": event.epoch + event.step_in_epoch / max(1, event.steps_per_epoch),
    } | {f"train/{k}": v for k, v in event.method.items()}


def eval_metrics(record: EpochRecord) -> dict[str, float]:
    """Per evaluation: every dev metric and loss, the selection split's, the epoch's mean
    training loss and throughput."""
    return (
        {f"dev/{k}": v for k, v in record.dev.items()}
        | {f"dev_loss/{k}": v for k, v in record.dev_loss.items()}
        | {f"select/{k}": v for k, v in record.select.items()}
        | {f"select_loss/{k}": v for k, v in record.select_loss.items()}
        | {"eval/train_loss": record.train_loss, "eval/epoch": float(record.epoch)}
        | {"eval/train_samples_per_s": record.train_samples_per_s}
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
