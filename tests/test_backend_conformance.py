"""One suite over every registered back-end (``addrop_cli.spec.backends.BACKENDS``): what callers
ask of it has an answer, and finished and failed runs give the same summary and the same store
whichever back-end carried them out. A back-end registered anywhere (a test's plugin included,
``tests/throwaway_backends.py``) is checked without being named here.

The Slurm back-end needs a real cluster (``.ci/start-slurm.sh``): its cases are marked ``slurm``
and skip, with the reason, where none answers.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fault_points import fault_env
from rich.console import Console

from addrop_cli.errors import SpecError
from addrop_cli.execution.attempt.context import RunContext, Summary
from addrop_cli.execution.backends.base import backend_type
from addrop_cli.execution.backends.slurm import slurm_available
from addrop_cli.spec.backends import BACKENDS
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand
from addrop_cli.store.folders import ExperimentStore

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "experiments" / "smoke.yaml"
ONE_EACH = ["tasks=[sst2]", "seeds=[1]", "train.epochs=1", "train.threads=1"]


def _cases() -> list:
    marks = {"slurm": [pytest.mark.slurm]}
    return [pytest.param(name, marks=marks.get(name, []), id=name) for name in BACKENDS]


def _backend(name: str, spec):  # type: ignore[no-untyped-def]
    """The back-end ``name`` for ``spec``, or a skip where this machine cannot run it."""
    if name == BACKENDS["slurm"].name and not slurm_available():
        pytest.skip("no Slurm cluster answers here (.ci/start-slurm.sh starts one)")
    try:
        kind = backend_type(name)
        return kind.from_spec(spec, SMOKE.parent, plain=True, console=Console(file=io.StringIO()))
    except SpecError as err:  # an optional extra that is not installed
        pytest.skip(str(err))


@pytest.mark.parametrize("name", _cases())
def test_a_backend_answers_what_callers_ask(name: str, tmp_path: Path) -> None:
    kind = backend_type(name)
    spec = load_spec(SMOKE, [*ONE_EACH, f"executor.backend={name}"])
    assert isinstance(kind.journal, bool)
    assert kind.spec_problems(spec, "spec") == []
    assert kind.live_runs(ExperimentStore(tmp_path / "none")) == {}
    assert _backend(name, spec).slots >= 1


@pytest.mark.parametrize("name", _cases())
def test_finished_and_failed_runs_give_the_same_summary_and_store(
    name: str, tmp_path: Path, faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(SMOKE, [*ONE_EACH, f"executor.backend={name}"])  # baseline and AD-DROP
    runs = expand(spec, SMOKE.parent)
    bad = next(r for r in runs if r.variant == "addrop")
    points = {"fail_at": f"addrop:{bad.seed}:2"}
    faults(**points)  # in this process, and in the processes a back-end starts
    for key in ("ADDROP_FAULTS", "PYTHONPATH"):
        monkeypatch.setenv(key, fault_env(**points)[key])
    store = ExperimentStore.located(spec.name, spec.results_dir, tmp_path)
    store.open_for_writing(spec.name, "hash", "")
    context = RunContext(store=store, spec_hash="hash", base_dir=SMOKE.parent)
    summary = Summary()
    _backend(name, spec).execute(runs, context, summary, Console(file=io.StringIO()))
    assert [r.run_id for r in summary.done] == [r.run_id for r in runs if r is not bad]
    assert [r.run_id for r, _ in summary.failed] == [bad.run_id]
    assert summary.exit_code == 1 and not (summary.lost or summary.busy or summary.skipped)
    states = {r.run_id: store.run(r.run_id).status for r in runs}
    assert states == {r.run_id: "failed" if r is bad else "done" for r in runs}
    assert not store.run(bad.run_id).state.exists()  # a failed run starts clean next time


def test_a_backend_registered_in_a_test_is_checked_without_being_named() -> None:
    """This file again, with tests/throwaway_backends.py loaded as a plugin: its module and its
    one registry line are all the throw-away back-end has, and every case runs on it."""
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "throwaway_backends", "-q", "-rA",
         "-p", "no:cacheprovider", str(Path(__file__)), "-k", "throwaway"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )  # fmt: skip
    passed = [line for line in done.stdout.splitlines() if line.startswith("PASSED")]
    assert done.returncode == 0, done.stdout[-3000:]
    assert len(passed) == 2 and all("[throwaway]" in line for line in passed), done.stdout
