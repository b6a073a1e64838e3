"""Issue 38's conveniences, each through the real CLI: a unique run-id prefix wherever a run id
is taken (status, predict), ``addrop report`` writing report.md and report.html by default,
``addrop track --dir``, and counted nouns said right ("1 run", "1 torch thread each")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_cli

from addrop_cli.errors import StoreError
from addrop_cli.store.folders import ExperimentStore
from addrop_cli.words import plural

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "store" / "glue-small"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    target = tmp_path / "glue-small"
    shutil.copytree(FIXTURE, target)
    return target


def _ids(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "runs").iterdir() if p.is_dir())


def _unique_and_shared_prefixes(ids: list[str]) -> tuple[str, str]:
    """The shortest prefix of some id that no other id has, and one that two ids share."""
    unique = next(
        run_id[:n]
        for n in range(1, 12)
        for run_id in ids
        if sum(other.startswith(run_id[:n]) for other in ids) == 1
    )
    shared = next(
        a[:n] for n in range(1, 12) for a in ids for b in ids if a != b and b.startswith(a[:n])
    )
    return unique, shared


def test_a_unique_prefix_names_its_run_and_an_ambiguous_one_is_one_line(store: Path) -> None:
    ids = _ids(store)
    unique, shared = _unique_and_shared_prefixes(ids)
    found = ExperimentStore(store).find_run(unique)
    assert found.startswith(unique) and found in ids
    assert ExperimentStore(store).find_run(ids[0]) == ids[0]  # a whole id is always itself
    with pytest.raises(StoreError) as ambiguous:
        ExperimentStore(store).find_run(shared)
    assert len(ambiguous.value.problems) == 1 and "matches" in str(ambiguous.value)
    assert ambiguous.value.exit_code == 2
    with pytest.raises(StoreError, match="no run 'zzz'"):
        ExperimentStore(store).find_run("zzz")
    with pytest.raises(StoreError, match="no run ''"):
        ExperimentStore(store).find_run("")


def test_status_takes_a_run_id_prefix(capsys: pytest.CaptureFixture[str], store: Path) -> None:
    ids = _ids(store)
    unique, shared = _unique_and_shared_prefixes(ids)
    full = next(i for i in ids if i.startswith(unique))
    result = run_cli(capsys, "status", store, "--run", unique)
    assert result.code == 0, result.err
    assert f"{store}: 1 run: " in result.out  # one run, said in the singular
    assert full in result.out and all(i not in result.out for i in ids if i != full)
    result = run_cli(capsys, "status", store, "--run", shared)
    assert result.code == 2
    lines = (result.out + result.err).strip().splitlines()
    assert len(lines) == 1 and f"prefix {shared!r} matches" in lines[0], lines


def test_predict_takes_a_run_id_prefix(capsys: pytest.CaptureFixture[str], store: Path) -> None:
    ids = _ids(store)
    unique, shared = _unique_and_shared_prefixes(ids)
    full = next(i for i in ids if i.startswith(unique))
    task = json.loads((store / "runs" / full / "run.json").read_text())["task"]
    text = "a fine film\tit is good" if task in ("rte", "mrpc", "stsb", "qnli") else "a fine film"
    # the fixture keeps no checkpoints: the one-line error names the run the prefix resolved to
    result = run_cli(capsys, "predict", store, "--run", unique, "--text", text)
    assert result.code == 2 and f"runs/{full}: " in result.out + result.err
    result = run_cli(capsys, "predict", store, "--run", shared, "--text", "a fine film")
    lines = (result.out + result.err).strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and "matches" in lines[0], lines


def test_report_writes_markdown_and_html_by_default(
    capsys: pytest.CaptureFixture[str], store: Path
) -> None:
    result = run_cli(capsys, "report", store, "--no-plots")
    assert result.code == 0, result.err
    assert "Dev results" in result.out  # still printed
    md, html = store / "report" / "report.md", store / "report" / "report.html"
    assert md.read_text().startswith("# Report: glue-small")
    assert "<html" in html.read_text()[:500].lower()
    assert f"wrote 2 files to {store / 'report'}" in " ".join(result.out.split())
    result = run_cli(capsys, "report", store, "--no-plots", "-f", "terminal", "--out", store / "t")
    assert result.code == 0 and not (store / "t").exists()  # one format asked: only that one


@pytest.mark.tracking
def test_track_dir_puts_the_tracker_files_there(
    capsys: pytest.CaptureFixture[str], store: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard not installed (extra: tensorboard)")
    elsewhere = tmp_path / "tb-files"
    result = run_cli(capsys, "track", store, "--to", "tensorboard", "--dir", elsewhere)
    assert result.code == 0, result.out + result.err
    assert f"trackers: tensorboard -> {elsewhere.resolve() / 'tensorboard'}" in result.out
    assert len(list((elsewhere / "tensorboard").iterdir())) >= 1
    assert not (store / "tracking").exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    result = run_cli(capsys, "track", store, "--to", "tensorboard", "--dir", blocked / "x")
    lines = (result.out + result.err).strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("error: --dir"), lines


def test_counted_nouns() -> None:
    from addrop_cli.execution.backends.local import _placement_text
    from addrop_cli.execution.planning.runner import _megabytes

    assert [plural(n, "run") for n in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]
    assert plural(1, "task") == "1 task" and plural(3, "query", "queries") == "3 queries"
    assert _placement_text([(None, 1), (None, 1)]) == "1 torch thread each"
    assert _placement_text([(None, 2)]) == "2 torch threads each"
    assert _megabytes(273_000_000) == "273 MB" and _megabytes(180_000) == "180 kB"


COMMANDS = ["", "run", "sweep", "report", "status", "predict", "track", "validate", "list"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_prose_is_wrapped_by_the_terminal_not_by_the_docstring(command: str) -> None:
    """At 80 columns a prose line is only short where its paragraph ends: a docstring's own line
    breaks (``state (written`` / ``every epoch ...``) would leave short lines mid-sentence."""
    import os
    import subprocess
    import sys

    env = os.environ | {"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}
    args = [sys.executable, "-m", "addrop_cli", *command.split(), "--help"]
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout
    lines = out.split("╭")[0].splitlines()  # the prose and examples above the option boxes
    prose = [line.rstrip() for line in lines]
    short = [
        f"{line!r} then {after!r}"
        for line, after in zip(prose, prose[1:], strict=False)
        if line.startswith(" ")
        and not line.startswith("  ")
        and line.strip()
        and after.startswith(" ")
        and not after.startswith("  ")
        and after.strip()
        and not line.lstrip().startswith("Usage:")
        and len(line) < 60
    ]
    assert short == [], f"addrop {command} --help breaks sentences at the docstring's lines"


def test_plot_file_names_have_no_stray_underscores() -> None:
    from addrop_cli.report.plots import _slug

    assert _slug("sst2 (train_size=120)") == "sst2_train_size_120"
    assert _slug("addrop-every") == "addrop-every" and _slug("(())") == "_"


def test_make_quick_reads_the_glue_folder_or_else_the_bundled_sample(tmp_path: Path) -> None:
    """make quick's two paths, as make would run them (make -n), and the sample path's overrides
    accepted by addrop (a dry run: no training)."""
    import os
    import subprocess
    import sys

    def planned(glue: str) -> str:
        args = ["make", "-n", "-o", ".venv/.installed-stamp", "quick", f"ADDROP_GLUE_DIR={glue}"]
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout

    real, sample = planned("/some/glue_data"), planned("")
    assert "addrop run experiments/quick.yaml" in real and "addrop report results/quick\n" in real
    assert "data.glue_dir" not in real
    overrides = "name=quick-sample data.glue_dir=experiments/sample/glue"
    assert overrides in sample and "addrop report results/quick-sample" in sample
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    env.pop("ADDROP_GLUE_DIR", None)
    args = [sys.executable, "-m", "addrop_cli", "run", "experiments/quick.yaml", *overrides.split()]
    args += ["--dry-run", "--results", str(tmp_path)]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"4 runs -> {tmp_path / 'quick-sample'}" in " ".join(done.stdout.split())
