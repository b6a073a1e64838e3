"""The results store's promises, one at a time: atomic writes, one-line write errors, the attempts
log, experiment.json under concurrent writers, and spec versions kept apart in reports."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import get_args

import pytest
import torch
from cli_helpers import run_cli
from fault_helpers import SMOKE, smoke_args
from safetensors.torch import save_file

from addrop_cli.errors import StoreError
from addrop_cli.report.build import build_report
from addrop_cli.store.atomic import atomic_folder, atomic_write_text
from addrop_cli.store.folders import ExperimentStore, RunFolder
from addrop_cli.store.reader import StoreWarning, load_runs
from addrop_cli.store.records import FailedMetrics, RunConfig, RunMetrics, SplitMetrics
from addrop_cli.store.status import RunStatus


def _failing(err: int):  # type: ignore[no-untyped-def]
    def fsync(fd: int) -> None:
        raise OSError(err, os.strerror(err))

    return fsync


@pytest.mark.parametrize(
    ("err", "message"),
    [
        (errno.ENOSPC, "disk full (No space left on device); free space"),
        (errno.EDQUOT, "disk full (Disk quota exceeded)"),
        (errno.EACCES, "cannot write results (Permission denied); make the folder writable"),
        (errno.EROFS, "cannot write results (Read-only file system); make the folder writable"),
        (errno.EIO, "cannot write results (Input/output error); check the path"),
    ],
    ids=["disk-full", "quota", "permission", "read-only-fs", "io-error"],
)
def test_a_failed_write_keeps_the_old_file_and_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, message: str
) -> None:
    path = tmp_path / "metrics.json"
    atomic_write_text(path, '{"old": true}\n')
    monkeypatch.setattr(os, "fsync", _failing(err))
    with pytest.raises(StoreError) as caught:
        atomic_write_text(path, '{"new": true}\n')
    assert str(caught.value) == caught.value.problems[0]  # one line
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert path.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary file


def test_attempts_log_survives_restarts(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "exp" / "runs" / "abc123def456")
    assert folder.attempts() == []
    config = RunConfig(run_id="abc123def456", task="sst2", variant="baseline", seed=1)
    folder.start(config)
    (folder.path / "epochs.jsonl").write_text('{"epoch": 0}\n')
    folder.start(config)  # an interrupted run without a training state starts again: wiped
    assert not (folder.path / "epochs.jsonl").exists()
    (folder.path / "state").mkdir()
    (folder.path / "epochs.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n')
    folder.start(config, resume_at=(7, 1), epochs=[])  # one that goes on from a state keeps it
    assert (folder.path / "state").is_dir() and not (folder.path / "epochs.jsonl").exists()
    lines = folder.attempts()
    assert len(lines) == 3 and all(f"pid={os.getpid()} host=" in line for line in lines)
    assert [line.rsplit(" ", 2)[1:] for line in lines] == [
        ["step=0", "epoch=1"],
        ["step=0", "epoch=1"],
        ["step=7", "epoch=2"],  # the loop's position 1 is the second epoch
    ]
    assert folder.attempts_log == tmp_path / "exp" / "attempts" / "abc123def456.log"


def test_concurrent_spec_versions_are_all_recorded(tmp_path: Path) -> None:
    """Two processes opening the store with different spec versions lose no hash."""
    code = (
        "import sys; from pathlib import Path\n"
        "from addrop_cli.store.folders import ExperimentStore\n"
        "store = ExperimentStore(Path(sys.argv[1]))\n"
        "for i in range(15):\n"
        "    store.open_for_writing('exp', f'{sys.argv[2]}{i}', 'name: exp\\n')\n"
    )
    root = tmp_path / "exp"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root), prefix]) for prefix in "ab"]
    assert [p.wait(60) for p in procs] == [0, 0]
    hashes = json.loads((root / "experiment.json").read_text())["spec_hashes"]
    assert sorted(hashes) == sorted(f"{p}{i}" for p in "ab" for i in range(15))


def test_reader_ignores_bookkeeping_and_runs_killed_while_starting(tmp_path: Path) -> None:
    store = ExperimentStore(tmp_path / "exp")
    store.open_for_writing("exp", "h1", "name: exp\n")
    folder = store.run("abc123def456")
    folder.start(RunConfig(run_id="abc123def456", task="sst2", variant="baseline", seed=1))
    (store.runs_dir / "0123456789ab").mkdir()  # killed after mkdir, before run.json
    (store.runs_dir / "0123456789ab" / ".run.json.x1y2.tmp").write_text('{"task": "ss')
    (store.runs_dir / ".hidden").mkdir()
    with store.lock("abc123def456") as locked:
        assert locked
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        records = load_runs(store.root)
    assert not caught
    assert [(r.run_id, r.status) for r in records] == [("abc123def456", "unfinished")]


def test_the_folder_and_the_reader_name_each_state_with_the_same_word(tmp_path: Path) -> None:
    """One vocabulary (store/status.py): what the runner reads from a folder is what the report
    reads, for every state a started run can be in."""
    store = ExperimentStore(tmp_path / "exp")
    store.open_for_writing("exp", "h1", "name: exp\n")
    markers = {"unfinished": None, "failed": "FAILED", "pruned": "PRUNED"}
    for i, (state, marker) in enumerate(markers.items()):
        run_id = f"{i:012d}"
        folder = store.run(run_id)
        folder.start(RunConfig(run_id=run_id, task="sst2", variant=state, seed=1))
        if marker:
            (folder.path / marker).write_text("why\n")
    read = {r.variant: r.status for r in load_runs(store.root)}
    folders = {r.variant: RunFolder(r.path).status for r in load_runs(store.root)}
    assert read == folders == {state: state for state in markers}
    assert get_args(RunStatus) == ("done", "failed", "pruned", "unfinished", "corrupt", "absent")


def test_every_status_transition_of_a_run_folder(tmp_path: Path) -> None:
    """The moves between states of docs/store.md, one by one, through the writer's own methods, each
    state read back by the folder and by the report's reader alike."""
    store = ExperimentStore(tmp_path / "exp")
    store.open_for_writing("exp", "h1", "name: exp\n")
    config = RunConfig(run_id="abc123def456", task="sst2", variant="baseline", seed=1)
    folder = store.run(config.run_id)
    split = SplitMetrics(dev={"accuracy": 0.5})
    done = RunMetrics(
        task="sst2",
        variant="baseline",
        seed=1,
        main_metric="accuracy",
        best_epoch=1,
        best=split,
        last=split,
    )
    failed = FailedMetrics(task="sst2", variant="baseline", seed=1, error="ValueError: x")

    def state() -> str:
        (record,) = load_runs(store.root) if folder.path.exists() else [None]
        read = record.status if record is not None else "absent"
        assert read == folder.status
        return read

    assert state() == "absent"
    edges = [
        ("start", folder.start, config, "unfinished"),
        ("fail", folder.fail, failed, "failed"),
        ("retry", folder.start, config, "unfinished"),
        ("prune", lambda why: folder.prune(2, why), "below the median", "pruned"),
    ]
    for name, step, argument, expected in edges:
        step(argument)
        assert state() == expected, name
    assert folder.pruned_note() == "pruned after 2 epochs: below the median"
    folder.start(config)  # a pruned run is never retried by the runner; started by hand: fresh
    assert state() == "unfinished" and folder.failure_reason() == ""
    folder.finish(done)
    assert state() == "done"
    (folder.path / "metrics.json").write_text("{torn")
    with pytest.warns(StoreWarning, match="metrics.json: unreadable"):
        assert [r.status for r in load_runs(store.root)] == ["corrupt"]
    assert folder.status == "done"  # the folder's marker stands; the reader will not count it


# ---------------------------------------------------------------------------------------------
# A changed spec: new run ids, and the report keeps the versions apart
# ---------------------------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], results: Path, *overrides: str) -> None:
    result = run_cli(capsys, "run", SMOKE, "--plain", "--results", results, *overrides)
    assert result.code == 0, result.err


def _report(results: Path) -> tuple[object, list[str]]:
    report = build_report([results / "smoke"], resamples=20)
    return report.table, list(report.warnings)


def test_a_changed_learning_rate_never_mixes_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = smoke_args([1], epochs=1)
    _run(capsys, tmp_path, *args)
    first = {p.name for p in (tmp_path / "smoke" / "runs").iterdir() if p.is_dir()}
    _run(capsys, tmp_path, *args, "train.lr=2e-3")
    runs = {p.name for p in (tmp_path / "smoke" / "runs").iterdir() if p.is_dir()}
    assert len(first) == 2 and len(runs) == 4 and first < runs  # new ids; old runs kept
    meta = json.loads((tmp_path / "smoke" / "experiment.json").read_text())
    assert len(meta["spec_hashes"]) == 2

    table, notes = _report(tmp_path)
    assert len(table.variants) == 4 and all("@" in v for v in table.variants)
    assert all(cell.n == 1 and cell.expected == 1 for cell in table.cells.values())
    versions = sorted({v.split("/")[0] for v in table.variants})
    assert versions == sorted(f"smoke@{h[:7]}" for h in meta["spec_hashes"])
    note = next(n for n in notes if "spec versions" in n)
    assert "holds runs from 2 spec versions" in note
    assert "shows those apart as smoke@<version>/<variant>" in note
    for h in meta["spec_hashes"]:
        assert f"{h[:7]}: 2 runs" in note


def test_running_one_seed_at_a_time_keeps_one_spec_version(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A study run seed by seed with overrides (seeds=[1], then seeds=[2]; `make study` now uses
    --only seed=N): each run's id holds its seed, so neither the seeds nor the tasks run are
    another version of the spec."""
    _run(capsys, tmp_path, *smoke_args([1], epochs=1))
    _run(capsys, tmp_path, *smoke_args([2], epochs=1))
    _run(capsys, tmp_path, *smoke_args([1, 2], epochs=1)[1:], "tasks=[sst2,stsb]")
    meta = json.loads((tmp_path / "smoke" / "experiment.json").read_text())
    assert len(meta["spec_hashes"]) == 1
    table, notes = _report(tmp_path)
    assert set(table.variants) == {"baseline", "addrop"}
    assert all(cell.n == 2 and cell.expected == 2 for cell in table.cells.values())
    assert len(table.cells) == 4  # two tasks x two variants
    assert not [n for n in notes if "spec versions" in n]


def _strip_identity(run_dirs: list[Path]) -> dict[str, dict]:
    """Rewrite run.json as stores before identities were recorded wrote it; the identities."""
    removed = {}
    for folder in run_dirs:
        config = json.loads((folder / "run.json").read_text())
        removed[folder.name] = config.pop("identity")
        atomic_write_text(folder / "run.json", json.dumps(config))
    return removed


def test_runs_stored_without_an_identity_get_theirs_back_when_their_id_proves_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    runs = tmp_path / "smoke" / "runs"
    _run(capsys, tmp_path, *smoke_args([1], epochs=1))
    old = sorted(p for p in runs.iterdir() if p.is_dir())
    removed = _strip_identity(old)
    _run(capsys, tmp_path, *smoke_args([1, 2], epochs=1))  # the upgrade: new runs record it

    records = {r.run_id: r for r in load_runs(tmp_path / "smoke")}
    assert {i: records[i].config.identity for i in removed} == removed
    table, notes = _report(tmp_path)
    assert set(table.variants) == {"baseline", "addrop"}  # one column per variant, not split
    assert all(cell.n == 2 for cell in table.cells.values())
    assert not [n for n in notes if "spec versions" in n]


def test_an_old_run_with_other_settings_is_not_given_a_newer_runs_identity(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    runs = tmp_path / "smoke" / "runs"
    _run(capsys, tmp_path, *smoke_args([1], epochs=1), "train.lr=2e-3")
    removed = _strip_identity(sorted(p for p in runs.iterdir() if p.is_dir()))
    _run(capsys, tmp_path, *smoke_args([1], epochs=1))

    records = {r.run_id: r for r in load_runs(tmp_path / "smoke")}
    assert all(records[i].config.identity is None for i in removed)
    table, _ = _report(tmp_path)
    assert len(table.variants) == 4 and all("@" in v for v in table.variants)


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_files_respect_the_umask_like_any_other_file(
    tmp_path: Path, umask: int, expected: int
) -> None:
    """metrics.json, DONE, experiment.json (and every other atomic write) get the mode a plain
    open() would give them: colleagues on a shared file system read the weights like the config."""
    previous = os.umask(umask)
    try:
        store = ExperimentStore(tmp_path / "exp")
        store.open_for_writing("exp", "hash", "name: exp\n")
        folder = store.run("r1")
        folder.path.mkdir(parents=True)
        atomic_write_text(folder.path / "metrics.json", "{}\n")
        atomic_write_text(folder.path / "DONE", "x\n")
        with open(folder.path / "plain.txt", "w") as f:  # what the user's umask gives any file
            f.write("x")
        with atomic_folder(folder.path / "checkpoint") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
    finally:
        os.umask(previous)
    written = ("metrics.json", "DONE", "checkpoint/model.safetensors")
    for path in [store.root / "experiment.json", *(folder.path / name for name in written)]:
        assert path.stat().st_mode & 0o777 == expected, path
    assert (folder.path / "plain.txt").stat().st_mode & 0o777 == expected


def test_attempt_times_keep_each_attempts_latest_and_skip_a_torn_line(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    assert folder.attempt_times() == {}
    folder.record_attempt_time(1, 2.0)
    folder.record_attempt_time(1, 5.5, sync=False)
    folder.record_attempt_time(2, 1.25)
    with open(folder.path / "attempt_times.jsonl", "a") as f:
        f.write('{"attempt": 2, "seco')  # a kill in the middle of a line
    assert folder.attempt_times() == {1: 5.5, 2: 1.25}


def test_format_1_stores_are_read_with_epochs_counted_from_1() -> None:
    """Format 1 counted epochs from 0 in epochs.jsonl and metrics.json; they read as format 2's."""
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "store" / "glue-small"
    (run,) = [r for r in load_runs(fixture) if r.run_id == "1f8a7836a17d"]
    stored = json.loads((run.path / "metrics.json").read_text())
    on_disk = [json.loads(line)["epoch"] for line in (run.path / "epochs.jsonl").open()]
    assert stored["format"] == 1 and on_disk[0] == 0
    assert [e.epoch for e in run.epochs()] == [e + 1 for e in on_disk]
    assert run.metrics is not None and run.metrics.best_epoch == stored["best_epoch"] + 1
