"""``addrop run --only KEY=V1,V2``: part of the run matrix, the spec left whole (issue 35).

The runs of an ``--only`` run are the full spec's runs (same ids), the store records the full
spec (its spec.yaml and version), and the summary counts only the selected runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_helpers import run_cli

from addrop_cli.errors import SpecError
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand, spec_version
from addrop_cli.spec.only import select_runs

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"
QUICK = ["tasks=[sst2]", "train.epochs=1", "train.threads=1"]
SIZES = "factors.data.train_size=[16,32]"


def _select(only: list[str], overrides: list[str] = ()):
    spec = load_spec(SMOKE, [*QUICK, SIZES, *overrides])
    runs = expand(spec, SMOKE.parent)
    return runs, select_runs(spec, runs, only, str(SMOKE))


def test_only_keeps_the_matching_runs_with_the_full_specs_ids() -> None:
    runs, picked = _select(["data.train_size=16", "seed=2"])
    assert len(runs) == 2 * 2 * 2  # variants x sizes x seeds
    assert [(r.factors["data.train_size"], r.seed) for r in picked] == [(16, 2), (16, 2)]
    assert {r.run_id for r in picked} < {r.run_id for r in runs}
    # several values of a key are alternatives; keys must all match; numbers as the spec means
    _, both = _select(["factors.data.train_size=16.0,32", "variant=addrop"])
    assert {(r.variant, r.factors["data.train_size"]) for r in both} == {
        ("addrop", 16), ("addrop", 32)
    }  # fmt: skip
    _, by_task = _select(["task=SST-2"])  # any spelling the task registry knows
    assert len(by_task) == len(runs)


@pytest.mark.parametrize(
    ("only", "says"),
    [
        (["sed=1"], "has no axis 'sed'; did you mean 'seed'?; --only takes task, variant, seed"),
        (["seed=7"], "does not run seed 7 (its seed values: 1, 2)"),
        (["data.train_size=64"], "does not run data.train_size 64 (its data.train_size"),
        (["variant=adrop"], "does not run variant 'adrop' (its variant values: baseline, addrop"),
        (["task=rte"], "does not run task 'rte'"),
        (["seed="], "expected KEY=V1,V2"),
        (["train.lr=0.1"], "has no axis 'train.lr'"),
    ],
)
def test_a_key_or_value_the_spec_does_not_have_is_one_line(only: list[str], says: str) -> None:
    with pytest.raises(SpecError) as err:
        _select(only)
    assert says in str(err.value) and len(err.value.problems) == 1


def test_an_only_run_stores_the_full_spec_and_the_full_runs_ids(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = load_spec(SMOKE, QUICK)
    full = {(r.variant, r.seed): r.run_id for r in expand(spec, SMOKE.parent)}
    part = run_cli(capsys, "run", SMOKE, *QUICK, "--only", "seed=1", "--plain", "--results",
                   tmp_path)  # fmt: skip
    assert part.code == 0, part.err + part.out
    assert "--only seed=1: 2 of the spec's 4 runs" in part.out
    assert "smoke: 2 runs, 0 already in" in part.out and "2 to run" in part.out
    assert "runs: 2 done, 0 skipped, 0 failed" in part.out
    exp = tmp_path / "smoke"
    stored = {
        (c["variant"], c["seed"]): c["run_id"]
        for c in (json.loads(p.read_text()) for p in exp.glob("runs/*/run.json"))
    }
    assert stored == {k: v for k, v in full.items() if k[1] == 1}
    assert yaml.safe_load((exp / "spec.yaml").read_text())["seeds"] == [1, 2]
    assert json.loads((exp / "experiment.json").read_text())["spec_hashes"] == [spec_version(spec)]
    # --dry-run honours --only, and the other seed is still to run under the same spec
    plan = run_cli(capsys, "run", SMOKE, *QUICK, "--only", "seed=2", "--dry-run", "--results",
                   tmp_path)  # fmt: skip
    assert plan.code == 0, plan.err
    assert "2 runs ->" in plan.out and full["baseline", 2] in plan.out
    assert full["baseline", 1] not in plan.out
    whole = run_cli(capsys, "run", SMOKE, *QUICK, "--dry-run", "--results", tmp_path)
    rows = {i: next(line for line in whole.out.splitlines() if i in line) for i in full.values()}
    for (_, seed), run_id in full.items():
        assert ("done" if seed == 1 else "to run") in rows[run_id], rows[run_id]
