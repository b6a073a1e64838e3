"""A tpe/cmaes sweep's Optuna study: where it lives, its search space, its sampler and pruner,
and the logger through which a run reports its evaluations to its trial.

The study is a file in the results folder, ``<experiment>/sweep/``: ``study.db`` (SQLite
through Optuna's RDB storage) for the local back-ends, ``study.journal`` (Optuna's journal
file storage, safe on a network file system where SQLite's locking is not) for Slurm. Each
(task, swept variant) is one study in it, named ``task/variant``; ``optuna-dashboard
sqlite:///results/<name>/sweep/study.db`` shows them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from addrop_cli.data.tasks import get_task
from addrop_cli.engine.loggers import QuietLogger
from addrop_cli.engine.pruning import RunPruned
from addrop_cli.errors import SpecError, StoreError, one_line
from addrop_cli.spec.schema import GridRange, SweepSpec
from addrop_cli.words import install_hint

if TYPE_CHECKING:
    from addrop_cli.spec.matrix import RunSpec
    from addrop_cli.store.records import EpochRecord

STUDY_DB, STUDY_JOURNAL = "study.db", "study.journal"
JOURNAL_PREFIX = "journal:"
PRUNED_MARK = "addrop_pruned_at"
"""Trial user attribute set when one seed's run is pruned: the trial's other seeds stop too."""
SAMPLER_MARK = "addrop_sampler"
"""Trial user attribute: who proposed the trial's point (``random``, ``tpe``, ``cmaes``, or
``cmaes+random`` when CMA-ES left some paths, the categorical ones, to independent sampling)."""
MAX_TPE_STARTUP = 10
"""Optuna's own default for TPE's random start-up trials: the rule never asks for more."""


def startup_trials(sweep: SweepSpec) -> int:
    """Random start-up trials before the model proposes: ``sweep.startup_trials`` if given, else
    TPE: min(10, max(1, trials // 3)): a third of the budget explores at random (TPE needs a
    few scores to split into good and bad), capped at Optuna's default of 10; CMA-ES: 0, for it
    draws its first generation from its own Gaussian at the space's centre and never learns
    from random start-up trials (Optuna's default of 1 would only spend a trial)."""
    if sweep.startup_trials is not None:
        return sweep.startup_trials
    if sweep.search == "cmaes":
        return 0
    return min(MAX_TPE_STARTUP, max(1, sweep.trials // 3))


class StorageDamaged(StoreError):
    """The study database or journal cannot be read."""


def damaged(url: str, err: BaseException) -> StorageDamaged:
    """One line naming the study file, what is wrong and what to do."""
    where = url.removeprefix("sqlite:///").removeprefix(JOURNAL_PREFIX)
    reason = one_line(err)
    return StorageDamaged(
        f"{where}: the study file is damaged and cannot be read ({reason}); move it away to "
        "start the search again (runs already in runs/ are read back, not trained again)"
    )


def storage_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged SQLite database or journal file raises."""
    errors: list[type[BaseException]] = [json.JSONDecodeError, UnicodeDecodeError]
    try:
        from sqlalchemy.exc import DatabaseError
    except ImportError:  # untested: optuna's RDB storage needs sqlalchemy, the journal does not
        return tuple(errors)
    return (*errors, DatabaseError)


def need_optuna() -> Any:
    """The optuna module, or a one-line error saying how to install it."""
    try:
        import optuna
    except ImportError:  # the search extra is optional; the message is the fix
        raise SpecError(
            f"sweep.search: tpe and cmaes need Optuna; {install_hint('search')} "
            "(or pip install optuna cmaes)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_url(sweep_dir: Path, *, journal: bool) -> str:
    """Where the study lives: a SQLite URL, or ``journal:<path>`` for the journal file."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if journal:
        return JOURNAL_PREFIX + str((sweep_dir / STUDY_JOURNAL).resolve())
    return f"sqlite:///{(sweep_dir / STUDY_DB).resolve()}"


def open_storage(url: str) -> Any:
    """The study's storage; a damaged file is one line (:func:`damaged`)."""
    optuna = need_optuna()
    try:
        if url.startswith(JOURNAL_PREFIX):
            from optuna.storages.journal import JournalFileBackend

            backend = JournalFileBackend(url.removeprefix(JOURNAL_PREFIX))
            return optuna.storages.JournalStorage(backend)
        # workers of a pool write to it at once: wait for SQLite's lock rather than fail
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    except storage_errors() as err:
        raise damaged(url, err) from None


def make_sampler(search: str, seed: int, startup: int) -> Any:
    """The search's sampler with ``startup`` random start-up trials; CMA-ES's independent
    sampler records which paths it drew (``independent_paths``)."""
    optuna = need_optuna()
    if search == "cmaes":

        class Independent(optuna.samplers.RandomSampler):
            drawn: set[str] = set()

            def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
                self.drawn.add(name)
                return super().sample_independent(study, trial, name, dist)

        independent = Independent(seed=seed)
        independent.drawn = set()
        sampler = optuna.samplers.CmaEsSampler(
            seed=seed,
            n_startup_trials=startup,
            independent_sampler=independent,
            warn_independent_sampling=False,
        )
        sampler.independent_paths = independent.drawn
        return sampler
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def proposer(search: str, sampler: Any, finished_before: int, startup: int, params: Any) -> str:
    """Who proposed a trial's point: random start-up, or the model (TPE's rule is Optuna's
    documented one: random until ``startup`` trials are COMPLETE or PRUNED)."""
    if search == "tpe":
        return "random" if finished_before < startup else "tpe"
    drawn = set(getattr(sampler, "independent_paths", ())) & set(params)
    if not drawn:
        return "cmaes"
    return "random" if drawn == set(params) else "cmaes+random"


def make_pruner(name: str, max_steps: int, startup: int = 2) -> Any:
    optuna = need_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_steps, 1))
    return optuna.pruners.NopPruner()


# ---------------------------------------------------------------------------------------------
# The search space: the sweep's paths as Optuna distributions
# ---------------------------------------------------------------------------------------------


def concerns(path: str, variant: str) -> bool:
    """A ``methods.<v>.*`` path concerns variant v only; other paths concern every variant."""
    return not path.startswith("methods.") or path.split(".")[1] == variant


def _encoded(value: Any) -> Any:
    """A categorical choice Optuna can store (lists, such as layers, as JSON text)."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def search_space(sweep: SweepSpec, variant: str) -> dict[str, Any]:
    """Path -> distribution: grid lists are categorical, ``{start, stop, step}`` ranges the
    stepped int or float space, random distributions their Optuna twin."""
    need_optuna()
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    space: dict[str, Any] = {}
    for path, values in sweep.grid.items():
        if not concerns(path, variant):
            continue
        if isinstance(values, GridRange):
            points = values.values()
            if all(isinstance(v, int) for v in points):
                space[path] = IntDistribution(points[0], points[-1], step=int(values.step))
            else:
                space[path] = FloatDistribution(points[0], points[-1], step=values.step)
        else:
            space[path] = CategoricalDistribution([_encoded(v) for v in values])
    for path, dist in sweep.random.items():
        if not concerns(path, variant):
            continue
        low, high = dist.low, dist.high
        if dist.distribution == "choice":
            space[path] = CategoricalDistribution([_encoded(v) for v in dist.values or []])
        elif dist.distribution == "int_uniform":
            space[path] = IntDistribution(int(low or 0), int(high or 0))
        else:
            log = dist.distribution == "log_uniform"
            space[path] = FloatDistribution(float(low or 0), float(high or 0), log=log)
    return space


def point_of(sweep: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's params as a sweep point: grid values exact, choices decoded, digits kept."""
    point: dict[str, Any] = {}
    for path, value in params.items():
        grid = sweep.grid.get(path)
        dist = sweep.random.get(path)
        if isinstance(grid, GridRange):  # the grid's own rounding: 0.30000000000000004 -> 0.3
            value = min(grid.values(), key=lambda v: abs(v - value))
        elif grid is not None or (dist is not None and dist.distribution == "choice"):
            choices = list(grid) if isinstance(grid, list) else list(dist.values or [])  # type: ignore[union-attr]
            value = next(c for c in choices if _encoded(c) == value)
        elif dist is not None and dist.digits and isinstance(value, float):
            value = float(f"{value:.{dist.digits}g}")
        point[path] = value
    return point


# ---------------------------------------------------------------------------------------------
# The run's side: report each evaluation to the trial, stop when the pruner says so
# ---------------------------------------------------------------------------------------------


def trial_link(
    url: str,
    study: str,
    trial_id: int,
    *,
    offset: int,
    pruner: str,
    max_steps: int,
    epochs: int | None = None,
    startup: int = 2,
    warmup: int = 0,
) -> dict[str, Any]:
    """What a run carries (``RunSpec.trial``) to find its trial from any process: its steps
    start at ``offset``; it is never pruned in its first ``warmup`` epochs nor after its last
    (``epochs``), when there is nothing left to save."""
    return {
        "storage": url,
        "study": study,
        "trial_id": trial_id,
        "offset": offset,
        "pruner": pruner,
        "max_steps": max_steps,
        "epochs": epochs,
        "startup": startup,
        "warmup": warmup,
    }


class TrialJudge(QuietLogger):
    """A required run logger: reports each evaluation's selection score to the run's trial, at
    step ``offset + epoch`` (seed i of a trial starts at i x the most epochs any point trains,
    so every trial's step k is the same seed and epoch), and raises RunPruned when the study's
    pruner says stop, except in the run's warm-up epochs and at its last epoch."""

    def __init__(self, link: dict[str, Any], metric: str) -> None:
        optuna = need_optuna()
        pruner = make_pruner(link["pruner"], link["max_steps"], link.get("startup", 2))
        storage = open_storage(link["storage"])
        self.study = optuna.load_study(study_name=link["study"], storage=storage, pruner=pruner)
        self.trial = optuna.trial.Trial(self.study, link["trial_id"])
        self.link = link
        self.metric = metric

    def on_eval(self, record: EpochRecord) -> None:

        value = float(record.select[self.metric])
        step = self.link["offset"] + record.epoch - 1  # the trial's steps count from 0
        with warnings.catch_warnings():  # a resumed run reports its last epoch again: ignored
            warnings.simplefilter("ignore")
            self.trial.report(value, step)
        last = self.link.get("epochs")
        if record.epoch <= self.link.get("warmup", 0) or (last and record.epoch >= last):
            return  # nothing to prune yet, or nothing left to save: the run ends as it is
        storage = self.study._storage  # noqa: SLF001 - the trial's attributes, read fresh
        marked = storage.get_trial_user_attrs(self.link["trial_id"]).get(PRUNED_MARK)
        if marked is not None:
            raise RunPruned(record.epoch, f"trial pruned at step {marked} (on another seed)")
        if self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_MARK, step)
            raise RunPruned(
                record.epoch,
                f"{self.link['pruner']} pruner after epoch {record.epoch}: "
                f"{self.metric} {value:.4f}",
            )


def judges(run: RunSpec) -> list[TrialJudge]:
    """The loggers a run reports to beyond the store: its trial's judge, for a search run."""
    if run.trial is None:
        return []

    return [TrialJudge(run.trial, get_task(run.task, run.data).main_metric)]
