"""`addrop run` end to end on the tiny model and the bundled sample: store, skip, resume, fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_cli

from addrop_cli.data.tasks import get_task
from addrop_cli.engine.loop import run_one
from addrop_cli.report.frame import curve_frame
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand
from addrop_cli.store.reader import load_runs

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"
ONE_TASK = ["tasks=[sst2]", "seeds=[1]", "train.epochs=2"]


def run_dirs(results: Path) -> dict[str, Path]:
    runs = {}
    for folder in (results / "smoke" / "runs").iterdir():
        if folder.is_dir():
            config = json.loads((folder / "run.json").read_text())
            runs[f"{config['task']}/{config['variant']}/{config['seed']}"] = folder
    return runs


def test_run_stores_every_run_and_skips_them_next_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *ONE_TASK)
    assert first.code == 0, first.err + first.out
    runs = run_dirs(tmp_path)
    assert set(runs) == {"sst2/baseline/1", "sst2/addrop/1"}
    for folder in runs.values():
        for name in ("run.json", "epochs.jsonl", "metrics.json", "predictions.json", "env.json"):
            assert (folder / name).is_file(), name
        assert (folder / "DONE").is_file()
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "done" and metrics["format"] == 2
        assert 0.0 <= metrics["best"]["dev"]["accuracy"] <= 1.0
        epochs = [json.loads(line) for line in (folder / "epochs.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in epochs] == [1, 2]  # counted from 1, as printed below
        assert metrics["best_epoch"] in (1, 2)
        predictions = json.loads((folder / "predictions.json").read_text())["dev"]
        assert len(predictions["guids"]) == len(predictions["predictions"]) == 80
    log = (runs["sst2/baseline/1"] / "train.log").read_text()  # the console's lines
    assert " epoch 1: " in log and " epoch 2: " in log and " epoch 0: " not in log
    baseline = [
        r for r in load_runs(tmp_path / "smoke") if r.path.name == runs["sst2/baseline/1"].name
    ]
    assert list(curve_frame(baseline)["x"]) == [1.0, 2.0]  # the plots' epoch axis
    addrop_epochs = (runs["sst2/addrop/1"] / "epochs.jsonl").read_text().splitlines()
    odd = json.loads(addrop_epochs[1])["method"]  # cross-tuning: AD-DROP in epoch 1 only
    assert odd["addrop_epoch"] == 1 and 0 < odd["dropped_frac_l0"] < 0.2
    assert json.loads(addrop_epochs[0])["method"]["addrop_epoch"] == 0

    done_times = {k: (f / "DONE").stat().st_mtime_ns for k, f in runs.items()}
    again = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *ONE_TASK)
    assert again.code == 0
    assert "2 already in" in again.out and "0 to run" in again.out
    assert {k: (f / "DONE").stat().st_mtime_ns for k, f in runs.items()} == done_times

    # An interrupted run (no DONE marker, a half-written log) is started again cleanly.
    killed = runs["sst2/addrop/1"]
    (killed / "DONE").unlink()
    (killed / "epochs.jsonl").write_text('{"epoch": 0, "trunc')
    resumed = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *ONE_TASK)
    assert resumed.code == 0
    assert "1 already in" in resumed.out and "1 to run" in resumed.out
    assert (killed / "DONE").is_file()
    lines = (killed / "epochs.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert (runs["sst2/baseline/1"] / "DONE").stat().st_mtime_ns == done_times["sst2/baseline/1"]


def test_failed_run_is_recorded_and_the_rest_complete(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from addrop_cli.methods.base import StepOutput
    from addrop_cli.methods.baseline import BaselineMethod

    original = BaselineMethod.training_step

    def nan_step(self, model, batch):  # type: ignore[no-untyped-def]
        out = original(self, model, batch)
        return StepOutput(loss=out.loss * float("nan"), logits=out.logits)

    monkeypatch.setattr(BaselineMethod, "training_step", nan_step)
    result = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *ONE_TASK)
    assert result.code == 1  # some runs failed
    runs = run_dirs(tmp_path)
    failed = runs["sst2/baseline/1"]
    assert (failed / "FAILED").is_file() and not (failed / "DONE").exists()
    assert "NonFiniteLoss" in (failed / "FAILED").read_text()
    assert json.loads((failed / "metrics.json").read_text())["status"] == "failed"
    assert (runs["sst2/addrop/1"] / "DONE").is_file()
    assert "1 failed" in result.out

    monkeypatch.setattr(BaselineMethod, "training_step", original)
    retried = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *ONE_TASK)
    assert retried.code == 0 and "1 to run" in retried.out
    assert (failed / "DONE").is_file() and not (failed / "FAILED").exists()


def test_ctrl_c_keeps_finished_runs_and_says_what_is_left(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import addrop_cli.engine.loop as train

    calls = {"n": 0}
    real_run_one = train.run_one

    def interrupt_second(run, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_run_one(run, **kwargs)

    monkeypatch.setattr(train, "run_one", interrupt_second)
    result = run_cli(
        capsys,
        "run",
        SMOKE,
        "--plain",
        "--results",
        tmp_path,
        "tasks=[sst2]",
        "seeds=[1,2]",
        "train.epochs=1",
    )
    assert result.code == 130
    assert "interrupted: 3 runs left" in result.out
    done = [f for f in run_dirs(tmp_path).values() if (f / "DONE").exists()]
    assert len(done) == 1


def test_training_learns_a_learnable_task() -> None:
    spec = load_spec(SMOKE, ["tasks=[sst2]", "seeds=[3]", "train.epochs=8"])
    run = next(r for r in expand(spec, SMOKE.parent) if r.variant == "baseline")
    outcome = run_one(run)
    # 80 balanced dev sentences: chance is 0.5; the sample's words decide the label
    assert outcome.metrics.best.dev["accuracy"] >= 0.75
    losses = [e.train_loss for e in outcome.epochs]
    assert losses[-1] < losses[0]


def test_same_seed_same_metrics_different_seed_differs() -> None:
    spec = load_spec(SMOKE, ["tasks=[sst2]", "seeds=[1,2]", "train.epochs=2"])
    runs = [r for r in expand(spec, SMOKE.parent) if r.variant == "addrop"]
    a, b = run_one(runs[0]), run_one(runs[0])
    assert a.epochs[-1].train_loss == b.epochs[-1].train_loss
    assert a.metrics.best == b.metrics.best
    assert a.predictions == b.predictions
    c = run_one(runs[1])
    assert c.epochs[-1].train_loss != a.epochs[-1].train_loss


def test_predict_writes_leaderboard_files_from_the_best_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["tasks=[sst2]", "seeds=[1]", "train.epochs=2", "train.save_checkpoint=true"]
    assert run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *args).code == 0
    out = tmp_path / "board"
    result = run_cli(capsys, "predict", SMOKE, *args, f"results_dir={tmp_path}", "--out", out)
    assert result.code == 0, result.err
    lines = (out / "SST-2.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction"
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(i) for i, _ in rows] == list(range(20))  # the sample's test split
    assert {label for _, label in rows} <= {"0", "1"}
    provenance = json.loads((out / "provenance.json").read_text())
    run_id = provenance["SST-2.tsv"]["run_id"]
    assert (tmp_path / "smoke" / "runs" / run_id / "DONE").exists()

    # Any text, from the same checkpoint: dev sentences get the labels stored for them.
    results, run_dir = tmp_path / "smoke", tmp_path / "smoke" / "runs" / run_id
    stored = json.loads((run_dir / "predictions.json").read_text())["dev"]
    dev_rows = (SMOKE.parent / "sample/glue/SST-2/dev.tsv").read_text().splitlines()[1:]
    sentences = {f"dev-{i}": row.split("\t")[0] for i, row in enumerate(dev_rows)}
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\n".join(sentences[g] for g in stored["guids"]) + "\n")
    labelled = run_cli(
        capsys, "predict", results, "--run", run_id, "--file", inputs, "--out", tmp_path / "p.tsv"
    )
    assert labelled.code == 0, labelled.err
    got = [line.split("\t") for line in (tmp_path / "p.tsv").read_text().splitlines()[1:]]
    names = get_task("sst2").label_names
    assert [text for _, text in got] == [sentences[g] for g in stored["guids"]]
    assert [label for label, _ in got] == [names[int(p)] for p in stored["predictions"]]
    one = run_cli(capsys, "predict", results, "--run", run_id, "--text", sentences["dev-0"])
    first = stored["predictions"][stored["guids"].index("dev-0")]
    assert one.code == 0 and f"{names[int(first)]}\t{sentences['dev-0']}" in one.out
    pair = run_cli(capsys, "predict", results, "--run", run_id, "--text", "one\ttwo")
    assert pair.code == 2 and "--text 1: SST-2 takes 1 text(s) per input" in pair.err
    no_run = run_cli(capsys, "predict", results, "--text", "good")
    assert no_run.code == 2 and "need --run ID" in no_run.err
    missing = run_cli(capsys, "predict", results, "--run", run_id, "--file", tmp_path / "no.txt")
    assert missing.code == 2 and "no.txt: cannot read it" in missing.err
    (tmp_path / "empty.txt").write_text("\n")
    empty = run_cli(capsys, "predict", results, "--run", run_id, "--file", tmp_path / "empty.txt")
    assert empty.code == 2 and "nothing to predict" in empty.err
    weights = run_dir / "checkpoint" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # half-written
    damaged = run_cli(capsys, "predict", results, "--run", run_id, "--text", "good")
    assert damaged.code == 2 and "the checkpoint cannot be loaded" in damaged.err
    assert len(damaged.err.strip().splitlines()) == 1


def test_predict_without_checkpoints_says_how_to_get_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = run_cli(capsys, "predict", SMOKE, "tasks=[sst2]", f"results_dir={tmp_path}")
    assert result.code == 2
    assert "train.save_checkpoint=true" in result.err


def compile_runs(compile_: bool) -> list:
    spec = load_spec(SMOKE, [*ONE_TASK, f"train.compile={str(compile_).lower()}"])
    return [r for r in expand(spec, SMOKE.parent) if r.variant == "addrop"]


def test_compile_keeps_the_run_id_and_a_model_it_cannot_compile_runs_as_it_was(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from addrop_cli.models import compiling

    (plain,), (run,) = compile_runs(False), compile_runs(True)
    assert run.run_id == plain.run_id  # compiling does not change what a run computes
    note = "train.compile: testing: running uncompiled"
    monkeypatch.setattr(compiling, "compile_problem", lambda model, device: note)
    with caplog.at_level("WARNING"):
        outcome = run_one(run)
    assert outcome.metrics.compiled is False
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [note]
    assert outcome.metrics.best == run_one(plain).metrics.best


@pytest.mark.slow
def test_a_compiled_run_matches_the_eager_run() -> None:
    (plain,), (run,) = compile_runs(False), compile_runs(True)
    eager, compiled = run_one(plain), run_one(run)
    assert compiled.metrics.compiled is True and eager.metrics.compiled is False
    for a, b in zip(eager.epochs, compiled.epochs, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
    assert eager.metrics.best.dev == pytest.approx(compiled.metrics.best.dev, abs=0.02)


def test_finishing_with_other_workers_and_threads_keeps_one_column_per_variant(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Half an experiment run with --workers 1, the rest with --workers 2 --threads 1: the same
    run ids and spec version, so the report shows one column per variant (it used to split
    each into smoke@<hash>/<variant> columns)."""
    args = ["--plain", "--results", tmp_path, "tasks=[sst2]", "seeds=[1,2]", "train.epochs=1"]
    first = run_cli(capsys, "run", SMOKE, *args, "--workers", "1")
    assert first.code == 0, first.err + first.out
    runs = run_dirs(tmp_path)
    for key in ("sst2/baseline/2", "sst2/addrop/2"):  # as if the first invocation stopped here
        shutil.rmtree(runs[key])
    second = run_cli(capsys, "run", SMOKE, *args, "--workers", "2", "--threads", "1")
    assert second.code == 0, second.err + second.out
    assert "2 to run" in second.out
    assert set(run_dirs(tmp_path)) == set(runs)  # same run ids
    hashes = {json.loads((f / "run.json").read_text())["spec_hash"] for f in runs.values()}
    assert len(hashes) == 1
    report = run_cli(capsys, "report", tmp_path / "smoke", "--format", "csv")
    assert report.code == 0, report.err
    assert "spec versions" not in report.err
    table = "\n".join(p.read_text() for p in (tmp_path / "smoke" / "report").glob("*.csv"))
    assert "baseline" in table and "addrop" in table
    assert "@" not in table  # no smoke@<version>/<variant> columns
