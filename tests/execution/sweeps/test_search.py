"""tpe/cmaes sweeps: Optuna's search space and study, pruning, PRUNED runs, kill and resume."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import run_cli
from filelock import FileLock
from rich.console import Console

optuna = pytest.importorskip("optuna")

from addrop_cli.engine.pruning import RunPruned  # noqa: E402
from addrop_cli.execution.attempt.context import RunContext, attempt  # noqa: E402
from addrop_cli.execution.attempt.display import PlainProgress  # noqa: E402
from addrop_cli.execution.inspection.status import collect  # noqa: E402
from addrop_cli.execution.sweeps.plan import plan_sweep  # noqa: E402
from addrop_cli.execution.sweeps.selection import select_winners, stage_records  # noqa: E402
from addrop_cli.execution.sweeps.study import (  # noqa: E402
    PRUNED_MARK,
    TrialJudge,
    point_of,
    search_space,
    trial_link,
)
from addrop_cli.report import load_runs  # noqa: E402
from addrop_cli.spec.load import load_spec  # noqa: E402
from addrop_cli.spec.matrix import expand  # noqa: E402
from addrop_cli.store.folders import ExperimentStore, RunFolder  # noqa: E402
from addrop_cli.store.reader import epochs_saved, read_run  # noqa: E402
from addrop_cli.store.records import EpochRecord  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "experiments" / "smoke.yaml"
P_RANGE = "sweep.grid.methods.addrop.p={start: 0.1, stop: 0.9, step: 0.1}"
Q_LIST = "sweep.grid.methods.addrop.q=[0.1, 0.3, 0.5]"
TPE = ["tasks=[sst2]", "sweep.select_seeds=[1]", "sweep.report_seeds=[2]", P_RANGE, Q_LIST]
TPE += ["sweep.search=tpe", "sweep.pruner=median"]


def test_the_search_space_is_the_sweeps_paths_and_trial_params_map_back_to_grid_values() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    overrides = [*TPE, "sweep.random.train.lr={distribution: log_uniform, low: 1e-5, high: 1e-3}"]
    sweep = load_spec(SMOKE, overrides).sweep
    assert sweep is not None
    space = search_space(sweep, "addrop")
    p, q, lr = (space[k] for k in ("methods.addrop.p", "methods.addrop.q", "train.lr"))
    assert isinstance(p, FloatDistribution) and (p.low, p.high, p.step) == (0.1, 0.9, 0.1)
    assert isinstance(q, CategoricalDistribution) and list(q.choices) == [0.1, 0.3, 0.5]
    assert isinstance(lr, FloatDistribution) and lr.log
    # the baseline variant is touched only by train.lr
    assert set(search_space(sweep, "baseline")) == {"train.lr"}
    point = point_of(sweep, {"methods.addrop.p": 0.30000000000000004, "methods.addrop.q": 0.5})
    assert point == {"methods.addrop.p": 0.3, "methods.addrop.q": 0.5}


def _record(epoch: int, accuracy: float) -> EpochRecord:  # epoch counted from 1
    return EpochRecord(
        epoch=epoch, step=epoch, train_loss=0.5, select={"accuracy": accuracy}, dev={}
    )


def test_a_judge_reports_every_epoch_and_stops_a_trial_below_the_median(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="sst2/addrop", storage=url, direction="maximize")
    for _ in range(2):  # two finished trials scoring 0.9 at every step
        trial = study.ask()
        for step in range(4):
            trial.report(0.9, step)
        study.tell(trial, 0.9)
    good, bad = study.ask(), study.ask()

    def judge(trial: optuna.trial.Trial, offset: int) -> TrialJudge:
        link = trial_link(
            url, "sst2/addrop", trial._trial_id, offset=offset, pruner="median", max_steps=4
        )
        return TrialJudge(link, "accuracy")

    judge(good, 0).on_eval(_record(1, 0.95))  # above the median: goes on
    with pytest.raises(RunPruned) as info:
        judge(bad, 2).on_eval(_record(1, 0.5))  # the trial's second seed starts at step 2
    assert info.value.epochs_run == 1 and "median pruner after epoch 1" in info.value.reason
    # its first seed's run stops at its next evaluation, whatever it scores
    with pytest.raises(RunPruned, match="on another seed"):
        judge(bad, 0).on_eval(_record(1, 0.99))
    frozen = {t.number: t for t in study.get_trials()}
    assert frozen[good.number].intermediate_values == {0: 0.95}
    assert frozen[bad.number].intermediate_values == {2: 0.5, 0: 0.99}
    assert frozen[bad.number].user_attrs[PRUNED_MARK] == 2


def test_a_pruned_run_is_stored_as_pruned_never_retried_and_never_a_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(SMOKE, ["tasks=[sst2]", "seeds=[1, 2]", "train.epochs=3"])
    store = ExperimentStore.located(spec.name, spec.results_dir, tmp_path)
    store.open_for_writing(spec.name, "hash", "")
    runs = [r for r in expand(spec, SMOKE.parent) if r.variant == "addrop"]
    point = {"methods.addrop.p": 0.3}
    runs = [r.model_copy(update={"sweep": {"point": point, "stage": "select"}}) for r in runs]

    def pruned_at_first_epoch(run, *, loggers, **_):  # type: ignore[no-untyped-def]
        raise RunPruned(1, "median pruner after epoch 1: accuracy 0.5000")

    monkeypatch.setattr("addrop_cli.engine.loop.run_one", pruned_at_first_epoch)
    context = RunContext(store=store, spec_hash="hash", base_dir=SMOKE.parent)
    progress = PlainProgress(Console(file=io.StringIO()))
    assert attempt(runs[0], context, progress, 0).status == "pruned"
    folder = store.run(runs[0].run_id)
    assert folder.status == "pruned" and not folder.state.exists()
    assert attempt(runs[0], context, progress, 0).status == "skipped"  # never run again
    assert len(folder.attempts()) == 1

    record = read_run(folder.path)
    assert record is not None and record.status == "pruned" and epochs_saved(record) == 2
    (state,) = [s for s in collect(store) if s.run_id == runs[0].run_id]
    assert state.state == "pruned" and state.detail.startswith("pruned after 1 epochs")
    # the point's other seed finished, yet a pruned trial is never a result
    other = store.run(runs[1].run_id)
    monkeypatch.undo()
    other.path.mkdir(parents=True)
    (other.path / "DONE").write_text("")
    (selection,) = select_winners(stage_records(store.root, runs[:1]))
    assert selection.winner is None and selection.scores[0].missing == {1: "pruned"}


# ---------------------------------------------------------------------------------------------
# SIGKILL mid-trial, then restart: every trial exactly once in the study and the store
# ---------------------------------------------------------------------------------------------


def _unfinished_with_state(runs_dir: Path) -> list[Path]:
    if not runs_dir.is_dir():
        return []
    return [
        p
        for p in runs_dir.iterdir()
        if p.is_dir() and RunFolder(p).status == "unfinished" and (p / "state").is_dir()
    ]


@pytest.mark.slow
def test_a_tpe_sweep_with_pruning_killed_mid_trial_resumes_and_runs_every_trial_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    trials = 4
    args = [*TPE, f"sweep.trials={trials}", "train.epochs=3"]
    experiment = tmp_path / "smoke"
    command = [sys.executable, "-m", "addrop_cli", "sweep", str(SMOKE), *args]
    command += ["--workers", "2", "--results", str(tmp_path), "--plain", "--no-report"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not _unfinished_with_state(experiment / "runs") and proc.poll() is None:
        assert time.monotonic() < deadline, "no run reached its first training state in 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-trial: a run holds a training state, unfinished
    proc.wait(30)
    with_state = {p.name for p in _unfinished_with_state(experiment / "runs")}
    assert with_state, "the kill landed after the run finished; make the runs longer"
    started = {p.name for p in (experiment / "runs").iterdir() if p.is_dir()}
    finished = {p for p in started if RunFolder(experiment / "runs" / p).status != "unfinished"}
    for lock in (experiment / "runs").glob(".*.lock"):  # the workers died with their parent
        with FileLock(lock, timeout=30):
            pass

    result = run_cli(capsys, "sweep", SMOKE, *args, "--results", tmp_path, "--no-report")
    assert result.code == 0, result.err + result.out
    assert f"tpe (Optuna TPESampler, seed 0; pruner: median): sweep.trials={trials}" in result.out

    study = optuna.load_study(
        study_name="sst2/addrop", storage=f"sqlite:///{experiment / 'sweep' / 'study.db'}"
    )
    states = [t.state for t in study.get_trials()]
    new = [t for t in study.get_trials() if "addrop_repeat_of" not in t.user_attrs]
    assert len(new) == trials  # the trial that was running was finished, not asked again
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}

    select = {r.run_id: r for r in load_runs(experiment) if r.sweep_stage == "select"}
    plan = plan_sweep(load_spec(SMOKE, args), SMOKE.parent)
    points = {json.dumps(t.params, sort_keys=True) for t in study.get_trials()}
    assert len(select) == len(points)  # one stored run per distinct point, nothing else
    for trial in study.get_trials():
        point = point_of(plan.sweep, trial.params)
        (run,) = [r for r in select.values() if r.sweep_point == point]
        assert run.status in ("done", "pruned")
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert run.metrics is not None
            assert trial.value == pytest.approx(run.metrics.best.select["accuracy"])
        # each run started once, or twice where the kill interrupted it: then from its
        # training state where it had one
        starts = RunFolder(run.path).attempts()
        assert len(starts) == (2 if run.run_id in started - finished else 1)
        if run.run_id in with_state:
            assert " step=0 " not in starts[1]
    assert (experiment / "sweep" / "summary.json").is_file()
    # status from the spec knows the trials: the selection runs, the baseline and the winner
    status = run_cli(capsys, "status", SMOKE, *args, "--results", tmp_path)
    assert f"{len(select) + 2} runs: 0 queued, 0 running, " in status.out, status.out
