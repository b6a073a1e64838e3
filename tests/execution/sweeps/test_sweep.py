"""Sweeps: grid and random expansion, validation, two-stage selection, the local pool, restarts."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import run_cli
from filelock import FileLock

from addrop_cli.errors import SpecError
from addrop_cli.execution.backends.placement import worker_placement
from addrop_cli.execution.inspection.status import collect
from addrop_cli.execution.sweeps.plan import plan_sweep, sweep_points
from addrop_cli.execution.sweeps.selection import report_runs, select_winners
from addrop_cli.report import build_report, load_runs
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.schema import ExperimentSpec
from addrop_cli.store.folders import ExperimentStore, RunFolder

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "experiments" / "smoke.yaml"
STORE = Path(__file__).resolve().parents[2] / "fixtures" / "store"
_spec = importlib.util.spec_from_file_location("make_store", STORE / "make_store.py")
make_store = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_store)

P_AXIS = "sweep.grid.methods.addrop.p"
Q_AXIS = "sweep.grid.methods.addrop.q"
SEEDS = ["sweep.select_seeds=[1]", "sweep.report_seeds=[2]"]


def smoke_sweep(*extra: str, epochs: int = 2) -> list[str]:
    """Overrides: SST-2 only, tiny model, a p x q grid on seed 1 reported on seed 2."""
    return ["tasks=[sst2]", f"train.epochs={epochs}", *SEEDS, *extra]


def problems(overrides: list[str]) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(SMOKE, overrides)
    return info.value.problems


# ---------------------------------------------------------------------------------------------
# Expansion
# ---------------------------------------------------------------------------------------------


def test_compact_grid_is_the_papers_9_by_9_and_only_the_swept_variant_multiplies() -> None:
    axis = "={start: 0.1, stop: 0.9, step: 0.1}"
    spec = load_spec(SMOKE, smoke_sweep(P_AXIS + axis, Q_AXIS + axis))
    values = spec.sweep.grid_values()
    assert values["methods.addrop.p"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    points = sweep_points(spec.sweep)
    assert len(points) == 81 and len({json.dumps(p, sort_keys=True) for p in points}) == 81
    plan = plan_sweep(spec, SMOKE.parent)
    assert len(plan.select_runs) == 81 and plan.swept_variants == ["addrop"]
    assert len({r.run_id for r in plan.select_runs}) == 81
    for run in plan.select_runs:
        point = run.sweep["point"]
        assert run.sweep["stage"] == "select" and run.seed == 1
        assert (run.params.p, run.params.q) == (
            point["methods.addrop.p"],
            point["methods.addrop.q"],
        )
    # the baseline is not swept: it runs once, on the report seed
    assert [(r.variant, r.seed, r.sweep) for r in plan.fixed_runs] == [("baseline", 2, None)]


def test_yaml_and_command_line_grids_give_the_same_runs(tmp_path: Path) -> None:
    spec_file = tmp_path / "s.yaml"
    text = SMOKE.read_text().replace("name: smoke", "name: s")
    text = text.replace("assets/tiny-bert", str(ROOT / "experiments/assets/tiny-bert"))
    text = text.replace("sample/glue", str(ROOT / "experiments/sample/glue"))
    spec_file.write_text(
        text + "sweep:\n  grid:\n    methods.addrop.p: [0.1, 0.5]\n    train.lr: [0.001]\n"
    )
    from_yaml = load_spec(spec_file, smoke_sweep())
    from_cli = load_spec(SMOKE, smoke_sweep(f"{P_AXIS}=[0.1, 0.5]", "sweep.grid.train.lr=[0.001]"))
    assert sweep_points(from_yaml.sweep) == sweep_points(from_cli.sweep)

    def runs(spec: ExperimentSpec) -> list[tuple]:
        return [
            (r.task, r.variant, r.seed, r.params, r.train, r.sweep)
            for r in plan_sweep(spec, SMOKE.parent).stage1()
        ]

    assert runs(from_yaml) == runs(from_cli)
    # train.lr touches every variant: the baseline is swept too, and nothing is left fixed
    plan = plan_sweep(from_cli, SMOKE.parent)
    assert plan.swept_variants == ["baseline", "addrop"] and plan.fixed_runs == []
    assert {r.variant for r in plan.select_runs} == {"baseline", "addrop"}
    assert len(plan.select_runs) == 1 + 2  # the baseline's point is lr only: one run


def test_random_search_is_seeded_in_range_and_crossed_with_the_grid() -> None:
    random_axes = [
        "sweep.random.train.lr={distribution: log_uniform, low: 1.0e-5, high: 1.0e-3, digits: 2}",
        "sweep.random.methods.addrop.q={distribution: uniform, low: 0.1, high: 0.9}",
        "sweep.random.methods.addrop.attribution={distribution: choice, values: [gradient,"
        " random]}",
        "sweep.random.train.batch_size={distribution: int_uniform, low: 8, high: 16}",
        "sweep.samples=6",
    ]
    spec = load_spec(SMOKE, smoke_sweep(f"{P_AXIS}=[0.1, 0.5]", *random_axes))
    points = sweep_points(spec.sweep)
    assert len(points) == 2 * 6
    assert points == sweep_points(spec.sweep)  # same seed, same draws
    for point in points:
        assert 1e-5 <= point["train.lr"] <= 1e-3 and len(f"{point['train.lr']:.1e}") <= 7
        assert 0.1 <= point["methods.addrop.q"] <= 0.9
        assert point["methods.addrop.attribution"] in ("gradient", "random")
        assert 8 <= point["train.batch_size"] <= 16 and isinstance(point["train.batch_size"], int)
    draws = [{k: v for k, v in p.items() if k != "methods.addrop.p"} for p in points]
    assert draws[:6] == draws[6:]  # every grid point meets the same random draws
    other = load_spec(SMOKE, smoke_sweep(f"{P_AXIS}=[0.1, 0.5]", *random_axes, "sweep.seed=7"))
    assert sweep_points(other.sweep) != points
    # train.* paths sweep the baseline too: its 6 draws, beside the 12 AD-DROP points
    assert len(plan_sweep(spec, SMOKE.parent).select_runs) == 12 + 6


# ---------------------------------------------------------------------------------------------
# Validation: one line per problem, naming the sweep path
# ---------------------------------------------------------------------------------------------


def test_a_grid_value_out_of_range_is_one_line_naming_the_sweep_path() -> None:
    found = problems(smoke_sweep(f"{P_AXIS}=[0.5, 1.5]", "sweep.grid.train.epochs=[0]"))
    assert len(found) == 2 and all("\n" not in line for line in found)
    assert found[0].startswith(
        f"{SMOKE}: sweep.grid.methods.addrop.p: value 1.5: must be in (0, 1]"
    )
    assert "sweep.grid.train.epochs: value 0: must be >= 1" in found[1]


def test_sweep_problems_are_all_listed_with_fixes() -> None:
    found = problems(
        [
            "tasks=[sst2]",
            "sweep.grid.methods.adrop.p=[0.1]",
            "sweep.grid.seeds=[1, 2]",
            "sweep.select_seeds=[1, 2]",
            "sweep.report_seeds=[2, 3]",
        ]
    )
    text = "\n".join(found)
    assert "sweep.grid.methods.adrop.p: no method variant 'adrop'; did you mean 'addrop'?" in text
    assert "sweep.grid.seeds: cannot sweep 'seeds'" in text
    assert "sweep.report_seeds: seeds [2] are also in select_seeds" in text
    assert len(found) == 3
    missing = problems(["tasks=[sst2]", f"{P_AXIS}=[0.1]"])
    assert len(missing) == 1 and "two_stage protocol" in missing[0] and "report_seeds" in missing[0]
    # the paper protocol needs no report seeds, and refuses them
    assert load_spec(SMOKE, ["tasks=[sst2]", f"{P_AXIS}=[0.1]", "sweep.protocol=paper"])
    paper = problems([f"{P_AXIS}=[0.1]", "sweep.protocol=paper", "sweep.report_seeds=[3]"])
    assert "paper protocol reports the selection runs" in paper[0]


def test_executor_block_and_run_options_validate() -> None:
    spec = load_spec(SMOKE, ["executor.workers=auto", "executor.backend=slurm"])
    assert spec.executor.workers == 0 and spec.executor.backend == "slurm"
    found = problems(["executor.backend=slururm", "executor.slurm.time_min=0"])
    assert any("executor.backend" in line and "did you mean 'slurm'" in line for line in found)
    assert any("executor.slurm.time_min" in line and ">= 1" in line for line in found)


def test_worker_placement_pins_one_gpu_per_worker_or_shares_the_cores() -> None:
    assert worker_placement(3, ["0", "1"], None, cpus=6) == [("0", 2), ("1", 2), ("0", 2)]
    assert worker_placement(2, ["4", "6"], 3) == [("4", 3), ("6", 3)]
    assert worker_placement(2, [], None, cpus=8) == [(None, 4), (None, 4)]
    assert worker_placement(3, [], 2, cpus=2) == [(None, 2)] * 3
    assert worker_placement(4, [], None, cpus=2) == [(None, 1)] * 4


# ---------------------------------------------------------------------------------------------
# Selection on stored fixtures
# ---------------------------------------------------------------------------------------------

GRID = {(0.1, 0.1): 0.60, (0.1, 0.2): 0.62, (0.3, 0.1): 0.66, (0.3, 0.2): 0.64}
"""(p, q) -> RTE selection accuracy of seed 1; seed 2 scores 0.02 more."""


def write_selection_store(exp: Path) -> None:
    for (p, q), acc in GRID.items():
        for seed in (1, 2):
            config = make_store.pq_run_config(
                exp.name, task="rte", p=p, q=q, seed=seed, stage="select"
            )
            # (0.3, 0.1) leads on seed 1 only: its seed 2 failed, so it is scored on 1 of 2
            best = (
                "failed" if (p, q, seed) == (0.3, 0.1, 2) else {"accuracy": acc + 0.02 * (seed - 1)}
            )
            make_store.write_run(exp, config, best)
    # a report-stage run at another point never takes part in the selection
    config = make_store.run_config(
        exp.name,
        task="rte",
        variant="addrop",
        params=dict(make_store.ADDROP, p=0.9, q=0.9),
        seed=3,
        sweep={"point": {"methods.addrop.p": 0.9, "methods.addrop.q": 0.9}, "stage": "report"},
    )
    make_store.write_run(exp, config, {"accuracy": 0.99})


def test_two_stage_selection_picks_the_best_mean_and_reports_it_on_other_seeds(
    tmp_path: Path,
) -> None:
    exp = tmp_path / "sel"
    write_selection_store(exp)
    (selection,) = select_winners(load_runs(exp))
    assert (selection.task, selection.variant) == ("rte", "addrop")
    scores = {
        (s.point["methods.addrop.p"], s.point["methods.addrop.q"]): s for s in selection.scores
    }
    assert len(scores) == 4 and selection.higher_is_better
    assert scores[0.3, 0.2].objective.center == pytest.approx(0.65)  # mean of 0.64 and 0.66
    assert scores[0.3, 0.1].objective.center == pytest.approx(0.66)
    assert (len(scores[0.3, 0.1].seeds), scores[0.3, 0.1].expected) == (1, 2)
    assert scores[0.3, 0.1].missing[2].startswith("failed")
    assert selection.winner is scores[0.3, 0.1]  # the best mean over the seeds it finished

    # the winner runs on the report seeds, at its point, in the report stage
    spec = load_spec(
        SMOKE,
        [
            "tasks=[rte]",
            "data.custom_tasks={}",
            f"{P_AXIS}=[0.1, 0.3]",
            f"{Q_AXIS}=[0.1, 0.2]",
            "sweep.select_seeds=[1, 2]",
            "sweep.report_seeds=[3, 4]",
        ],
    )
    plan = plan_sweep(spec, SMOKE.parent)
    runs = report_runs(plan, [selection])
    assert [(r.task, r.variant, r.seed) for r in runs] == [
        ("rte", "addrop", 3),
        ("rte", "addrop", 4),
    ]
    for run in runs:
        assert (run.params.p, run.params.q) == (0.3, 0.1)
        assert run.sweep == {
            "point": {"methods.addrop.p": 0.3, "methods.addrop.q": 0.1},
            "stage": "report",
        }
    assert not {r.run_id for r in runs} & {r.run_id for r in plan.select_runs}


def test_ties_go_to_the_first_point_of_the_sweep_and_lower_is_better_metrics_flip(
    tmp_path: Path,
) -> None:
    exp = tmp_path / "ties"
    for p in (0.5, 0.1, 0.3):
        config = make_store.run_config(
            exp.name,
            task="rte",
            variant="addrop",
            params=dict(make_store.ADDROP, p=p),
            seed=1,
            sweep={"point": {"methods.addrop.p": p}, "stage": "select"},
        )
        make_store.write_run(exp, config, {"accuracy": 0.7})
    order = [{"methods.addrop.p": p, "methods.addrop.q": q} for p in (0.3, 0.1, 0.5) for q in (1,)]
    (selection,) = select_winners(load_runs(exp), points=order)
    assert selection.winner.point == {"methods.addrop.p": 0.3}


# ---------------------------------------------------------------------------------------------
# The local pool, end to end on the tiny model
# ---------------------------------------------------------------------------------------------


def done_runs(experiment: Path) -> dict[str, Path]:
    runs = experiment / "runs"
    return {p.name: p for p in runs.iterdir() if (p / "DONE").is_file()} if runs.is_dir() else {}


def test_a_pool_of_two_workers_completes_a_sweep_and_the_report_shows_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = smoke_sweep(f"{P_AXIS}=[0.1, 0.5]", f"{Q_AXIS}=[0.2, 0.4]")
    result = run_cli(capsys, "sweep", SMOKE, *args, "--workers", "2", "--results", tmp_path)
    assert result.code == 0, result.err + result.out
    assert "local pool: 2 worker processes" in result.out
    experiment = tmp_path / "smoke"
    spec = load_spec(SMOKE, args)
    plan = plan_sweep(spec, SMOKE.parent)
    done = done_runs(experiment)
    assert {r.run_id for r in plan.stage1()} <= set(done)
    assert len(done) == 4 + 1 + 1  # 4 points on seed 1, the baseline and the winner on seed 2
    for run_id in done:
        assert len(RunFolder(experiment / "runs" / run_id).attempts()) == 1
    pids = {
        RunFolder(experiment / "runs" / run.run_id).attempts()[0].split("pid=")[1].split()[0]
        for run in plan.stage1()
    }
    assert len(pids) == 2 and str(os.getpid()) not in pids  # stage 1 ran in 2 worker processes

    summary = json.loads((experiment / "sweep" / "summary.json").read_text())
    assert len(summary["configurations"]) == 4 and summary["protocol"] == "two_stage"
    (winner,) = summary["winners"]
    report_stage = [r for r in load_runs(experiment) if r.sweep_stage == "report"]
    assert [(r.seed, dict(r.sweep_point)) for r in report_stage] == [(2, winner["point"])]
    assert (experiment / "report" / "heatmap_sst2_addrop.png").is_file()
    assert "two-stage: selected on seeds 1, reported on seeds 2" in result.out
    report = build_report([experiment], resamples=10)
    assert report.table.cell("sst2", "addrop").protocol.startswith("two-stage")

    status = run_cli(capsys, "status", experiment)
    assert status.code == 0 and "6 runs: 0 queued, 0 running, 6 done, 0 failed" in status.out
    again = run_cli(capsys, "sweep", SMOKE, *args, "--workers", "2", "--results", tmp_path)
    assert again.code == 0 and again.out.count("0 to run") == 2  # nothing is redone


def test_status_tells_running_from_interrupted_and_not_started(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["tasks=[sst2]", "seeds=[1, 2]", "train.epochs=1"]
    spec = load_spec(SMOKE, args)
    from addrop_cli.spec.matrix import expand

    runs = expand(spec, SMOKE.parent)
    experiment = tmp_path / "smoke"
    for run, state in zip(runs, ("done", "running", "interrupted", "absent"), strict=True):
        folder = experiment / "runs" / run.run_id
        if state == "absent":
            continue
        if state == "done":  # a readable result (a DONE run without one is corrupt)
            config = make_store.run_config(
                "smoke", task=run.task, variant=run.variant, params=make_store.BASELINE, seed=1
            )
            make_store.write_run(experiment, config | {"run_id": run.run_id}, {"accuracy": 0.5})
            continue
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(
            json.dumps({"task": run.task, "variant": run.variant, "seed": run.seed})
        )
        if state == "interrupted":  # a training state to go on from (one that loads)
            from addrop_cli.store.state import TrainingStateFiles

            TrainingStateFiles(folder).write({"step": 7}, step=7, epoch=0)
    held = FileLock(experiment / "runs" / f".{runs[1].run_id}.lock")
    with held:
        result = run_cli(capsys, "status", SMOKE, *args, "--results", tmp_path)
    assert result.code == 0, result.err
    # the store's words (addrop_cli/store/status.py), as the report says them
    assert "4 runs: 0 queued, 1 running, 1 done, 0 failed, 1 unfinished, 1 absent" in result.out
    from_folder = run_cli(capsys, "status", experiment)
    assert "3 runs: 0 queued, 0 running, 1 done, 0 failed, 2 unfinished" in from_folder.out
    details = {s.run_id: s.detail for s in collect(ExperimentStore(experiment))}
    resumes = "not running; resumes from step 7 (epoch 1) of its training state"
    assert details[runs[2].run_id] == resumes
    assert details[runs[1].run_id] == "not running; no training state: starts again from step 0"


# ---------------------------------------------------------------------------------------------
# SIGKILL half way, then restart: every run done exactly once
# ---------------------------------------------------------------------------------------------


def test_a_sweep_killed_half_way_and_restarted_completes_with_no_run_done_twice(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = smoke_sweep(f"{P_AXIS}=[0.1, 0.5]", f"{Q_AXIS}=[0.2, 0.4]", epochs=3)
    experiment = tmp_path / "smoke"
    command = [sys.executable, "-m", "addrop_cli", "sweep", str(SMOKE), *args]
    command += ["--workers", "2", "--results", str(tmp_path), "--plain", "--no-report"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage1 = {r.run_id for r in plan_sweep(load_spec(SMOKE, args), SMOKE.parent).stage1()}
    deadline = time.monotonic() + 180
    while len(done_runs(experiment)) < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, "the sweep finished no run in 180 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the parent only: its workers must die with it
    proc.wait(30)
    before = {
        run_id: (path / "DONE").read_bytes() + (path / "metrics.json").read_bytes()
        for run_id, path in done_runs(experiment).items()
    }
    assert 2 <= len(before) < len(stage1), "kill landed after stage 1; make the runs longer"
    # the workers' locks are released once they are gone (no orphan keeps working)
    for lock in (experiment / "runs").glob(".*.lock"):
        with FileLock(lock, timeout=30):
            pass

    result = run_cli(capsys, "sweep", SMOKE, *args, "--results", tmp_path, "--no-report")
    assert result.code == 0, result.err + result.out
    assert f"{len(before)} already in" in result.out
    done = done_runs(experiment)
    assert len(done) == len(stage1) + 1 and stage1 <= set(done)
    for run_id, content in before.items():  # finished before the kill: untouched, run once
        path = experiment / "runs" / run_id
        assert (path / "DONE").read_bytes() + (path / "metrics.json").read_bytes() == content
        assert len(RunFolder(path).attempts()) == 1
    restarted = [
        run_id for run_id in done if len(RunFolder(experiment / "runs" / run_id).attempts()) > 1
    ]
    assert all(run_id not in before for run_id in restarted)
    records = [r for r in load_runs(experiment) if r.status == "done"]
    assert len(records) == len({r.run_id for r in records}) == len(stage1) + 1
