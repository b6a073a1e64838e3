"""Every user mistake we know, with the message and exit code it gets: one test per row.

This list is the source of the README table "Mistakes and what addrop says". To print the
table from real runs (messages copied from the actual output)::

    .venv/bin/python tests/test_bad_input.py > /tmp/table.md

Exit codes: 2 for input the user must fix (nothing ran), 1 when runs failed (the rest of the
experiment finished; the reason is in the run's FAILED file and the summary), 0 when the report
goes on with a warning.
"""

from __future__ import annotations

import contextlib
import errno
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

TESTS = Path(__file__).resolve().parent
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
    needs: str = ""
    """A change the lead still has to apply for this row to pass (for the report)."""

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


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


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
            "seeds (from override seeds=one): input should be a valid list"),
    Mistake("spec-out-of-range", "parameter out of range", ("run", SMOKE, "methods.addrop.p=1.5"),
            2, "methods.addrop.p (from override methods.addrop.p=1.5): must be in (0, 1]"),
    Mistake("spec-duplicate-seeds", "the same seed twice", ("run", SMOKE, "seeds=[1,1]"), 2,
            "seeds must be distinct"),
    Mistake("spec-unknown-task", "task name misspelt", ("run", SMOKE, "tasks=[sst3]"), 2,
            "unknown task 'sst3'; did you mean 'sst2'"),
    Mistake("spec-unknown-method", "unknown method", ("run", SMOKE, "methods.addrop.method=magic"),
            2, "unknown method 'magic' (methods: baseline, dropout, addrop)"),
    Mistake("spec-variant-without-method", "variant name that is not a method, no method: key",
            ("run", SMOKE, "methods.mydrop.p=0.1"), 2, "say which method this variant runs"),
    Mistake("spec-layer-out-of-range", "AD-DROP layer the model does not have",
            ("run", SMOKE, "methods.addrop.layers=[0,7]"), 2,
            "index 7 is out of range", ),
    # --- the command line and overrides
    Mistake("cli-two-specs", "two spec files", ("run", SMOKE, SMOKE), 2,
            "expected one spec file and key=value overrides, got 2 files"),
    Mistake("cli-no-spec", "no spec file at all", ("run",), 2, "Missing argument 'args'",
            needs="cli.py: usage errors of typer's vendored click (see report)"),
    Mistake("cli-unknown-option", "unknown option", ("run", SMOKE, "--bogus"), 2,
            "No such option: --bogus",
            needs="cli.py: usage errors of typer's vendored click (see report)"),
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
            "results format 2, this addrop reads format 1",
            _experiment_json('{"format": 2, "name": "smoke"}')),
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
            ("report", "{tmp}/store", "--no-plots"), 2, "store format 2 is newer",
            _store(lambda s: (s / "experiment.json").write_text('{"format": 2}'))),
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
    Mistake("report-out-not-writable", "report --out folder not writable",
            ("report", "{tmp}/store", "--out", "/dev/null/report", "-f", "markdown",
             "--no-plots"), 2, "cannot write", _store(),
            needs="report/command.py: turn OSError into StoreError (see report)"),
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
    if code == 0:  # the report goes on and says what it skipped
        assert said.startswith("warning: "), said


def markdown_table() -> str:
    """The README table, from real runs of every row (paths shortened)."""
    import tempfile

    rows = [
        "| Mistake | Command (example) | Exit | What addrop says |",
        "|---|---|--:|---|",
    ]
    for mistake in MISTAKES:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            if mistake.skip:
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
                f"| {mistake.what} | `{_short(command, tmp)}` | {code} | `{_short(said, tmp)}` |"
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
