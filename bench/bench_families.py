"""Benchmark: the cost of an AD-DROP step against a plain step, for every encoder family.

For each supported family, a tiny randomly initialised model (the test matrix's configs,
tests/family_models.py) takes training steps (forward, loss, backward, no optimizer) on the same
padded batches: a plain step on the stock model, and the library's AD-DROP step (gradient
attribution, layer 0; ``--layers all`` for every targetable layer). All families and both
variants run in one process, interleaved step by step after a warm-up; each variant's time is the
median over repeats. Prints per-family medians and the ratio AD-DROP / plain. Numbers depend on
the machine and its load: compare them only within one run of this script.

    python bench/bench_families.py                 # layer 0, 30 repeats
    python bench/bench_families.py --layers all --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from family_models import padded_ids, stock_twin, tiny_family_model  # noqa: E402

from addrop_cli.methods.api import AddropConfig, attach_addrop  # noqa: E402
from addrop_cli.methods.base import model_inputs, task_loss  # noqa: E402
from addrop_cli.models.families import FAMILIES  # noqa: E402


def batches(model: torch.nn.Module, count: int, size: int, length: int) -> list[dict]:
    """Padded batches with lengths spread over [length / 4, length]."""
    out = []
    for i in range(count):
        g = torch.Generator().manual_seed(i)
        lengths = torch.randint(length // 4, length + 1, (size,), generator=g).tolist()
        batch = padded_ids(model, lengths, length=length, seed=i)
        batch["labels"] = torch.randint(0, model.config.num_labels, (size,), generator=g)
        out.append(batch)
    return out


def timed(step) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    step().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--layers", default="0", help="'0' or 'all'")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layers = "all" if args.layers == "all" else [int(args.layers)]
    setups = {}
    for model_type in FAMILIES:
        model = tiny_family_model(model_type, max_position_embeddings=args.length + 2)
        plain = stock_twin(model)
        handle = attach_addrop(model, AddropConfig(layers=layers, cross_tuning=False), seed=0)
        data = batches(model, 4, args.batch_size, args.length)
        setups[model_type] = (plain, handle, data)
    times: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats + 2):  # the first two rounds are the warm-up
        for model_type, (plain, handle, data) in setups.items():
            batch = data[repeat % len(data)]
            runs = {
                "plain": lambda p=plain, b=batch: task_loss(
                    p(**model_inputs(b)).logits, b["labels"], False
                ),
                "addrop": lambda h=handle, b=batch: h.step(b).loss,
            }
            for variant, step in runs.items():
                elapsed = timed(step)
                if repeat >= 2:
                    times.setdefault((model_type, variant), []).append(elapsed)
    print(
        f"AD-DROP step vs plain step, tiny models, batch {args.batch_size} x {args.length} "
        f"tokens (padded), layers {args.layers}, {args.threads} thread(s), "
        f"median of {args.repeats}"
    )
    print(f"{'family':14}{'hook':20}{'plain ms':>10}{'AD-DROP ms':>12}{'ratio':>8}")
    for model_type, family in FAMILIES.items():
        plain_s = statistics.median(times[(model_type, "plain")])
        addrop_s = statistics.median(times[(model_type, "addrop")])
        print(
            f"{model_type:14}{family.hook:20}{plain_s * 1e3:>10.2f}{addrop_s * 1e3:>12.2f}"
            f"{addrop_s / plain_s:>8.2f}"
        )


if __name__ == "__main__":
    main()
