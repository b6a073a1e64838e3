"""Clean output (issue 38): no progress bars, carriage returns, ANSI codes or library warnings in
--plain output, in a run's log files or on the Trainer path; predict's stdout is a TSV."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"
pytestmark = pytest.mark.slow


def _pretrained_tiny_bert(folder: Path, tiny_bert_dir: Path) -> Path:
    """The tiny BERT with saved (random) encoder weights and no classifier: loading it is what
    makes transformers draw its "Loading weights" bar and print its load report."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(tiny_bert_dir)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return folder


def _assert_clean(name: str, text: str) -> None:
    assert "\r" not in text, f"{name}: a carriage return\n{text}"
    assert "\x1b[" not in text, f"{name}: an ANSI code\n{text}"
    for noise in ("Loading weights", "Writing model shards", "LOAD REPORT", "Warning", "it/s]"):
        assert noise not in text, f"{name}: {noise!r}\n{text}"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "addrop_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def test_a_pretrained_run_with_a_checkpoint_and_predict_print_clean_lines(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    model = _pretrained_tiny_bert(tmp_path / "model", tiny_bert_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_HUB_DISABLE_PROGRESS")}
    args = [f"model.name_or_path={model}", "model.pretrained=true", "tasks=[sst2]"]
    args += ["seeds=[1,2]", "train.epochs=1", "methods={baseline: {}}", "train.threads=1"]
    args += ["train.save_checkpoint=true", "--workers", "2", "--plain", "--results", str(tmp_path)]
    done = _cli("run", str(SMOKE), *args, env=env)
    assert done.returncode == 0, done.stderr
    runs = [p for p in (tmp_path / "smoke" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 2 and all((r / "checkpoint" / "config.json").is_file() for r in runs)
    logs = [*(r / "train.log" for r in runs), *(tmp_path / "smoke" / "attempts").glob("*.log")]
    assert len(logs) == 4
    for name, text in [("stdout", done.stdout), ("stderr", done.stderr)]:
        _assert_clean(name, text)
    for log in logs:
        _assert_clean(str(log), log.read_text())
    assert done.stderr == ""

    texts = ["a gripping, funny film", "dull, and far too long"]
    labelled = _cli(
        "predict",
        str(tmp_path / "smoke"),
        "--run",
        runs[0].name[:6],
        "--text",
        texts[0],
        "--text",
        texts[1],
        env=env,
    )
    assert labelled.returncode == 0, labelled.stderr
    _assert_clean("predict stdout", labelled.stdout)
    rows = list(csv.reader(io.StringIO(labelled.stdout), delimiter="\t"))
    assert rows[0] == ["prediction", "text"]  # the header first: no blank line before it
    assert [row[1:] for row in rows[1:]] == [[text] for text in texts]
    assert {row[0] for row in rows[1:]} <= {"negative", "positive"}


def test_the_trainer_example_prints_no_bars_load_report_or_pin_memory_warning(
    tmp_path: Path, tiny_bert_dir: Path, fixtures_dir: Path
) -> None:
    model = _pretrained_tiny_bert(tmp_path / "model", tiny_bert_dir)
    command = [
        sys.executable,
        str(ROOT / "examples" / "trainer_glue.py"),
        *("--model", str(model), "--glue-dir", str(fixtures_dir / "glue"), "--task", "sst2"),
        *("--train-size", "16", "--dev-size", "8", "--epochs", "1"),
        *("--output-dir", str(tmp_path / "out")),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_HUB_DISABLE_PROGRESS")}
    env |= {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_clean("stdout", done.stdout)
    _assert_clean("stderr", done.stderr)
    assert "pin_memory" not in done.stderr
    assert done.stderr == ""
