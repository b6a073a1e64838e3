"""Trackers (TensorBoard, MLflow, W&B offline): what is logged is read back with each tool's own
reader (tests/tracking_readers.py); a missing or failing tracker is one line, never a failed run.

Marked ``tracking`` (select with ``-m tracking``); a tracker whose package is not installed is
skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from cli_helpers import run_cli
from tracking_readers import (
    mlflow_runs,
    tensorboard_hparam_metrics,
    tensorboard_hparams,
    tensorboard_scalars,
    wandb_offline_run,
)

from addrop_cli.engine.loggers import Loggers, QuietLogger, StepEvent
from addrop_cli.execution.trackers import servers, tracking
from addrop_cli.execution.trackers.tracking import RunInfo, Tracker, mlflow_store, start_trackers
from addrop_cli.spec.schema import ExperimentSpec
from addrop_cli.spec.trackers import TRACKERS, TrackingSpec

pytestmark = pytest.mark.tracking

CONFIG = {
    "run_id": "abc123",
    "task": "rte",
    "train": {"learning_rate": 2e-5, "epochs": 2},
    "method_params": {"method": "addrop", "p": 0.3, "layers": [0, 1]},
}
STEPS = {s: {"train/loss": 1.0 / s, "train/lr": 1e-5 * s} for s in range(1, 5)}
EVAL = (4, {"dev/accuracy": 0.625, "dev/f1": 0.5})


@pytest.fixture
def run(tmp_path: Path) -> RunInfo:
    exp = tmp_path / "exp"
    return RunInfo(
        "abc123", "exp", "rte", "addrop-ga", "addrop", 3, exp / "runs/abc123", exp, CONFIG
    )


def _log_everything(run: RunInfo, names: list[str]) -> list[str]:
    warnings: list[str] = []
    trackers = start_trackers(names, run, warnings.append)
    assert [t.name for t in trackers] == names, warnings
    for tracker in trackers:
        for step, metrics in STEPS.items():
            tracker.log_numbers(metrics, step)
        tracker.log_numbers(EVAL[1], EVAL[0])
        tracker.on_end("done", "")
    return warnings


class _Notes(QuietLogger):
    """A required logger that keeps the notes the fan-out sends (what the display shows)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def on_note(self, text: str) -> None:
        self.lines.append(text)


def _step(global_step: int) -> StepEvent:
    return StepEvent(0, global_step, 4, global_step, loss=0.5, samples_per_s=1.0)


def _expected() -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for step, metrics in [*STEPS.items(), EVAL]:
        for key, value in metrics.items():
            out.setdefault(key, {})[step] = value
    return out


def test_tensorboard_scalars_and_hparams_read_back(run: RunInfo) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard not installed (extra: tensorboard)")
    assert _log_everything(run, ["tensorboard"]) == []
    (folder,) = (run.experiment_dir / "tracking" / "tensorboard").iterdir()
    assert folder.name == "rte_addrop-ga_seed3_abc123"
    scalars = tensorboard_scalars(folder)
    assert scalars.keys() == _expected().keys()
    for key, values in _expected().items():
        assert scalars[key] == pytest.approx(values, rel=1e-6)  # stored as float32
    hparams = tensorboard_hparams(folder)
    assert hparams["train.learning_rate"] == pytest.approx(2e-5)
    assert hparams["method_params.layers"] == "[0, 1]"
    assert (hparams["task"], hparams["variant"], hparams["seed"]) == ("rte", "addrop-ga", "3")


def test_tensorboard_hparams_hold_the_best_dev_metrics_of_a_done_run(run: RunInfo) -> None:
    """The HParams dashboard compares runs by dev score: metrics.json's best dev metrics."""
    pytest.importorskip("tensorboard", reason="tensorboard not installed (extra: tensorboard)")
    run.folder.mkdir(parents=True)
    best = {"best": {"dev": {"accuracy": 0.75, "f1": 0.5}}, "best_step": 4}
    (run.folder / "metrics.json").write_text(json.dumps(best))
    assert _log_everything(run, ["tensorboard"]) == []
    (folder,) = (run.experiment_dir / "tracking" / "tensorboard").iterdir()
    assert tensorboard_hparam_metrics(folder) == ["best_dev/accuracy", "best_dev/f1"]
    scalars = tensorboard_scalars(folder)
    assert (scalars["best_dev/accuracy"], scalars["best_dev/f1"]) == ({4: 0.75}, {4: 0.5})
    assert tensorboard_hparams(folder)["train.learning_rate"] == pytest.approx(2e-5)


def test_mlflow_params_tags_and_histories_read_back(run: RunInfo, monkeypatch) -> None:
    pytest.importorskip("mlflow", reason="mlflow not installed (extra: mlflow)")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert _log_everything(run, ["mlflow"]) == []
    (found,) = mlflow_runs(mlflow_store(run.experiment_dir), "exp")
    assert found["metrics"] == _expected()
    assert found["params"]["train.learning_rate"] == "2e-05"
    assert found["params"]["method_params.p"] == "0.3"
    tags = found["tags"]
    assert (tags["run_id"], tags["task"], tags["variant"]) == ("abc123", "rte", "addrop-ga")
    assert (tags["method"], tags["seed"], tags["mlflow.runName"]) == ("addrop", "3", run.label)
    assert found["status"] == "FINISHED"


def test_wandb_offline_run_files_read_back(run: RunInfo, monkeypatch) -> None:
    pytest.importorskip("wandb", reason="wandb not installed (extra: wandb)")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default
    assert _log_everything(run, ["wandb"]) == []
    found = wandb_offline_run(run.experiment_dir / "tracking" / "wandb")
    history = found["history"]
    for key, values in _expected().items():
        assert {s: row[key] for s, row in history.items() if key in row} == values
    assert (found["name"], found["group"]) == (run.label, "rte/addrop-ga")
    assert set(found["tags"]) == {"rte", "addrop-ga", "addrop", "seed3"}
    assert found["config"]["train"]["learning_rate"] == 2e-5
    assert found["config"]["tags"]["run_id"] == "abc123"
    assert found["summary"]["status"] == "done"


class _Flaky(Tracker):
    """A tracker that breaks on its second log call."""

    name = "flaky"

    def __init__(self, run: RunInfo) -> None:
        self.calls = 0

    def log(self, metrics, step) -> None:
        self.calls += 1
        if self.calls == 2:
            raise ConnectionError("server went away")

    def finish(self, status: str) -> None:
        raise AssertionError("a failed tracker is not closed again")


class _Steady(Tracker):
    name = "steady"

    def __init__(self, run: RunInfo) -> None:
        self.seen: list[int] = []
        self.closed: list[str] = []
        _Steady.last = self

    def log(self, metrics, step) -> None:
        self.seen.append(step)

    def finish(self, status: str) -> None:
        self.closed.append(status)


def test_a_missing_tracker_is_one_line_and_the_others_go_on(run: RunInfo, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    monkeypatch.setitem(tracking.BUILDERS, "steady", _Steady)
    lines: list[str] = []
    trackers = start_trackers(["wandb", "steady"], run, lines.append)
    assert lines == [
        "tracking: wandb is not installed (wandb); pip install -e '.[wandb]' in a clone of "
        "addrop, pip install 'addrop-cli[wandb]' otherwise, or drop it "
        "from tracking"
    ]
    assert [t.name for t in trackers] == ["steady"]


def test_a_tracker_failing_mid_run_is_dropped_with_one_line(run: RunInfo, monkeypatch) -> None:
    monkeypatch.setattr(tracking, "BUILDERS", {"flaky": _Flaky, "steady": _Steady})
    notes = _Notes()
    loggers = Loggers(required=[notes], optional=start_trackers(["flaky", "steady"], run, print))
    for step in range(1, 5):
        loggers.on_step(_step(step))
    loggers.on_end("done", "")
    assert notes.lines == [
        "tracking: flaky failed (log: ConnectionError: server went away); stopped it, the run "
        "goes on"
    ]
    assert _Steady.last.seen == [1, 2, 3, 4] and _Steady.last.closed == ["done"]


def test_a_tracker_failing_to_start_is_one_line(run: RunInfo, monkeypatch) -> None:
    def broken(run: RunInfo):
        raise PermissionError("tracking/ is read-only")

    monkeypatch.setattr(tracking, "BUILDERS", {"tensorboard": broken})
    lines: list[str] = []
    assert start_trackers(["tensorboard"], run, lines.append) == []
    assert lines == [
        "tracking: tensorboard did not start (PermissionError: tracking/ is read-only); the run "
        "goes on without it"
    ]


# ---------------------------------------------------------------------------------------------
# Through `addrop run`: the training loop's loggers, train.log
# ---------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "experiments" / "smoke.yaml"
ADDROP_ONLY = "methods={addrop: {attribution: gradient, p: 0.3, q: 0.3, layers: all}}"
ONE_RUN = ["tasks=[sst2]", "seeds=[1]", "train.epochs=2", ADDROP_ONLY, "--plain"]


def _run(capsys, results: Path, *args: str):
    result = run_cli(capsys, "run", SMOKE, *ONE_RUN, "--results", results, *args)
    assert result.code == 0, result.out + result.err
    (folder,) = [p for p in (results / "smoke" / "runs").iterdir() if p.is_dir()]
    epochs = [json.loads(line) for line in (folder / "epochs.jsonl").read_text().splitlines()]
    return result, folder, epochs


@pytest.mark.parametrize("every", [1, 4])
def test_a_run_logs_steps_and_evaluations_to_every_installed_tracker(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch, every: int
) -> None:
    """Training metrics every ``tracking.log_every_steps`` steps, evaluations always."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    names = [n for n, t in TRACKERS.items() if importlib.util.find_spec(t.module)]
    if not names:
        pytest.skip("no tracker installed (pip install 'addrop-cli[tracking]')")
    flags = [arg for name in names for arg in ("--track", name)]
    result, folder, epochs = _run(capsys, tmp_path, *flags, f"tracking.log_every_steps={every}")
    assert "tracking:" not in result.out  # no tracker problem
    (where,) = [line for line in result.out.splitlines() if line.startswith("trackers: ")]
    for name in names:  # once per experiment, each tracker with its place
        assert f"{name} -> {tmp_path / 'smoke' / 'tracking'}" in where
    steps = epochs[-1]["step"]
    dev = {e["step"]: e["dev"]["accuracy"] for e in epochs}
    tags = {"run_id": folder.name, "task": "sst2", "variant": "addrop", "seed": "1"}
    tracked = tmp_path / "smoke" / "tracking"
    logged: dict[str, dict[str, dict[int, float]]] = {}
    if "tensorboard" in names:
        (events,) = (tracked / "tensorboard").iterdir()
        logged["tensorboard"] = tensorboard_scalars(events)
        assert tags.items() <= tensorboard_hparams(events).items()
        assert "best_dev/accuracy" in tensorboard_hparam_metrics(events)
    if "mlflow" in names:
        (found,) = mlflow_runs(mlflow_store(tmp_path / "smoke"), "smoke")
        logged["mlflow"] = found["metrics"]
        assert tags.items() <= found["tags"].items() and found["status"] == "FINISHED"
        assert found["params"]["train.lr"] == "0.001"  # the resolved spec
    if "wandb" in names:
        found = wandb_offline_run(tracked / "wandb")
        history = found["history"]
        keys = {k for row in history.values() for k in row}
        logged["wandb"] = {k: {s: r[k] for s, r in history.items() if k in r} for k in keys}
        assert found["config"]["tags"] | tags == found["config"]["tags"]
    for name, metrics in logged.items():
        # per step: loss, learning rate, samples/s; dropped fraction per layer in AD-DROP epochs
        for key in ("train/loss", "train/lr", "train/samples_per_s"):
            assert sorted(metrics[key]) == list(range(every, steps + 1, every)), (name, key)
        for layer in (0, 1):  # the tiny BERT's two layers; epoch 1 is the AD-DROP epoch
            fractions = metrics[f"train/dropped_frac_l{layer}"]
            logged = [s for s in range(epochs[0]["step"] + 1, steps + 1) if s % every == 0]
            assert sorted(fractions) == logged, name
            assert all(0 < f < 1 for f in fractions.values()), name
        # per evaluation: every dev metric, at the evaluation's step, as stored in epochs.jsonl
        assert metrics["dev/accuracy"] == pytest.approx(dev, rel=1e-6), name


def test_train_log_holds_the_plain_lines(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    result, folder, _ = _run(capsys, tmp_path)
    header, *log = (folder / "train.log").read_text().splitlines()
    assert header.startswith("==== attempt 1: ")  # one header line per attempt
    messages = [line.split(" ", 2)[2] for line in log]  # after the date and time
    printed = [line for line in result.out.splitlines() if "sst2/addrop/seed1" in line]
    assert messages == printed and len(messages) == 4  # started, 2 evaluations, done


def test_a_tracker_failing_mid_run_leaves_the_run_done(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setitem(tracking.BUILDERS, "tensorboard", _Flaky)
    result, folder, _ = _run(capsys, tmp_path, "--track", "tensorboard")
    line = "tracking: flaky failed (log: ConnectionError: server went away); stopped it"
    assert result.out.count(line) == 1
    assert (folder / "DONE").exists() and line in (folder / "train.log").read_text()


def test_a_missing_tracker_is_one_line_before_the_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    result, folder, _ = _run(capsys, tmp_path, "--track", "wandb")
    assert result.out.count("tracking: wandb is not installed") == 1
    assert "pip install 'addrop-cli[wandb]' otherwise (runs go on without it)" in result.out
    assert (folder / "DONE").exists() and not (tmp_path / "smoke" / "tracking").exists()


# ---------------------------------------------------------------------------------------------
# A tracking server that does not answer: checked once, before the first run (local sockets)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def local_only(monkeypatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # straight to the local socket, through no proxy


@pytest.mark.usefixtures("local_only")
def test_a_silent_server_is_one_line_in_the_timeout(monkeypatch) -> None:
    from silent_server import silent_address

    address = silent_address()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", address.replace("//", "//user:secret@"))
    (line,) = servers.silent_servers(["tensorboard", "mlflow"], timeout=0.2)
    assert f"MLFLOW_TRACKING_URI={address} does not answer (no answer within 0.2 s)" in line
    assert "secret" not in line
    assert servers.silent_servers(["tensorboard"], timeout=0.2) == []  # mlflow not tracked


@pytest.mark.usefixtures("local_only")
def test_a_server_that_answers_with_any_status_passes(monkeypatch, tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for path in ("/", "/missing"):  # 200, and 404: both an answer
            address = f"http://127.0.0.1:{server.server_port}{path}"
            monkeypatch.setenv("MLFLOW_TRACKING_URI", address)
            assert servers.silent_servers(["mlflow"], timeout=2) == []
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.usefixtures("local_only")
def test_a_refused_or_malformed_address_is_one_line(monkeypatch) -> None:
    import socket

    with socket.socket() as closed:  # a port with nobody listening
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    for address, why in [
        (f"http://127.0.0.1:{port}", "refused"),
        ("http://127.0.0.1:notaport", "port"),
    ]:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", address)
        (line,) = servers.silent_servers(["mlflow"], timeout=1)
        assert f"{address} does not answer (" in line and why in line.lower(), line


def test_a_local_store_is_not_checked(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////nonexistent/mlflow.db")
    assert servers.silent_servers(["mlflow"], timeout=0.2) == []
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert servers.silent_servers(["mlflow"], timeout=0.2) == []


def test_one_registry_names_the_trackers_the_spec_accepts_and_the_classes_that_run_them() -> None:
    """Tracker names live in spec/trackers.py only: the schema accepts exactly those, each has
    one tracker class, and each extra is one pyproject declares."""
    from typing import get_args

    import tomllib

    field = TrackingSpec.model_fields["to"].annotation
    assert get_args(get_args(field)[0]) == TRACKERS.names
    assert ExperimentSpec.model_fields["tracking"].annotation is TrackingSpec
    assert tuple(tracking.BUILDERS) == TRACKERS.names
    extras = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    declared = extras["project"]["optional-dependencies"]
    assert {t.extra for t in TRACKERS.values()} <= set(declared)


def test_one_name_per_quantity(tmp_path: Path, monkeypatch) -> None:
    """The run's identity block (a repeat of its settings) is not logged as parameters again;
    W&B's tags hold each word once (a baseline's variant and method are both "baseline"); the
    epoch's training throughput is named for what it is."""
    from addrop_cli.store.records import EpochRecord

    names = [n for n in ("mlflow", "wandb") if importlib.util.find_spec(n)]
    if not names:
        pytest.skip("neither mlflow nor wandb installed")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    exp = tmp_path / "exp"
    config = CONFIG | {"identity": {"task": "rte", "train": {"learning_rate": 2e-5}}}
    run = RunInfo("r1", "exp", "rte", "baseline", "baseline", 1, exp / "runs/r1", exp, config)
    run.folder.mkdir(parents=True)
    trackers = start_trackers(names, run, print)
    assert [t.name for t in trackers] == names
    for tracker in trackers:
        tracker.on_end("done", "")
    if "mlflow" in names:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_store(exp))
        (found,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
        assert not [k for k in found.data.params if k.startswith("identity.")]
        assert found.data.params["train.learning_rate"] == "2e-05"
    if "wandb" in names:
        tags = wandb_offline_run(exp / "tracking" / "wandb")["tags"]
        assert sorted(tags) == ["baseline", "rte", "seed1"]
    record = EpochRecord(epoch=0, step=4, dev={"accuracy": 0.5}, select={}, train_loss=0.7,
                         train_samples_per_s=80.0)  # fmt: skip
    logged = tracking.eval_metrics(record)
    assert logged["eval/train_samples_per_s"] == 80.0 and "eval/samples_per_s" not in logged


def test_method_statistics_are_read_only_for_the_steps_a_tracker_logs(
    run: RunInfo, monkeypatch
) -> None:
    """Reading them is a device copy per step: a tracker logging every 4 steps asks for them
    before steps 4 and 8 only (after a resume from step 5, before 8)."""
    monkeypatch.setitem(tracking.BUILDERS, "steady", _Steady)
    for resume, asked in [(None, [4, 8]), (5, [8])]:
        every4 = dataclasses.replace(run, log_every_steps=4, resume_step=resume)
        (tracker,) = start_trackers(["steady"], every4, print)
        wanted = []
        for step in range((resume or 0) + 1, 9):
            if tracker.wants_method_stats:
                wanted.append(step)
            tracker.on_step(_step(step))
        assert wanted == asked and tracker.seen == asked
