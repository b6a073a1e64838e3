"""Every user mistake we know, with the message and exit code it gets: one test per row.

This list is the source of the table in docs/mistakes.md (tests/house/test_docs.py checks that they
agree). To rewrite that table from real runs (messages copied from the actual output)::

    PYTHONPATH=tests:tests/cli .venv/bin/python tests/house/test_docs.py --mistakes

Exit codes: 2 for input the user must fix (nothing ran), 1 when runs failed (the rest of the
experiment finished; the reason is in the run's FAILED file and the summary), 0 when the report
goes on with a warning.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fault_points import install

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
SMOKE = "experiments/smoke.yaml"
BAD = TESTS / "fixtures" / "bad"
STORE = TESTS / "fixtures" / "store" / "glue-small"
QUICK = ("tasks=[sst2]", "seeds=[1]", "train.epochs=1", "train.threads=1")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass(frozen=True)
class Mistake:
    """One row: the mistake, the command that makes it, and what addrop answers."""

    id: str
    what: str
    args: tuple[str, ...]
    """CLI arguments; ``{tmp}`` is a scratch folder made by ``prepare``."""
    code: int
    expect: str
    """Part of the message line (stderr for exit 2, stdout for warnings and failed runs)."""
    prepare: Callable[[Path], None] | None = None
    fault: Callable[[pytest.MonkeyPatch], None] | None = None
    """A simulated fault (full disk) patched in before the command."""
    skip: str = ""
    """Why the row cannot be reproduced here (empty: it can)."""
    elsewhere: str = ""
    """The real-process test that checks this row (two processes, a signal, a closed pipe):
    the row documents its message, that test reproduces it."""
    says: str = "warning: "
    """How the line starts when the exit code is 0 (the report went on, or the input is fine)."""

    def argv(self, tmp: Path) -> list[str]:
        return [a.replace("{tmp}", str(tmp)) for a in self.args]


# --------------------------------------------------------------------------- preparations


def _write(name: str, text: str) -> Callable[[Path], None]:
    def prepare(tmp: Path) -> None:
        (tmp / name).write_text(text)

    return prepare


def _spec_with(old: str, new: str) -> Callable[[Path], None]:
    """A copy of the smoke spec with one line changed, its paths made absolute."""

    def prepare(tmp: Path) -> None:
        text = (ROOT / SMOKE).read_text().replace(old, new)
        text = text.replace("assets/tiny-bert", str(ROOT / "experiments/assets/tiny-bert"))
        text = text.replace("sample/glue", str(ROOT / "experiments/sample/glue"))
        (tmp / "spec.yaml").write_text(text)

    return prepare


def _experiment_json(text: str) -> Callable[[Path], None]:
    def prepare(tmp: Path) -> None:
        (tmp / "results" / "smoke").mkdir(parents=True)
        (tmp / "results" / "smoke" / "experiment.json").write_text(text)

    return prepare


def _store(change: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    """A copy of the committed fixture store at {tmp}/store, changed by ``change``."""

    def prepare(tmp: Path) -> None:
        shutil.copytree(STORE, tmp / "store")
        if change is not None:
            change(tmp / "store")

    return prepare


def _first_run(store: Path) -> Path:
    """The first finished run (DONE) of the store."""
    return sorted(p for p in (store / "runs").iterdir() if (p / "DONE").is_file())[0]


def _corrupt(name: str, text: str) -> Callable[[Path], None]:
    return _store(lambda store: (_first_run(store) / name).write_text(text))


def _second_spec_version(store: Path) -> None:
    """Seed 1 of AD-DROP re-run under a new spec version with another learning rate."""
    for folder in (store / "runs").iterdir():
        config = json.loads((folder / "run.json").read_text())
        if config["variant"] == "addrop" and config["seed"] == 1:
            config.update(spec_hash="a" * 16, train={**config["train"], "lr": 3e-5})
            (folder / "run.json").write_text(json.dumps(config))


def _read_only_folder(tmp: Path) -> None:
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)


def _env(name: str, value: str) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda monkeypatch: monkeypatch.setenv(name, value)


def _silent_mlflow_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLFLOW_TRACKING_URI at a local socket that takes connections and never replies."""
    from silent_server import silent_address

    monkeypatch.setenv("MLFLOW_TRACKING_URI", silent_address())
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # straight to it, through no proxy


def _laughs(tmp: Path) -> None:
    """A "billion laughs": nine aliases of nine aliases ..., 9**9 values once expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    (tmp / "spec.yaml").write_text("\n".join(lines) + "\n")


def _merge_keys(tmp: Path) -> None:
    """The smoke spec with a variant that takes AD-DROP's settings through `<<: *addrop`."""
    _spec_with("  addrop:\n", "  addrop: &addrop\n")(tmp)
    with open(tmp / "spec.yaml", "a") as f:
        f.write("  addrop-random:\n    <<: *addrop\n    attribution: random\n")


def _variant_named(name: str) -> Callable[[Path], None]:
    def prepare(tmp: Path) -> None:
        _spec_with("  baseline: {}", f"  {json.dumps(name)}: {{method: baseline}}")(tmp)

    return prepare


PQ_SWEEP = ("--grid", "methods.addrop.p=[0.1,0.5]", "sweep.report_seeds=[3]")


def _foreign_study(tmp: Path) -> None:
    """A study database at {tmp}/results/smoke/sweep/ that another spec's search made."""
    import optuna

    folder = tmp / "results" / "smoke" / "sweep"
    folder.mkdir(parents=True)
    storage = f"sqlite:///{folder / 'study.db'}"
    study = optuna.create_study(study_name="sst2/addrop", storage=storage)
    study.set_user_attr("addrop_fingerprint", "another spec")


def _damaged_study(tmp: Path) -> None:
    """A study database at {tmp}/results/smoke/sweep/ that is not a database."""
    folder = tmp / "results" / "smoke" / "sweep"
    folder.mkdir(parents=True)
    (folder / "study.db").write_text("not a database\n" * 100)


def _stsb_score(score: str) -> Callable[[Path], None]:
    """A copy of the sample GLUE folder whose first STS-B training row scores ``score``."""

    def prepare(tmp: Path) -> None:
        shutil.copytree(ROOT / "experiments" / "sample" / "glue", tmp / "glue")
        path = tmp / "glue" / "STS-B" / "train.tsv"
        lines = path.read_text().splitlines()
        fields = lines[1].split("\t")
        lines[1] = "\t".join([*fields[:-1], score])
        path.write_text("\n".join(lines) + "\n")

    return prepare


def _hub_cached() -> bool:
    from addrop_cli.data.hub import offline_problem
    from addrop_cli.data.tasks import get_task

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return offline_problem(get_task("sst2")) is None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    install({"disk_full": "*"}, monkeypatch.setattr)


# --------------------------------------------------------------------------- the table

MISTAKES = [
    # --- the spec file
    Mistake("spec-missing", "spec file does not exist", ("run", "nope.yaml"), 2,
            "nope.yaml: file not found"),
    Mistake("spec-yaml-syntax", "spec is not valid YAML", ("run", "{tmp}/spec.yaml"), 2,
            "malformed YAML", _write("spec.yaml", "name: [unclosed\n")),
    Mistake("spec-duplicate-key", "a key appears twice", ("run", "{tmp}/spec.yaml"), 2,
            "duplicate key 'name' (first on line 1)", _write("spec.yaml", "name: a\nname: b\n")),
    Mistake("spec-not-a-mapping", "spec is a list, not keys", ("run", "{tmp}/spec.yaml"), 2,
            "the top level must be a mapping", _write("spec.yaml", "- a\n- b\n")),
    Mistake("spec-unknown-key", "misspelt key in the spec", ("run", "{tmp}/spec.yaml", *QUICK),
            2, "train.epochz: unknown key; did you mean 'epochs'?",
            _spec_with("  epochs: 10", "  epochz: 10")),
    Mistake("spec-wrong-type", "a list given as a word", ("run", SMOKE, "seeds=one"), 2,
            "seeds (from override seeds=one): expected a list, got 'one'; write [one]"),
    Mistake("spec-out-of-range", "parameter out of range", ("run", SMOKE, "methods.addrop.p=1.5"),
            2, "methods.addrop.p (from override methods.addrop.p=1.5): must be in (0, 1]"),
    Mistake("spec-duplicate-seeds", "the same seed twice", ("run", SMOKE, "seeds=[1,1]"), 2,
            "seeds must be distinct"),
    Mistake("spec-unknown-task", "task name misspelt", ("run", SMOKE, "tasks=[sst3]"), 2,
            "unknown task 'sst3'; did you mean 'sst2'"),
    Mistake("spec-unknown-method", "unknown method", ("run", SMOKE, "methods.addrop.method=magic"),
            2, "unknown method 'magic' (methods: baseline, dropout, addrop, rdrop, childtuning, "
            "mixout)"),
    Mistake("spec-unknown-tracker", "tracker name misspelt",
            ("run", SMOKE, "tracking=[tensorbord]"), 2,
            "got 'tensorbord'; expected 'tensorboard', 'mlflow' or 'wandb'"),
    Mistake("tracking-interval-zero", "trackers asked to log every 0 steps",
            ("run", SMOKE, "tracking.log_every_steps=0"), 2,
            "tracking.log_every_steps (from override tracking.log_every_steps=0): must be >= 1"),
    Mistake("track-export-unknown-tracker", "addrop track --to names no tracker",
            ("track", "results/smoke", "--to", "mlfow"), 2,
            "--to: unknown tracker 'mlfow' (did you mean 'mlflow'?); known: tensorboard, "
            "mlflow, wandb"),
    Mistake("track-unknown-tracker", "--track names no tracker",
            ("run", SMOKE, "--track", "wandbb"), 2,
            "--track: unknown tracker 'wandbb' (did you mean 'wandb'?); known: tensorboard, "
            "mlflow, wandb"),
    Mistake("tracking-server-silent", "an MLflow tracking server that does not answer",
            ("run", SMOKE, *QUICK, "--track", "mlflow"), 2,
            "does not answer (no answer within 3 s); start it, point MLFLOW_TRACKING_URI at one "
            "that answers, or drop mlflow from tracking", fault=_silent_mlflow_server,
            skip="" if importlib.util.find_spec("mlflow") else "mlflow is not installed"),
    Mistake("spec-variant-without-method", "variant name that is not a method, no method: key",
            ("run", SMOKE, "methods.mydrop.p=0.1"), 2, "say which method this variant runs"),
    Mistake("spec-variant-train-unknown", "a variant's own train setting misspelt",
            ("run", SMOKE, "methods.baseline.train.lrr=1e-4"), 2,
            "methods.baseline.train.lrr (from override methods.baseline.train.lrr=1e-4): not a "
            "train setting"),
    Mistake("rdrop-negative-alpha", "an R-Drop weight below 0",
            ("run", SMOKE, "methods.rd.method=rdrop", "methods.rd.alpha=-1"), 2,
            "methods.rd.alpha (from override methods.rd.alpha=-1): must be >= 0.0, got -1"),
    Mistake("childtuning-reserve-zero", "a Child-Tuning reserve of 0 (nothing would train)",
            ("run", SMOKE, "methods.ct.method=childtuning", "methods.ct.reserve=0"), 2,
            "methods.ct.reserve (from override methods.ct.reserve=0): must be > 0.0, got 0"),
    Mistake("childtuning-reserve-above-one", "a Child-Tuning reserve above 1",
            ("run", SMOKE, "methods.ct.method=childtuning", "methods.ct.reserve=1.5"), 2,
            "methods.ct.reserve (from override methods.ct.reserve=1.5): must be <= 1.0, got 1.5"),
    Mistake("mixout-p-one", "a Mixout probability of 1 (the model would never move)",
            ("run", SMOKE, "methods.mx.method=mixout", "methods.mx.p=1"), 2,
            "methods.mx.p (from override methods.mx.p=1): must be in [0, 1), got 1"),
    Mistake("mixout-p-negative", "a Mixout probability below 0",
            ("run", SMOKE, "methods.mx.method=mixout", "methods.mx.p=-0.1"), 2,
            "methods.mx.p (from override methods.mx.p=-0.1): must be in [0, 1), got -0.1"),
    Mistake("spec-layer-out-of-range", "AD-DROP layer the model does not have",
            ("run", SMOKE, "methods.addrop.layers=[0,7]"), 2,
            "index 7 is out of range", ),
    Mistake("factor-unknown-path", "a factor over a setting that does not exist",
            ("run", SMOKE, "factors.data.train_sizes=[500,1000]"), 2,
            "factors.data.train_sizes: data has no setting 'train_sizes'; "
            "did you mean 'train_size'?"),
    Mistake("factor-no-values", "a factor with an empty list of values",
            ("run", SMOKE, "factors.data.train_size=[]"), 2,
            "factors.data.train_size: no values; give at least one"),
    Mistake("factor-repeated-value", "a factor that lists a value twice",
            ("run", SMOKE, "factors.data.train_size=[500,500]"), 2,
            "factors.data.train_size: the value 500 is listed twice; list each value once"),
    Mistake("factor-over-an-axis", "a factor over seeds, tasks or methods",
            ("run", SMOKE, "factors.seeds=[[1],[2]]"), 2,
            "factors.seeds: seeds are already an axis of the run matrix; list the values "
            "under seeds:"),
    Mistake("factor-bad-value", "a factor value the setting refuses",
            ("run", SMOKE, "factors.data.train_size=[0,500]"), 2,
            "factors.data.train_size: value 0: must be > 0.0, got 0; change the factor's values"),
    Mistake("factor-with-a-sweep", "addrop sweep of a spec with factors",
            ("sweep", SMOKE, "sweep.grid.methods.addrop.p=[0.1,0.3]", "sweep.protocol=paper",
             "factors.data.train_size=[16,32]"), 2,
            "factors: addrop sweep does not cross a search with factors"),
    Mistake("only-unknown-key", "addrop run --only names no axis of the run matrix",
            ("run", SMOKE, "--only", "sed=1"), 2,
            "--only sed=1: experiments/smoke.yaml has no axis 'sed'; did you mean 'seed'?"),
    Mistake("only-value-not-in-spec", "addrop run --only picks a value the spec does not run",
            ("run", SMOKE, "--only", "seed=7"), 2,
            "--only seed=7: experiments/smoke.yaml does not run seed 7 (its seed values: 1, 2)"),
    # --- the command line and overrides
    Mistake("cli-two-specs", "two spec files", ("run", SMOKE, SMOKE), 2,
            "expected one spec file and key=value overrides, got 2 files"),
    Mistake("cli-no-spec", "no spec file at all", ("run",), 2, "Missing argument 'args'"),
    Mistake("cli-unknown-option", "unknown option", ("run", SMOKE, "--bogus"), 2,
            "No such option: --bogus"),
    Mistake("override-unknown-key", "misspelt override key", ("run", SMOKE, "train.epochz=1"), 2,
            "train.epochz (from override train.epochz=1): unknown key; did you mean 'epochs'?"),
    Mistake("override-bad-value", "override value of the wrong type",
            ("run", SMOKE, "train.lr=fast"), 2,
            "train.lr (from override train.lr=fast): input should be a valid number"),
    Mistake("override-no-key", "override without a key", ("run", SMOKE, "=3"), 2,
            "override '=3': expected key=value with a dotted key path"),
    # --- data files
    Mistake("data-glue-dir-missing", "GLUE folder does not exist",
            ("run", SMOKE, *QUICK, "data.glue_dir=/no/such/folder"), 2,
            "/no/such/folder: GLUE folder not found"),
    Mistake("data-task-missing", "task not in the GLUE folder",
            ("run", SMOKE, "tasks=[qqp]", f"data.glue_dir={BAD / 'missing_file'}"), 2,
            "QQP is not in this GLUE folder"),
    Mistake("data-file-missing", "a split file is missing",
            ("run", SMOKE, *QUICK, f"data.glue_dir={BAD / 'missing_file'}"), 2,
            "SST-2/dev.tsv: file not found"),
    Mistake("data-missing-column", "file lacks a column the task needs",
            ("run", SMOKE, *QUICK, f"data.glue_dir={BAD / 'missing_column'}"), 2,
            "SST-2/train.tsv:1: missing column 'sentence'"),
    Mistake("data-unknown-label", "a row has a label the task does not know",
            ("run", SMOKE, *QUICK, f"data.glue_dir={BAD / 'unknown_label'}"), 2,
            "SST-2/train.tsv:4: unknown label '2' in column 'label'"),
    Mistake("data-wrong-fields", "a row has too many fields",
            ("run", SMOKE, *QUICK, f"data.glue_dir={BAD / 'wrong_fields'}"), 2,
            "SST-2/train.tsv:3: 3 tab-separated fields, expected 2"),
    Mistake("data-empty-split", "a split has no rows",
            ("run", SMOKE, *QUICK, f"data.glue_dir={BAD / 'empty_split'}"), 2,
            "the train split has no examples"),
    Mistake("data-bad-score", "a regression label is not a number",
            ("run", SMOKE, "tasks=[stsb]", "seeds=[1]", "train.epochs=1", "train.threads=1",
             f"data.glue_dir={BAD / 'bad_score'}"), 2,
            "STS-B/train.tsv:3: label 'five' in column 'score' is not a number"),
    # --- model paths
    Mistake("model-folder-missing", "model folder does not exist",
            ("run", SMOKE, "model.name_or_path=./no-such-model"), 2,
            "folder ./no-such-model does not exist"),
    Mistake("model-package-missing", "model package not installed",
            ("run", SMOKE, "model.name_or_path=package:no_such_pkg"), 2,
            "the package 'no_such_pkg' is not installed"),
    Mistake("model-folder-without-config", "model folder without config.json",
            ("run", SMOKE, "model.name_or_path={tmp}"), 2, "cannot load the config of"),
    Mistake("model-type-unsupported", "a model type AD-DROP cannot hook (T5)",
            ("run", SMOKE, "model.name_or_path={tmp}"), 2,
            "is a 't5' model, which addrop does not support; use a model of type bert",
            prepare=_write("config.json", '{"model_type": "t5"}')),
    Mistake("model-local-layer", "AD-DROP on a ModernBERT sliding-window layer",
            ("run", SMOKE, "model.name_or_path={tmp}", "methods.addrop.layers=[1]"), 2,
            "uses sliding-window attention, which AD-DROP cannot target",
            prepare=_write("config.json", '{"model_type": "modernbert", "num_hidden_layers": 6}')),
    Mistake("model-without-weights", "pretrained: true on a folder without weights",
            ("run", SMOKE, *QUICK, "model.pretrained=true"), 1, "cannot load the weights of"),
    # --- the results folder
    Mistake("results-not-writable", "results folder not writable (sysfs refuses even root)",
            ("run", SMOKE, *QUICK, "--results", "/sys/addrop-results"), 2,
            "cannot write results (Operation not permitted); make the folder writable",
            skip="" if Path("/sys/kernel").is_dir() else "needs Linux sysfs"),
    Mistake("results-read-only", "results folder read-only (chmod 555)",
            ("run", SMOKE, *QUICK, "--results", "{tmp}/ro"), 2,
            "cannot write results (Permission denied)", _read_only_folder,
            skip="root ignores permissions" if IS_ROOT else ""),
    Mistake("results-under-a-file", "results path runs through a file",
            ("run", SMOKE, *QUICK, "--results", "/dev/null/results"), 2,
            "cannot write results (Not a directory)"),
    Mistake("results-disk-full", "disk full while writing (simulated ENOSPC)",
            ("run", SMOKE, *QUICK, "--results", "{tmp}"), 2,
            "disk full (No space left on device)", fault=_disk_full),
    Mistake("results-newer-format", "results written by a newer addrop",
            ("run", SMOKE, *QUICK, "--results", "{tmp}/results"), 2,
            "results format 3, this addrop reads format 2",
            _experiment_json('{"format": 3, "name": "smoke"}')),
    Mistake("results-experiment-json-corrupt", "experiment.json corrupted",
            ("run", SMOKE, *QUICK, "--results", "{tmp}/results"), 2,
            "experiment.json: unreadable", _experiment_json('{"form')),
    # --- reports
    Mistake("report-missing-folder", "report on a folder that does not exist",
            ("report", "{tmp}/nope"), 2, "nope: no such folder"),
    Mistake("report-not-results", "report on a folder that is not results",
            ("report", "{tmp}"), 2, "not a results folder (no runs/ inside)"),
    Mistake("report-no-runs", "report on an experiment with no runs",
            ("report", "{tmp}/store"), 2, "holds no runs",
            _store(lambda s: [shutil.rmtree(p) for p in (s / "runs").iterdir()])),
    Mistake("report-corrupt-metrics", "a DONE run's metrics.json is corrupted",
            ("report", "{tmp}/store", "--no-plots"), 0,
            "metrics.json: unreadable (not JSON", _corrupt("metrics.json", '{"best": {"dev"')),
    Mistake("report-metrics-not-numbers", "a metric in metrics.json is not a number",
            ("report", "{tmp}/store", "--no-plots"), 0, "is not a number: 'high'",
            _corrupt("metrics.json", json.dumps({"best": {"dev": {"accuracy": "high"}},
                                                 "last": {"dev": {"accuracy": 0.5}}}))),
    Mistake("report-corrupt-run-json", "a run's run.json is corrupted",
            ("report", "{tmp}/store", "--no-plots"), 0,
            "run.json: unreadable (not JSON", _corrupt("run.json", "{")),
    Mistake("report-newer-format", "report on results of a newer addrop",
            ("report", "{tmp}/store", "--no-plots"), 2, "store format 3 is newer",
            _store(lambda s: (s / "experiment.json").write_text('{"format": 3}'))),
    Mistake("report-spec-versions", "experiment folder holds runs of two spec versions",
            ("report", "{tmp}/store", "--no-plots"), 0, "holds runs from 2 spec versions",
            _store(_second_spec_version)),
    Mistake("report-unknown-format", "unknown report format", ("report", "{tmp}", "-f", "pdf"),
            2, "--format: unknown format 'pdf'"),
    Mistake("report-bad-epoch", "--epoch not best/last", ("report", "{tmp}", "--epoch", "mid"),
            2, "--epoch: must be best or last"),
    Mistake("report-unknown-reference", "--reference names no variant",
            ("report", "{tmp}/store", "--reference", "nope", "--no-plots"), 2,
            "--reference: no variant 'nope' in these runs", _store()),
    # --- issue 13: concurrency and signals (real processes, in
    # tests/execution/planning/test_concurrency.py)
    Mistake("conc-failed-twice", "two processes over runs that fail, --no-retry-failed",
            ("run", SMOKE, "model.pretrained=true", "--no-retry-failed"), 1,
            "runs: 0 done, <k> skipped, <m> failed (each run attempted once, by one of the two)",
            elsewhere="tests/execution/planning/test_concurrency.py::test_two_processes_never_attempt_a_failed_run_twice"),  # noqa: E501
    Mistake("conc-sigint-pool-parent", "SIGINT to the parent of a worker pool only",
            ("run", SMOKE, "--workers", "2"), 130,
            "interrupted: <n> runs left; run the same command again to finish them (finished runs "
            "are kept and skipped)",
            elsewhere="tests/execution/planning/test_concurrency.py::test_sigint_to_the_pool_parent_stops_new_runs_and_counts_from_the_store"),  # noqa: E501
    Mistake("spec-identical-variants", "two variants with identical parameters",
            ("run", SMOKE, "methods.plain.method=baseline"), 2,
            "variants 'baseline' and 'plain' have identical parameters"),
    Mistake("spec-variants-same-in-effect", "two RD variants whose p*q is the same",
            ("validate", SMOKE, "--no-deep",
             "methods.addrop-rd1={attribution: random, p: 0.2, q: 0.3}",
             "methods.addrop-rd2={attribution: random, p: 0.3, q: 0.2}"), 2,
            "variants 'addrop-rd1' and 'addrop-rd2' have parameters identical in effect"),
    Mistake("spec-inert-setting", "an integrated-gradient setting on a gradient variant",
            ("validate", SMOKE, "--no-deep", "methods.addrop.ig_steps=5"), 0,
            "methods.addrop.ig_steps: has no effect, only integrated gradients use it "
            "(attribution is gradient); remove it"),
    # --- hostile or odd YAML
    Mistake("spec-complex-key", "a YAML key that is a list", ("run", "{tmp}/spec.yaml"), 2,
            "a key that is a sequence (complex key)", _write("spec.yaml", "? [a, b]\n: 1\n")),
    Mistake("spec-deep-nesting", "nesting 100,000 levels deep", ("run", "{tmp}/spec.yaml"), 2,
            "nested more than 64 levels deep",
            _write("spec.yaml", "name: " + "[" * 100_000 + "]" * 100_000 + "\n")),
    Mistake("spec-billion-laughs", "YAML aliases that expand to 9**9 values",
            ("run", "{tmp}/spec.yaml"), 2, "expands to more than 100,000 values", _laughs),
    Mistake("spec-merge-keys", "merge keys (<<: *anchor) are valid YAML",
            ("validate", "{tmp}/spec.yaml", "--no-deep"), 0, "ok ", _merge_keys, says="ok "),
    Mistake("spec-infinite-integer", "an infinite number where an integer goes",
            ("run", SMOKE, "train.epochs=.inf"), 2, "input should be a finite number"),
    Mistake("spec-huge-integer", "a 20-digit seed", ("run", SMOKE, "seeds=[99999999999999999999]"),
            2, "99999999999999999999 is too large a number"),
    Mistake("spec-huge-memory", "10^300 GB of memory per job",
            ("run", SMOKE, "executor.slurm.mem_gb=1e300"), 2, "must be <= 100000"),
    Mistake("results-experiment-json-shape", "experiment.json is JSON of another shape",
            ("run", SMOKE, *QUICK, "--results", "{tmp}/results"), 2,
            "not the experiment.json layout", _experiment_json("[1, 2]")),
    # --- injection into Slurm job scripts
    Mistake("slurm-newline", "a newline in a value that becomes an #SBATCH line",
            ("run", SMOKE, 'executor.slurm.partition="gpu\\n#SBATCH --wrap=id"'), 2,
            "executor.slurm.partition (from override executor.slurm.partition="),
    Mistake("slurm-blank", "a blank in a Slurm partition name",
            ("run", SMOKE, "--partition", "gpu --wrap=id"), 2,
            "holds a newline, blank or control character"),
    Mistake("slurm-extra-key", "an sbatch option name that is not one",
            ("run", SMOKE, 'executor.slurm.extra={"output=/tmp/x --wrap": id}'), 2,
            "is not an sbatch option name"),
    Mistake("slurm-setup-newline", "a newline inside one setup line",
            ("run", SMOKE, 'executor.slurm.setup=["module load x\\nrm -rf ~"]'), 2,
            "holds a newline or control character; give one line per item"),
    Mistake("slurm-no-submitit", "--backend slurm without the slurm extra installed",
            ("run", SMOKE, "--backend", "slurm"), 2,
            "executor.backend: slurm needs submitit; pip install -e '.[slurm]' in a clone",
            fault=lambda monkeypatch: monkeypatch.setitem(sys.modules, "submitit", None)),
    # --- failures knowable before a run starts (pre-flight)
    Mistake("spec-seed-too-large", "a seed beyond 2^32", ("run", SMOKE, "seeds=[4294967296]"), 2,
            "must be <= 4294967295"),
    Mistake("spec-lr-not-finite", "a non-finite learning rate", ("run", SMOKE, "train.lr=.nan"),
            2, "train.lr (from override train.lr=.nan): input should be a finite number"),
    Mistake("preflight-no-cuda", "--device cuda on a machine without CUDA",
            ("run", SMOKE, *QUICK, "--device", "cuda"), 2,
            "train.device: cuda, but no CUDA GPU is visible",
            skip="this machine has CUDA" if _cuda() else ""),
    Mistake("preflight-max-length", "train.max_length beyond the model's positions",
            ("run", SMOKE, *QUICK, "train.max_length=1000"), 2,
            "train.max_length: 1000 tokens, but"),
    Mistake("preflight-heldout-too-large", "a held-out split as large as the training set",
            ("run", SMOKE, *QUICK, "data.heldout=100000"), 2, "data.heldout: 100000 held-out"),
    Mistake("preflight-hub-offline", "Hub data while HF_HUB_OFFLINE is set, not cached",
            ("run", SMOKE, *QUICK, "data.source=hub"), 2,
            "not in the local Hugging Face cache, and HF_HUB_OFFLINE",
            fault=_env("HF_HUB_OFFLINE", "1"),
            skip="nyu-mll/glue sst2 is in this machine's cache" if _hub_cached() else ""),
    # --- nonsense that was accepted
    Mistake("spec-bool-seed", "a boolean as a seed", ("run", SMOKE, "seeds=[true]"), 2,
            "seeds (from override seeds=[true]): expected a number, got true"),
    Mistake("spec-bool-epochs", "a boolean as a count", ("run", SMOKE, "train.epochs=true"), 2,
            "train.epochs (from override train.epochs=true): expected a number, got true"),
    Mistake("spec-bool-method-param", "a boolean as AD-DROP's p",
            ("run", SMOKE, "methods.addrop.p=true"), 2, "p: expected a number, got true"),
    Mistake("spec-empty-tokenizer", "an empty tokenizer name", ("run", SMOKE, "model.tokenizer="),
            2, "model.tokenizer (from override model.tokenizer=): must not be empty"),
    Mistake("spec-train-on-ax", "the test-only diagnostic set as a training task",
            ("run", SMOKE, "tasks=[ax]"), 2, "ax is a test-only set with no training data"),
    Mistake("data-score-out-of-range", "an STS-B score outside 0 to 5",
            ("run", SMOKE, "tasks=[stsb]", "seeds=[1]", "train.epochs=1",
             "data.glue_dir={tmp}/glue"), 2, "is outside STS-B's range 0 to 5", _stsb_score("7.5")),
    Mistake("cli-empty-results", "an empty --results", ("run", SMOKE, "--results", ""), 2,
            "--results: empty path"),
    Mistake("cli-option-not-yaml", "an option value that reads as YAML (--partition null)",
            ("run", SMOKE, "--partition", "null", "--dry-run"), 0, "partition: 'null'",
            says="partition: 'null'"),
    Mistake("sweep-duplicate-points", "a grid value listed twice",
            ("sweep", SMOKE, "--grid", "methods.addrop.p=[0.1,0.1]", "--dry-run"), 2,
            "methods.addrop.p: values must be distinct"),
    Mistake("sweep-trials-zero", "a tpe search of no trials",
            ("sweep", SMOKE, "sweep.search=tpe", "sweep.trials=0", "--dry-run"), 2,
            "sweep.trials (from override sweep.trials=0): must be >= 1, got 0"),
    Mistake("sweep-unknown-sampler", "a search Optuna has no sampler for",
            ("sweep", SMOKE, "sweep.search=bayes", "--dry-run"), 2,
            "sweep.search (from override sweep.search=bayes): got 'bayes'; expected 'grid', "
            "'random', 'tpe' or 'cmaes'"),
    Mistake("sweep-unknown-pruner", "a pruner that is not median or hyperband",
            ("sweep", SMOKE, "sweep.search=tpe", "sweep.pruner=asha", "--dry-run"), 2,
            "sweep.pruner (from override sweep.pruner=asha): got 'asha'; expected 'none', "
            "'median' or 'hyperband'"),
    Mistake("sweep-pruner-with-grid", "a pruner with a grid search",
            ("sweep", SMOKE, *PQ_SWEEP, "sweep.pruner=median", "--dry-run"), 2,
            "sweep.pruner: a grid search plans every point up front and cannot prune; use "
            "search: tpe (or cmaes) with pruner: median, or pruner: none"),
    Mistake("sweep-foreign-study", "a study database another spec's search made",
            ("sweep", SMOKE, "tasks=[sst2]", *PQ_SWEEP, "sweep.search=tpe", "--results",
             "{tmp}/results"),
            2, "study sst2/addrop belongs to another spec", _foreign_study),
    Mistake("sweep-damaged-study", "a study database that is damaged",
            ("sweep", SMOKE, "tasks=[sst2]", *PQ_SWEEP, "sweep.search=tpe", "--results",
             "{tmp}/results"),
            2, "study.db: the study file is damaged and cannot be read", _damaged_study),
    Mistake("sweep-startup-with-grid", "start-up trials for a grid search",
            ("sweep", SMOKE, *PQ_SWEEP, "sweep.startup_trials=3", "--dry-run"), 2,
            "sweep.startup_trials: a grid search has no sampler to steer"),
    Mistake("sweep-warmup-without-pruner", "pruner warm-up epochs with no pruner",
            ("sweep", SMOKE, *PQ_SWEEP, "sweep.search=tpe", "sweep.pruner_warmup_epochs=1",
             "--dry-run"), 2,
            "sweep.pruner_warmup_epochs: applies to pruner: median or hyperband, but the pruner "
            "is none"),
    Mistake("spec-variant-empty-name", "an empty variant name", ("run", "{tmp}/spec.yaml"), 2,
            "variant name '' is not allowed", _variant_named("")),
    Mistake("spec-variant-slash", "a variant name with a path separator",
            ("run", SMOKE, "methods.a/b.method=baseline"), 2, "variant name 'a/b' is not allowed"),
    Mistake("spec-variant-newline", "a variant name with a newline", ("run", "{tmp}/spec.yaml"),
            2, "variant name 'a\\nb' is not allowed", _variant_named("a\nb")),
    # --- messages that misled
    Mistake("msg-markup", "Rich markup and emoji codes in a value",
            ("run", SMOKE, "seeds=:train:[bold]"), 2, "got ':train:[bold]'"),
    Mistake("msg-union-internals", "a value no member of a list-or-'all' field takes",
            ("run", SMOKE, "methods.addrop.layers=foo"), 2,
            "methods.addrop.layers (from override methods.addrop.layers=foo): expected a list or "
            "'all', got 'foo'"),
    Mistake("msg-1e3", "1e3 for an integer (YAML reads it as text)",
            ("run", SMOKE, "train.epochs=1e3"), 2, "YAML reads '1e3' as text, not a number; "
            "write 1000"),
    Mistake("msg-validate-names-spec", "validate over several specs names each problem's spec",
            ("validate", SMOKE, "{tmp}/spec.yaml"), 2,
            "spec.yaml: /no/such/folder: GLUE folder not found",
            _spec_with("sample/glue", "/no/such/folder")),
    Mistake("msg-predict-no-checkpoint", "predict without a run that kept a checkpoint",
            ("predict", SMOKE, "--results", "{tmp}"), 2,
            "and give predict the same --results"),
    Mistake("msg-status-not-results", "status on a folder that is not a results folder",
            ("status", "{tmp}"), 2, "not a results folder"),
    Mistake("msg-done-empty-metrics", "a DONE run with an empty metrics.json",
            ("report", "{tmp}/store", "--no-plots"), 0,
            "unreadable (not JSON: Expecting value at line 1); run skipped; to redo it, delete",
            _corrupt("metrics.json", "")),
    Mistake("msg-report-pipe", "addrop report ... | head (the reader goes early)",
            ("report", "results/smoke", "-f", "markdown", "|", "head", "-1"), 0,
            "(nothing more printed; report.md written)",
            says="",
            elsewhere="tests/cli/test_cli.py::test_report_into_a_closed_pipe_writes_files"),
    Mistake("msg-list-tasks-no-glue", "list tasks with an ADDROP_GLUE_DIR that does not exist",
            ("list", "tasks"), 0, "warning: ADDROP_GLUE_DIR=/no/such/folder: no such folder",
            fault=_env("ADDROP_GLUE_DIR", "/no/such/folder")),
    # --- found by probing again (issue 13, further cases)
    Mistake("probe-sigterm-pool-parent", "SIGTERM to the parent of a worker pool (a supervisor)",
            ("run", SMOKE, "--workers", "2"), 130,
            "interrupted: <n> runs left; run the same command again to finish them (finished runs "
            "are kept and skipped)",
            elsewhere="tests/execution/planning/test_concurrency.py::test_sigint_to_the_pool_parent_stops_new_runs_and_counts_from_the_store[SIGTERM]"),  # noqa: E501
    Mistake("probe-spec-endless", "an endless file as the spec", ("run", "/dev/zero"), 2,
            "/dev/zero: is over 1,000,000 bytes; a spec is a few kilobytes",
            skip="" if Path("/dev/zero").exists() else "needs /dev/zero"),
    Mistake("probe-spec-not-utf8", "a spec that is not UTF-8 text", ("run", "{tmp}/spec.yaml"),
            2, "not UTF-8 text (byte 0: invalid start byte); save the spec as UTF-8 text",
            lambda tmp: (tmp / "spec.yaml").write_bytes(b"\xff\xfe name: x")),
    Mistake("probe-empty-results-dir", "an empty results_dir (it would write into the cwd)",
            ("run", SMOKE, "results_dir="), 2, "results_dir (from override results_dir=): must "
            "not be empty"),
    Mistake("probe-deep-override-key", "an override key path of 103 parts",
            ("run", SMOKE, "sweep.grid." + "a." * 100 + "b=[1]"), 2,
            "a key path of 103 parts; spec keys are a few levels deep"),
    Mistake("probe-custom-task-traversal", "a custom task named ../../x (its cache file name)",
            ("run", SMOKE, 'data.custom_tasks={"../../x": {train: a.tsv, dev: b.tsv, '
             'text_a: s, labels: ["0", "1"]}}', "tasks=[../../x]"), 2,
            "custom task name '../../x' is not allowed"),
    Mistake("probe-workers-huge", "100,000 local worker processes", ("run", SMOKE, "--workers",
            "100000"), 2, "executor.workers (from override executor.workers=\"100000\"): must "
            "be <= 1024"),
    Mistake("probe-sweep-huge", "a grid of 25 million points",
            ("sweep", SMOKE, "--grid", "train.lr={start: 1, stop: 5000, step: 1}", "--grid",
             "train.weight_decay={start: 1, stop: 5000, step: 1}", "sweep.report_seeds=[3]",
             "--dry-run"), 2, "sweep: 5000 x 5000 = 25,000,000 points, more than 100,000"),
    Mistake("probe-run-json-huge-seed", "a run.json whose seed is 1e400 (JSON infinity)",
            ("report", "{tmp}/store", "--no-plots"), 0,
            "run.json: unreadable (seed: input should be a finite number, got inf",
            _corrupt("run.json", '{"task": "sst2", "variant": "baseline", "seed": 1e400}')),
    Mistake("probe-workers-word", "--workers two", ("run", SMOKE, "--workers", "two"), 2,
            "executor.workers (from override executor.workers=\"two\"): expected a whole number "
            "or auto, got 'two'"),
    # --- found by the outside probe (issue 23)
    Mistake("probe-dry-run-layer", "a dry run with an AD-DROP layer the model does not have",
            ("run", SMOKE, "--dry-run", "methods.addrop.layers=[0,7]"), 2,
            "index 7 is out of range"),
    Mistake("probe-predict-damaged-checkpoint", "predict from a half-written checkpoint",
            ("predict", SMOKE, "train.save_checkpoint=true"), 2,
            "error: <run>/checkpoint: the checkpoint cannot be loaded (<reason>); delete the run "
            "folder and run it again",
            elsewhere="tests/execution/inspection/test_predict_damage.py::test_a_damaged_checkpoint_is_one_line"),
    Mistake("probe-pad-multiple-past-positions", "a padding multiple that pads past the "
            "model's positions", ("run", SMOKE, *QUICK, "train.max_length=120",
                                  "train.pad_to_multiple_of=100"), 2,
            "pads the longest batch (train.max_length 120) to 200 tokens"),
    Mistake("reinit-beyond-depth", "re-initialising more layers than the model has",
            ("run", SMOKE, "--dry-run", "train.reinit_layers=3"), 2,
            "train.reinit_layers: 3, but"),
    Mistake("reinit-beyond-depth-variant", "one variant re-initialising more layers than exist",
            ("run", SMOKE, "--dry-run", "methods.deep.method=baseline",
             "methods.deep.train.reinit_layers=3"), 2,
            "methods.deep.train.reinit_layers: 3, but"),
    Mistake("layer-lr-decay-zero", "a layer-wise learning-rate decay of 0",
            ("run", SMOKE, "train.layer_lr_decay=0"), 2,
            "train.layer_lr_decay (from override train.layer_lr_decay=0): must be > 0.0, got 0"),
    Mistake("layer-lr-decay-above-one", "a layer-wise learning-rate decay above 1",
            ("run", SMOKE, "train.layer_lr_decay=1.5"), 2,
            "train.layer_lr_decay (from override train.layer_lr_decay=1.5): must be <= 1.0"),
    Mistake("probe-slurm-runs-per-gpu", "runs per GPU with the Slurm back-end",
            ("run", SMOKE, "executor.backend=slurm", "executor.runs_per_gpu=2"), 2,
            "executor.runs_per_gpu: 2 applies to the local pool"),
    Mistake("probe-runs-per-gpu-zero", "0 runs per GPU (auto is spelled auto)",
            ("run", SMOKE, "--dry-run", "executor.runs_per_gpu=0"), 2,
            "executor.runs_per_gpu (from override executor.runs_per_gpu=0): 0 runs per GPU "
            "cannot run: write auto"),
    Mistake("probe-bool-as-number", "a yes/no setting written as 1",
            ("run", SMOKE, "train.save_checkpoint=1"), 2, "expected true or false, got 1"),
    Mistake("report-out-not-writable", "report --out folder not writable",
            ("report", "{tmp}/store", "--out", "/dev/null/report", "-f", "markdown",
             "--no-plots"), 2, "cannot write", _store()),
]  # fmt: skip


def invoke(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in this process from the project folder: (exit code, stdout, stderr)."""
    from addrop_cli import cli

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, Path.cwd()
    code = 0
    with tempfile.TemporaryDirectory(prefix="addrop-bad-input-") as scratch:
        if argv[:1] in (["run"], ["sweep"]) and "--results" not in argv:
            # runs that get past validation must never write into the checkout's results/
            argv = [*argv, "--results", scratch]
        sys.argv = ["addrop", *argv]
        try:
            os.chdir(ROOT)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = old_argv
            os.chdir(old_cwd)
    return code, out.getvalue(), err.getvalue()


def message(mistake: Mistake, out: str, err: str) -> str:
    """The line that carries the mistake's message."""
    lines = (err if mistake.code == 2 else out + err).splitlines()
    return next((line.strip() for line in reversed(lines) if mistake.expect in line), "")


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_mistake_gets_its_message_and_exit_code(
    mistake: Mistake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if mistake.skip:
        pytest.skip(mistake.skip)
    if mistake.elsewhere:
        pytest.skip(f"real processes: {mistake.elsewhere}")
    if mistake.prepare is not None:
        mistake.prepare(tmp_path)
    if mistake.fault is not None:
        mistake.fault(monkeypatch)
    code, out, err = invoke(mistake.argv(tmp_path))
    monkeypatch.undo()
    assert "Traceback" not in out + err
    said = message(mistake, out, err)
    assert said, f"{mistake.expect!r} not in:\n{out}\n{err}"
    assert code == mistake.code, out + err
    if code == 2 and not mistake.id.startswith("cli-"):  # ours: one line, "error: <where>: ..."
        assert len(err.strip().splitlines()) == 1 and said.startswith("error: "), err
    if code == 1:  # the failed runs are recorded, and the summary says why
        assert said.startswith("failed: "), said
    if code == 0:  # the report goes on and says what it skipped (or the input is fine)
        assert said.startswith(mistake.says), said


def markdown_table() -> str:
    """The docs/mistakes.md table, from real runs of every row (paths shortened)."""
    import tempfile

    rows = [
        "| Mistake | Command (example) | Exit | What addrop says |",
        "|---|---|--:|---|",
    ]
    for mistake in MISTAKES:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            if mistake.elsewhere:
                said, code = mistake.expect, mistake.code
            elif mistake.skip:
                said, code = f"(not reproducible here: {mistake.skip})", mistake.code
            else:
                if mistake.prepare is not None:
                    mistake.prepare(tmp)
                with pytest.MonkeyPatch.context() as patch:
                    if mistake.fault is not None:
                        mistake.fault(patch)
                    code, out, err = invoke(mistake.argv(tmp))
                said = message(mistake, out, err) or "(no message!)"
            command = "addrop " + " ".join(mistake.args)
            rows.append(
                f"| {_short(mistake.what, tmp)} | `{_short(command, tmp)}` | {code} "
                f"| `{_short(said, tmp)}` |"
            )
    return "\n".join(rows)


def _short(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "<tmp>").replace("{tmp}", "<tmp>")
    text = text.replace(str(TESTS / "fixtures"), "tests/fixtures").replace(f"{ROOT}/", "")
    return text.replace("|", "\\|")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(markdown_table())
