"""make gpu-check on a machine without a GPU (bench/gpu_check.py --no-gpu --quick): the CPU parts
run and leave their figures in the results file; every GPU part prints exactly one SKIP line and
is recorded as skipped. The parts are listed here, not read from the script, so a part that
disappears from it fails this test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"
GPU_PARTS = [
    "install",
    "device-tests",
    "properties-cuda",
    "step-cuda",
    "sweep-cuda",
    "placement-cuda",
    "resume-cuda",
]
CPU_PARTS = ["properties-cpu", "step-cpu"]
STEP_VARIANTS = {"baseline", "addrop-l0", "rdrop", "childtuning"}


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_without_a_gpu_the_cpu_parts_run_and_each_gpu_part_says_it_was_skipped(
    tmp_path: Path,
) -> None:
    done = gpu_check("--no-gpu", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for part in GPU_PARTS:
        skips = [line for line in lines if line.startswith(f"SKIP {part}:")]
        assert len(skips) == 1 and "needs a GPU" in skips[0], (part, lines)
    for part in CPU_PARTS:
        assert sum(line.startswith(f"PASS {part} (") for line in lines) == 1, (part, lines)
    assert len([line for line in lines if line.startswith(("SKIP", "PASS", "FAIL"))]) == len(
        GPU_PARTS + CPU_PARTS
    )

    results = json.loads((tmp_path / "gpu-check.json").read_text())
    assert set(results["parts"]) == set(GPU_PARTS + CPU_PARTS)
    assert all(results["parts"][p]["status"] == "skipped" for p in GPU_PARTS)
    assert all(results["parts"][p]["status"] == "passed" for p in CPU_PARTS)
    assert results["machine"]["cpus"] and results["machine"]["gpu"] == ""

    step = results["parts"]["step-cpu"]
    assert {r["variant"] for r in step["rows"]} == STEP_VARIANTS
    assert all(r["ms_per_step"] > 0 and r["dtype"] == "fp32" for r in step["rows"])
    (cpu,) = results["parts"]["properties-cpu"]["devices"].values()
    rate = cpu["drop_rate"]
    assert cpu["candidate_counts_ok"] and rate["outside"] == 0 and rate["candidates"] > 0
    assert abs(rate["rate"] - rate["q"]) <= rate["bound"]

    report = (tmp_path / "REPORT.md").read_text()
    for part in GPU_PARTS + CPU_PARTS:
        assert f"| {part} |" in report
    assert "## step-cpu" in report


def test_an_unknown_part_is_refused_with_the_list_of_parts(tmp_path: Path) -> None:
    done = gpu_check("--only", "nosuch", "--out", str(tmp_path))
    assert done.returncode == 2
    assert "no part nosuch" in done.stderr and "step-cuda" in done.stderr
    assert not (tmp_path / "gpu-check.json").exists()
