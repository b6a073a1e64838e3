"""Settings that used to be accepted and fail later or change nothing (issue 23, item 9): each
is refused at validation with one line naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_cli

from addrop_cli.errors import SpecError
from addrop_cli.methods.config import AddropConfig
from addrop_cli.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"


def refused(capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    result = run_cli(capsys, "validate", SMOKE, *overrides)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    return result.err


def test_a_padding_multiple_past_the_models_positions_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # tiny-bert has 128 positions: 120 tokens padded to a multiple of 100 would be 200
    err = refused(capsys, "train.max_length=120", "train.pad_to_multiple_of=100")
    assert "train.pad_to_multiple_of" in err and "200" in err and "128" in err
    fine = run_cli(capsys, "validate", SMOKE, "train.max_length=120", "train.pad_to_multiple_of=64")
    assert fine.code == 0, fine.err  # 120 -> 128: exactly the positions


@pytest.mark.parametrize("given", ["2", "auto"])
def test_runs_per_gpu_under_slurm_is_refused(
    capsys: pytest.CaptureFixture[str], given: str
) -> None:
    err = refused(capsys, "executor.backend=slurm", f"executor.runs_per_gpu={given}")
    assert f"executor.runs_per_gpu: {given}" in err and "--backend local" in err
    assert run_cli(capsys, "validate", SMOKE, "executor.backend=slurm").code == 0


@pytest.mark.parametrize(
    "override",
    ["train.compile=1", "train.save_checkpoint=0", "model.pretrained=1", "train.group_by_length=0"],
)
def test_a_yes_no_setting_written_as_a_number_is_refused(override: str) -> None:
    with pytest.raises(SpecError, match="expected true or false, got [01]"):
        load_spec(SMOKE, [override])


def test_a_method_switch_written_as_a_number_is_refused() -> None:
    with pytest.raises(SpecError, match="cross_tuning: expected true or false, got 0"):
        load_spec(SMOKE, ["methods.addrop.cross_tuning=0"])
    with pytest.raises(ValueError, match="expected true or false"):
        AddropConfig(cross_tuning=1)  # type: ignore[arg-type]
    assert load_spec(SMOKE, ["train.compile=false"]).train.compile is False
