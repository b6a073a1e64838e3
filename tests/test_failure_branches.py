"""The failure branches of store/, execution/ and engine/ that no other test walks (issue 23,
found by `make coverage`): damaged store files, a lock held elsewhere, a failed folder write,
missing optional packages and tools, a GPU probe that fails. Each is driven the way it happens
to users (a damaged file, a child process holding a lock, a package that does not import)."""

from __future__ import annotations

import importlib
import io
import json
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fault_helpers import SMOKE, smoke_args, start_addrop
from rich.console import Console

from addrop_cli.errors import SpecError, StoreError
from addrop_cli.store import folders
from addrop_cli.store.atomic import atomic_folder
from addrop_cli.store.reader import StoreWarning, load_runs, read_run, spec_hash_order

GLUE_SMALL = Path(__file__).resolve().parent / "fixtures" / "store" / "glue-small"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return shutil.copytree(GLUE_SMALL, tmp_path / "glue-small")


def _a_run(store: Path) -> Path:
    return next(p for p in sorted((store / "runs").iterdir()) if (p / "epochs.jsonl").is_file())


# --------------------------------------------------------------------------- damaged store files


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one finished smoke run (2 epochs), with its real epochs.jsonl."""
    results = tmp_path_factory.mktemp("real")
    process = start_addrop(results, [*smoke_args([1], epochs=2), "methods={baseline: {}}"])
    assert process.finish() == 0, process.output()
    (folder,) = [p for p in (results / "smoke" / "runs").iterdir() if p.is_dir()]
    return folder


def test_a_damaged_epochs_line_is_skipped_with_a_warning_naming_file_and_line(
    real_run: Path, tmp_path: Path
) -> None:
    run = shutil.copytree(real_run, tmp_path / real_run.name)
    path = run / "epochs.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    path.write_text("\n".join([lines[0], '{"epoch": "one"', lines[1]]) + "\n")
    record = read_run(run)
    assert record is not None
    with pytest.warns(StoreWarning, match=rf"{path}:2: .*line skipped"):
        epochs = record.epochs()
    assert [e.epoch for e in epochs] == [1, 2]  # both intact lines kept


def test_predictions_of_different_lengths_are_left_out_with_a_warning(
    real_run: Path, tmp_path: Path
) -> None:
    run = shutil.copytree(real_run, tmp_path / real_run.name)
    assert read_run(run).predictions() is not None  # intact, before the damage
    bad = {"dev": {"guids": ["a", "b"], "predictions": [1], "labels": [1, 0]}}
    (run / "predictions.json").write_text(json.dumps(bad))
    record = read_run(run)
    assert record is not None
    with pytest.warns(StoreWarning, match="differ in length.*left out of the bootstrap"):
        assert record.predictions() is None


@pytest.mark.parametrize("content", ["{not json", '{"format": "two"}'])
def test_an_unreadable_experiment_json_warns_and_its_runs_are_still_read(
    store: Path, content: str
) -> None:
    (store / "experiment.json").write_text(content)
    with pytest.warns(StoreWarning, match="experiment.json: unreadable .*reading its runs anyway"):
        runs = load_runs(store)
    assert len(runs) == len(list((store / "runs").iterdir()))
    if content.startswith("{not"):
        assert spec_hash_order(store) == []  # no recorded versions: order unknown


def test_a_run_without_a_failed_marker_has_no_failure_time(store: Path) -> None:
    folder = folders.RunFolder(_a_run(store))
    assert not (folder.path / "FAILED").exists()
    assert folder.failed_at() == 0.0 and folder.failure_reason() == ""


def test_an_experiment_lock_held_by_another_process_is_one_line_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stuck addrop process holds the experiment's lock: the next one waits, then says so."""
    monkeypatch.setattr(folders, "EXPERIMENT_LOCK_TIMEOUT_S", 0.5)
    root = tmp_path / "exp"
    root.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(root / ".experiment.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError) as caught:
            folders.ExperimentStore(root).open_for_writing("exp", "h", "name: exp\n")
    finally:
        holder.kill()
        holder.wait()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{root / '.experiment.lock'}: held by")
    assert "run the same command again" in message
    assert not (root / "experiment.json").exists()  # nothing written without the lock


_HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name open files")
def test_a_folder_write_that_fails_leaves_the_old_folder_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults: Callable[..., None]
) -> None:
    """A checkpoint folder written while the disk fills up: one line, the previous checkpoint
    whole, no hidden temporary folder left beside it."""
    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"old weights")
    faults(disk_full="model.safetensors")
    with pytest.raises(StoreError, match="disk full"), atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("{}")
        (tmp / "model.safetensors").write_bytes(b"new weights")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert sorted(p.name for p in target.iterdir()) == ["model.safetensors"]
    assert (target / "model.safetensors").read_bytes() == b"old weights"


# --------------------------------------------------------------------------- optional packages


def test_search_without_optuna_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from addrop_cli.execution.sweeps.study import need_optuna

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    with pytest.raises(SpecError, match=r"need Optuna; pip install -e '\.\[search\]' in a clone"):
        need_optuna()


@pytest.mark.parametrize(
    ("tracker", "module"),
    [("tensorboard", "torch.utils.tensorboard"), ("mlflow", "mlflow.tracking")],
)
def test_a_tracker_whose_package_does_not_import_is_one_line_with_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracker: str, module: str
) -> None:
    """Installed enough for the pre-flight check (the package is found) but broken or partial,
    so its import fails when the run starts."""
    from addrop_cli.execution.trackers import tracking

    # imported whole first: blocking a submodule of a package that is not imported yet would
    # leave the package half-imported for every later test
    importlib.import_module(module)
    monkeypatch.setitem(sys.modules, module, None)
    info = tracking.RunInfo(
        "r1", "exp", "rte", "base", "baseline", 1, tmp_path / "runs/r1", tmp_path, {}
    )
    classes = {"tensorboard": tracking.TensorBoardTracker, "mlflow": tracking.MLflowTracker}
    with pytest.raises(tracking.TrackerProblem) as caught:
        classes[tracker](info)
    message = str(caught.value)
    assert message.startswith(f"tracking: {tracker} is not installed") and "\n" not in message
    assert "pip install 'addrop-cli[" in message and "or drop it from tracking" in message


def test_versions_of_packages_not_installed_are_recorded_as_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from addrop_cli.engine import environment

    monkeypatch.setattr(environment, "_PACKAGES", ("torch", "no-such-package-addrop"))
    env = environment.describe_environment(tmp_path)
    assert env["packages"] == {"torch": env["packages"]["torch"], "no-such-package-addrop": None}
    assert env["packages"]["torch"]  # the installed one still has its version


# --------------------------------------------------------------------------- missing tools


def _path_with(tmp_path: Path, scripts: dict[str, str]) -> str:
    """A PATH holding only these executable shell scripts (and the shell itself)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def test_the_slurm_backend_without_submitit_is_one_line_and_runs_nothing(tmp_path: Path) -> None:
    """The slurm extra not installed: the module still imports (its stand-in base class), and
    `addrop run --backend slurm` stops with the install line before any run folder exists."""
    blocked = "import sys; sys.modules['submitit'] = None; from addrop_cli.cli import main; main()"
    command = [sys.executable, "-c", blocked, "run", str(SMOKE), *smoke_args([1])]
    command += ["--backend", "slurm", "--results", str(tmp_path), "--plain"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "error: executor.backend: slurm needs submitit; pip install -e '.[slurm]' in a clone of "
        "addrop, pip install 'addrop-cli[slurm]' otherwise; "
        "or use --backend local"
    )
    assert not list(tmp_path.rglob("run.json"))


def test_slurm_is_unavailable_when_its_controller_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sbatch and squeue installed, the controller down: squeue fails, the back-end says no."""
    from addrop_cli.execution.backends.slurm import slurm_available

    down = "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1"
    monkeypatch.setenv("PATH", _path_with(tmp_path, {"sbatch": "exit 0", "squeue": down}))
    assert slurm_available() is False


def test_a_folder_outside_git_or_without_git_has_no_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from addrop_cli.engine.environment import git_commit

    monkeypatch.setenv("PATH", _path_with(tmp_path, {}))  # git is not installed
    assert git_commit(Path(__file__).parent) is None


def test_no_usable_cuda_is_no_gpu_and_free_memory_falls_back_to_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from addrop_cli.execution.backends import placement

    def broken() -> int:
        raise RuntimeError("CUDA driver initialization failed")

    monkeypatch.setattr(torch.cuda, "device_count", broken)
    assert placement.visible_gpus() == []
    # nvidia-smi missing: the free memory comes from torch instead
    monkeypatch.setenv("PATH", _path_with(tmp_path, {}))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (1000 + i, 2000))
    assert placement.free_gpu_memory(["0", "1"]) == [1000, 1001]


# --------------------------------------------------------------------------- execution


def test_a_dry_run_says_the_state_size_is_unknown_without_a_model_config(tmp_path: Path) -> None:
    from addrop_cli.execution.planning.runner import print_state_size
    from addrop_cli.spec.load import load_spec
    from addrop_cli.spec.matrix import expand

    spec = load_spec(SMOKE, [*smoke_args([1]), f"model.name_or_path={tmp_path / 'nothing'}"])
    out = io.StringIO()
    print_state_size(expand(spec, SMOKE.parent), Console(file=out, width=200))
    assert "unknown (no model config)" in out.getvalue()


def test_a_stage_with_nothing_stored_has_no_records(tmp_path: Path) -> None:
    from addrop_cli.execution.sweeps.selection import stage_records
    from addrop_cli.spec.load import load_spec
    from addrop_cli.spec.matrix import expand

    runs = expand(load_spec(SMOKE, smoke_args([1])), SMOKE.parent)
    assert stage_records(tmp_path / "nothing-here", runs) == []


def test_our_own_one_line_errors_pass_through_the_checkpoint_guard_unchanged() -> None:
    from addrop_cli.execution.inspection.predict_text import readable_checkpoint

    mine = StoreError("checkpoint: base model gone; pass --model")
    with pytest.raises(StoreError) as caught, readable_checkpoint(Path("ckpt")):
        raise mine
    assert caught.value is mine


def test_held_locks_is_unknown_where_proc_locks_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from addrop_cli.execution.inspection import status

    real = Path.read_text

    def read_text(self: Path, *args, **kwargs) -> str:
        if str(self) == "/proc/locks":
            raise PermissionError(13, "Permission denied", "/proc/locks")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert status.held_locks() is None


def test_status_of_a_search_with_no_trial_yet_lists_only_the_runs_it_knows(tmp_path: Path) -> None:
    """The study database exists (a search just started) but holds no study for the swept
    variant yet: `addrop status` plans no trial for it instead of failing."""
    pytest.importorskip("optuna")
    from addrop_cli.execution.sweeps.plan import plan_sweep
    from addrop_cli.execution.sweeps.search import open_storage, storage_url, studied_plan
    from addrop_cli.spec.load import load_spec

    search = ["sweep.search=tpe", "sweep.select_seeds=[1]", "sweep.report_seeds=[2]"]
    search.append("sweep.grid.methods.addrop.p=[0.1, 0.5]")
    spec = load_spec(SMOKE, ["tasks=[sst2]", *search])
    plan = plan_sweep(spec, SMOKE.parent, str(SMOKE))
    root = tmp_path / "smoke"
    (root / "sweep").mkdir(parents=True)
    open_storage(storage_url(root / "sweep", journal=False))  # the database, no study in it
    assert (root / "sweep" / "study.db").is_file()
    studied = studied_plan(plan, root)
    assert [r.variant for r in studied.stage1()] == ["baseline"]  # no AD-DROP trial yet
