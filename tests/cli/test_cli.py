"""The command line: help with examples, validate, dry runs, listings and error exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"


COMMANDS = [
    [],
    ["run"],
    ["validate"],
    ["sweep"],
    ["status"],
    ["report"],
    ["predict"],
    ["list"],
    ["list", "tasks"],
    ["list", "methods"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "addrop" for c in COMMANDS])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_ends_in_examples(
    capsys: pytest.CaptureFixture[str], command: list[str], flag: str
) -> None:
    result = run_cli(capsys, *command, flag)
    assert result.code == 0
    assert "Usage" in result.out
    assert "Examples" in result.out and "addrop " in result.out.split("Examples")[1]
    assert "<bool>" not in result.out  # on/off flags take no value


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from addrop_cli import __version__

    result = run_cli(capsys, "--version")
    assert result.code == 0 and result.out.strip() == f"addrop {__version__}"


@pytest.mark.parametrize(
    ("command", "option"),
    [("sweep", "--device"), ("predict", "--results"), ("run", "--device"), ("status", "--results")],
)
def test_commands_take_the_options_the_readme_gives_them(
    capsys: pytest.CaptureFixture[str], command: str, option: str
) -> None:
    assert option in run_cli(capsys, command, "--help").out


def test_report_into_a_closed_pipe_writes_files(tmp_path: Path) -> None:
    """`addrop report ... | head -0`: the reader goes before addrop writes a line; the files
    are written anyway, and addrop exits 0 without a word on stderr."""
    import os
    import shutil
    import subprocess
    import sys

    store = tmp_path / "store"
    shutil.copytree(ROOT / "tests" / "fixtures" / "store" / "glue-small", store)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as in a shell
    command = [sys.executable, "-m", "addrop_cli", "report", str(store), "-f", "terminal"]
    command += ["-f", "markdown", "--no-plots"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # long before addrop's first line (it imports for a second or more)
    err = proc.stderr.read()
    assert proc.wait(120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert (store / "report" / "report.md").is_file()


def test_validate_every_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    specs = sorted((ROOT / "experiments").glob("*.yaml"))
    specs += sorted((ROOT / "experiments" / "paper").glob("*.yaml"))
    assert any(p.parent.name == "paper" for p in specs), "the paper recipes are validated too"
    result = run_cli(capsys, "validate", "--no-deep", *specs)
    assert result.code == 0, result.err
    assert sum(line.startswith("ok ") for line in result.out.splitlines()) == len(specs)


def test_validate_deep_checks_files(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "validate", SMOKE)
    assert result.code == 0, result.err
    missing = run_cli(capsys, "validate", SMOKE, "data.glue_dir=/no/such/folder")
    assert missing.code == 2
    assert "/no/such/folder" in missing.err


def test_validate_refuses_layer_beyond_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "validate", SMOKE, "methods.addrop.layers=[0,7]")
    assert result.code == 2
    assert "7" in result.err and "layer" in result.err


def test_dry_run_prints_the_matrix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run_cli(capsys, "run", SMOKE, "--dry-run", "--results", tmp_path, "seeds=[1,2,3]")
    assert result.code == 0, result.err
    assert "resolved spec" in result.out and "12 runs" in result.out
    assert result.out.count("to run") == 12
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "nope.yaml"], "nope.yaml: file not found"),
        (["run", SMOKE, "train.epochz=1"], "did you mean 'epochs'"),
        (["run", SMOKE, SMOKE], "expected one spec file"),
        (["validate", SMOKE, "methods.addrop.p=1.5"], "must be in (0, 1], got 1.5"),
        (["report", "--epoch", "middle", "results/x"], "--epoch: must be best or last"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list, expected: str
) -> None:
    result = run_cli(capsys, *args)
    assert result.code == 2
    assert expected in result.err
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from addrop_cli.errors import SpecError

    with pytest.raises(SpecError):
        run_cli(capsys, "--debug", "run", "nope.yaml")


def test_sweep_and_status_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    no_sweep = run_cli(capsys, "sweep", SMOKE)
    assert no_sweep.code == 2 and "Traceback" not in no_sweep.err
    assert "sweep: the spec has no sweep: block" in no_sweep.err
    bad_grid = run_cli(capsys, "sweep", SMOKE, "--grid", "methods.addrop.p")
    assert bad_grid.code == 2 and "expected PATH=VALUES" in bad_grid.err
    missing = run_cli(capsys, "status", ROOT / "results" / "no-such-experiment")
    assert missing.code == 2 and "no such folder or spec" in missing.err
    dry = run_cli(
        capsys,
        "sweep",
        SMOKE,
        "--dry-run",
        "--grid",
        "methods.addrop.q=[0.1,0.5]",
        "sweep.report_seeds=[3]",
    )
    assert dry.code == 0, dry.err
    assert "2 points x 2 tasks" in dry.out and "methods.addrop.q=0.5 (select)" in dry.out


def test_list_methods_and_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    methods = run_cli(capsys, "list", "methods")
    assert methods.code == 0
    for name in ("baseline", "dropout", "addrop", "cross_tuning"):
        assert name in methods.out
    tasks = run_cli(capsys, "list", "tasks")
    assert tasks.code == 0
    for name in ("CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"):
        assert name in tasks.out


def test_list_models_shows_every_family_and_its_hook(capsys: pytest.CaptureFixture[str]) -> None:
    from addrop_cli.models.families import FAMILIES

    models = run_cli(capsys, "list", "models")
    assert models.code == 0
    rows = {line.split("│")[2].strip(): line for line in models.out.splitlines() if "│" in line}
    for model_type, family in FAMILIES.items():
        assert family.hook in rows[model_type]


def test_validate_does_not_fetch_uncached_hub_models(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "validate", SMOKE, "model.name_or_path=no-such-org/uncached-model")
    assert result.code == 0, result.err
    assert "no-such-org/uncached-model is a Hub id not in the local cache" in result.err
    assert "ok " in result.out
