"""--plain output is lines, nothing else (issue 36): writing a checkpoint must not print
transformers' carriage-return progress bars ("Writing model shards") into it or train.log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"


def test_a_run_that_saves_a_checkpoint_prints_no_progress_bar(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_HUB_DISABLE_PROGRESS")}
    args = ["tasks=[sst2]", "seeds=[1]", "train.epochs=1", "methods={baseline: {}}"]
    args += ["train.save_checkpoint=true", "train.save_last=true", "train.threads=1"]
    done = subprocess.run(
        [sys.executable, "-m", "addrop_cli", "run", str(SMOKE), *args, "--plain"]
        + ["--results", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (run,) = [p for p in (tmp_path / "smoke" / "runs").iterdir() if p.is_dir()]
    assert (run / "checkpoint" / "config.json").is_file()  # a checkpoint was written
    for text in (done.stdout, done.stderr, (run / "train.log").read_text()):
        assert "\r" not in text and "Writing model shards" not in text, text
    assert done.stderr == ""
