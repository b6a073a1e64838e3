"""tpe/cmaes searches a user can steer and read (issue 37 items 1-2, issue 36's search family):
start-up trials from the budget, who proposed each trial, pruner start-up and warm-up, repeats
asked again, swept epochs, failed trials, pruned points, damaged study files. Real Optuna
studies in SQLite; no training except where a test says so."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_helpers import run_cli

optuna = pytest.importorskip("optuna")

from addrop_cli.engine.pruning import RunPruned  # noqa: E402
from addrop_cli.execution.sweeps.plan import plan_sweep  # noqa: E402
from addrop_cli.execution.sweeps.proposals import REPEAT_MARK, sampler_note  # noqa: E402
from addrop_cli.execution.sweeps.search import (  # noqa: E402
    next_trials,
    open_studies,
    searched_plan,
    studied_plan,
    tell,
)
from addrop_cli.execution.sweeps.selection import select_winners, stage_records  # noqa: E402
from addrop_cli.execution.sweeps.study import (  # noqa: E402
    SAMPLER_MARK,
    TrialJudge,
    search_space,
    startup_trials,
    trial_link,
)
from addrop_cli.execution.sweeps.summary import search_text, write_summary  # noqa: E402
from addrop_cli.spec.load import load_spec  # noqa: E402
from addrop_cli.store.records import EpochRecord  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "experiments" / "smoke.yaml"
SEARCH = ["tasks=[sst2]", "sweep.select_seeds=[1]", "sweep.report_seeds=[2]", "sweep.search=tpe"]
P_RANGE = "sweep.grid.methods.addrop.p={start: 0.1, stop: 0.9, step: 0.1}"
TrialState = optuna.trial.TrialState


def _plan(tmp: Path, *overrides: str):  # type: ignore[no-untyped-def]
    spec = load_spec(SMOKE, [*SEARCH, *overrides])
    plan = plan_sweep(spec, SMOKE.parent)
    context = SimpleNamespace(store=SimpleNamespace(root=tmp))
    return plan, open_studies(plan, context)  # type: ignore[arg-type]


def _score(point: dict) -> float:  # a smooth landscape: best at p = 0.7
    return 1.0 - abs(point.get("methods.addrop.p", 0.5) - 0.7)


def _search(plan, study) -> None:  # type: ignore[no-untyped-def]
    """Ask and tell one trial at a time, as a one-worker search does, without training."""
    while trials := next_trials(plan, study, 1):
        for t in trials:
            study.study.tell(t.number, _score(t.point))


# ---------------------------------------------------------------------------------------------
# Item 1: start-up trials from the budget; who proposed each trial
# ---------------------------------------------------------------------------------------------


def test_tpe_start_up_follows_the_budget_and_the_setting_overrides_it() -> None:
    def rule(*overrides: str) -> int:
        sweep = load_spec(SMOKE, [*SEARCH, P_RANGE, *overrides]).sweep
        assert sweep is not None
        return startup_trials(sweep)

    assert [rule(f"sweep.trials={n}") for n in (1, 2, 3, 8, 30, 100)] == [1, 1, 1, 2, 10, 10]
    assert rule("sweep.trials=8", "sweep.startup_trials=5") == 5
    assert rule("sweep.search=cmaes") == 0


def test_an_8_trial_tpe_search_proposes_from_the_model_and_marks_each_trial(
    tmp_path: Path,
) -> None:
    plan, (study,) = _plan(tmp_path, P_RANGE, "sweep.trials=8")
    _search(plan, study)
    trials = study.study.get_trials()
    marks = [t.user_attrs[SAMPLER_MARK] for t in trials]
    # Optuna's default (10 start-up trials) made every one of 8 trials random
    assert marks[:2] == ["random", "random"] and set(marks[2:]) == {"tpe"}
    counts = searched_plan(plan, [study]).study_counts["sst2/addrop"]
    assert counts["samplers"] == {"random": 2, "tpe": len(trials) - 2}


def test_a_search_whose_trials_are_all_start_up_says_so_before_it_starts() -> None:
    def note(*overrides: str, per_round: int = 1) -> str:
        sweep = load_spec(SMOKE, [*SEARCH, P_RANGE, *overrides]).sweep
        assert sweep is not None
        return sampler_note(sweep, search_space(sweep, "addrop"), per_round)

    assert "TPE proposes 6 of 8 trials" in note("sweep.trials=8")
    warned = note("sweep.trials=8", "sweep.startup_trials=10")
    assert "warning: all 8 trials are random start-up trials and TPE proposes none" in warned
    # 4 trials asked at a time: the first round cannot learn from anything
    assert "proposes none" in note("sweep.trials=4", "sweep.startup_trials=1", per_round=4)
    cmaes = note("sweep.search=cmaes", "sweep.trials=4")  # 1 path: generations of 4
    assert "never update it" in cmaes and "\n" not in cmaes


# ---------------------------------------------------------------------------------------------
# Item 2: pruner start-up and warm-up, repeats asked again
# ---------------------------------------------------------------------------------------------


def _record(epoch: int, accuracy: float) -> EpochRecord:
    return EpochRecord(
        epoch=epoch, step=epoch, train_loss=0.5, select={"accuracy": accuracy}, dev={}
    )


def _judged_study(tmp: Path, finished: int) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp / 'study.db'}"
    study = optuna.create_study(study_name="s/v", storage=url, direction="maximize")
    for _ in range(finished):
        trial = study.ask()
        for step in range(6):
            trial.report(0.9, step)
        study.tell(trial, 0.9)
    return url, study


def _judge(url: str, study: optuna.Study, **link: int) -> TrialJudge:
    trial = study.ask()
    options = {"offset": 0, "max_steps": 6, **link}
    return TrialJudge(
        trial_link(url, "s/v", trial._trial_id, pruner="median", **options), "accuracy"
    )


def test_pruner_start_up_and_warm_up_are_settings(tmp_path: Path) -> None:
    url, study = _judged_study(tmp_path, finished=2)
    with pytest.raises(RunPruned):  # the default: judged once 2 trials finished
        _judge(url, study, epochs=6).on_eval(_record(1, 0.1))
    _judge(url, study, epochs=6, startup=3).on_eval(_record(1, 0.1))  # 2 < 3: not judged
    warm = _judge(url, study, epochs=6, warmup=2)
    warm.on_eval(_record(1, 0.1))
    warm.on_eval(_record(2, 0.1))  # still warming up
    with pytest.raises(RunPruned):
        warm.on_eval(_record(3, 0.1))


def test_a_run_is_never_pruned_after_its_last_epoch(tmp_path: Path) -> None:
    url, study = _judged_study(tmp_path, finished=2)
    judge = _judge(url, study, epochs=2)
    judge.on_eval(_record(2, 0.1))  # its last epoch: nothing to save, it ends as it is
    assert study.get_trials()[-1].intermediate_values == {1: 0.1}


def test_steering_settings_given_where_nothing_uses_them_are_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = [
        (["sweep.search=grid", "sweep.startup_trials=3"], "sweep.startup_trials: a grid search"),
        (["sweep.pruner_warmup_epochs=1"], "sweep.pruner_warmup_epochs: applies to pruner"),
        (
            ["sweep.pruner=hyperband", "sweep.pruner_startup_trials=3"],
            "sweep.pruner_startup_trials: applies to pruner: median, but the pruner is hyperband",
        ),
        (["sweep.max_repeats=-1"], "sweep.max_repeats (from override sweep.max_repeats=-1)"),
    ]
    for overrides, expect in cases:
        args = [*SEARCH, P_RANGE, *overrides, "--dry-run"]
        result = run_cli(capsys, "sweep", SMOKE, *args)
        assert result.code == 2 and expect in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1


def test_a_repeated_point_is_asked_again_and_does_not_use_up_a_trial(tmp_path: Path) -> None:
    plan, (study,) = _plan(tmp_path, P_RANGE, "sweep.trials=8")
    _search(plan, study)
    trials = study.study.get_trials()
    repeats = [t for t in trials if REPEAT_MARK in t.user_attrs]
    points = {t.params["methods.addrop.p"] for t in trials}
    assert len(trials) - len(repeats) == 8 == len(points)  # 8 distinct points were run
    for t in repeats:  # told the earlier trial's score, without running anything
        earlier = trials[t.user_attrs[REPEAT_MARK]]
        assert t.params == earlier.params and t.value == earlier.value


def test_a_space_smaller_than_the_trials_ends_when_every_point_ran(tmp_path: Path) -> None:
    plan, (study,) = _plan(tmp_path, "sweep.grid.methods.addrop.p=[0.1, 0.5]", "sweep.trials=6")
    _search(plan, study)
    new = [t for t in study.study.get_trials() if REPEAT_MARK not in t.user_attrs]
    assert sorted(t.params["methods.addrop.p"] for t in new) == [0.1, 0.5]


def test_repeats_are_bounded_by_max_repeats(tmp_path: Path) -> None:
    overrides = ("sweep.grid.methods.addrop.p=[0.1, 0.5, 0.9]", "sweep.trials=3")
    plan, (study,) = _plan(tmp_path, *overrides, "sweep.max_repeats=0", "sweep.startup_trials=9")
    _search(plan, study)
    trials = study.study.get_trials()
    assert sum(REPEAT_MARK in t.user_attrs for t in trials) <= 1  # the one that stopped it
    assert len(trials) <= 3


# ---------------------------------------------------------------------------------------------
# Issue 36, search family
# ---------------------------------------------------------------------------------------------


def test_swept_epochs_give_every_seed_the_same_steps_in_every_trial(tmp_path: Path) -> None:
    from addrop_cli.execution.sweeps.search import trial_runs

    overrides = (P_RANGE, "sweep.grid.train.epochs=[2, 5]", "sweep.select_seeds=[1, 2]")
    overrides += ("sweep.report_seeds=[3]",)
    plan, studies = _plan(tmp_path, *overrides)
    (study,) = [s for s in studies if s.variant == "addrop"]
    for epochs in (2, 5):
        params = {"methods.addrop.p": 0.3, "train.epochs": epochs}
        runs = trial_runs(plan, study, 1, 0, params).runs
        links = {r.seed: r.trial for r in runs}
        assert links[1]["offset"] == 0 and links[2]["offset"] == 5  # not 2 for the 2-epoch point
        assert links[1]["max_steps"] == 10 and links[1]["epochs"] == epochs


def test_a_trial_whose_run_failed_is_told_fail(tmp_path: Path) -> None:
    plan, (study,) = _plan(tmp_path, P_RANGE, "sweep.trials=2")
    (trial,) = next_trials(plan, study, 1)
    store = SimpleNamespace(run=lambda run_id: SimpleNamespace(status="failed"))
    assert tell(trial, SimpleNamespace(store=store))  # type: ignore[arg-type]
    assert study.study.get_trials()[0].state == TrialState.FAIL  # not RUNNING for ever


def test_lowering_trials_on_a_rerun_counts_what_the_study_holds(tmp_path: Path) -> None:
    plan, (study,) = _plan(tmp_path, P_RANGE, "sweep.trials=4")
    _search(plan, study)
    lower, _ = _plan(tmp_path, P_RANGE, "sweep.trials=2")
    assert next_trials(lower, study, 1) == []
    text = search_text(studied_plan(lower, tmp_path))
    assert "sweep.trials=2 per task and variant" in text
    held = len(study.study.get_trials())  # 4 new points and the repeats asked again
    assert f"sst2/addrop: {held} trials (4 new points" in text, text


def test_a_pruned_point_shows_as_pruned_in_the_terminal_and_summary_md(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console

    from addrop_cli.execution.attempt.context import RunContext, attempt
    from addrop_cli.execution.attempt.display import PlainProgress
    from addrop_cli.execution.sweeps.summary import print_selection
    from addrop_cli.store.folders import ExperimentStore

    spec = load_spec(SMOKE, [*SEARCH, "sweep.search=grid", "sweep.grid.methods.addrop.p=[0.1]"])
    plan = plan_sweep(spec, SMOKE.parent)
    store = ExperimentStore.located(spec.name, spec.results_dir, tmp_path)
    store.open_for_writing(spec.name, "hash", "")

    def pruned(run, *, loggers, **_):  # type: ignore[no-untyped-def]
        raise RunPruned(1, "median pruner after epoch 1: accuracy 0.5000")

    monkeypatch.setattr("addrop_cli.engine.loop.run_one", pruned)
    context = RunContext(store=store, spec_hash="hash", base_dir=SMOKE.parent)
    progress = PlainProgress(Console(file=io.StringIO()))
    assert attempt(plan.select_runs[0], context, progress, 0).status == "pruned"
    selections = select_winners(stage_records(store.root, plan.select_runs))
    write_summary(tmp_path, plan, selections)
    lines = (tmp_path / "summary.md").read_text().splitlines()
    row = next(line for line in lines if "p=0.1" in line)
    assert "| pruned |" in row, row
    terminal = io.StringIO()
    print_selection(Console(file=terminal, width=120), selections, "protocol")
    assert "pruned" in terminal.getvalue(), terminal.getvalue()


@pytest.mark.parametrize("journal", [False, True])
def test_a_damaged_study_file_is_one_line_in_sweep_and_status(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, journal: bool
) -> None:
    folder = tmp_path / "smoke" / "sweep"
    folder.mkdir(parents=True)
    name = "study.journal" if journal else "study.db"
    (folder / name).write_text("{not a study\n" * 50)  # whole lines: not a torn write
    args = [*SEARCH, P_RANGE, "--results", tmp_path]
    if journal:
        args.append("executor.backend=slurm")
    commands = (["status"],) if journal else (["sweep", "--no-report"], ["status"])
    for command in commands:
        result = run_cli(capsys, command[0], SMOKE, *args, *command[1:])
        assert result.code == 2, result.out + result.err
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
        assert f"{folder / name}: the study file is damaged" in result.err
        assert "move it away" in result.err
