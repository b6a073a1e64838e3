"""Benchmark: what writing the training state costs per epoch, against the epoch itself.

Trains one run (baseline, seed 1) of experiments/quickstart.yaml (MiniLM, the same 1,000 SST-2
training sentences) for 3 epochs, writing the training state at the end of each epoch but the
last, as `addrop run` does, and prints for each write its seconds and size next to the epoch's
training time, the ratio, and the time to read a state back and check it. A benchmark, not a
test: compare the numbers within one run of this script.

    ADDROP_GLUE_DIR=.../glue_data python bench/bench_state.py
    python bench/bench_state.py --quick     # tiny random BERT on the bundled sample
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from addrop_cli.engine.loggers import Loggers  # noqa: E402
from addrop_cli.engine.loop import RunLoop, setup_run  # noqa: E402
from addrop_cli.spec.load import load_spec  # noqa: E402
from addrop_cli.spec.matrix import expand  # noqa: E402
from addrop_cli.store.state import TrainingStateFiles  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, bundled sample")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    spec_path = ROOT / "experiments" / ("smoke.yaml" if args.quick else "quickstart.yaml")
    overrides = ["tasks=[sst2]", "seeds=[1]", f"train.epochs={args.epochs}", "train.device=cpu"]
    overrides.append(f"train.threads={args.threads}")
    spec = load_spec(spec_path, overrides)
    run = next(r for r in expand(spec, spec_path.parent) if r.variant == "baseline")

    with tempfile.TemporaryDirectory() as tmp:
        states = TrainingStateFiles(Path(tmp))
        loop = RunLoop(setup_run(run), Loggers(), False, states)
        writes: list[float] = []
        save_state = loop.save_state

        def timed(*a: object) -> None:
            started = time.perf_counter()
            save_state(*a)  # type: ignore[arg-type]
            writes.append(time.perf_counter() - started)

        loop.save_state = timed  # type: ignore[method-assign]
        outcome = loop.run(time.perf_counter())
        size = (Path(tmp) / "state" / "state.pt").stat().st_size
        started = time.perf_counter()
        assert states.load() is not None
        read_s = time.perf_counter() - started

    params = sum(p.numel() for p in loop.s.model.parameters())
    examples, batch = outcome.metrics.train_examples, run.train.batch_size
    print(f"model: {run.model.name_or_path} ({params / 1e6:.1f}M parameters), task sst2, "
          f"{examples} training examples, batch {batch}, {args.threads} torch threads")  # fmt: skip
    print(f"state: {size / 1e6:.1f} MB ({size / (params * 4):.2f}x the fp32 weights)")
    print("epoch  train s  state write s  write / epoch")
    for record, write in zip(outcome.epochs, writes, strict=False):
        ratio = write / record.epoch_time_s
        print(f"{record.epoch:>5}  {record.epoch_time_s:>7.2f}  {write:>13.3f}  {ratio:>13.1%}")
    mean_write = sum(writes) / len(writes)
    mean_epoch = sum(e.epoch_time_s for e in outcome.epochs) / len(outcome.epochs)
    share = mean_write / mean_epoch
    print(f"mean: state write {mean_write:.3f} s per epoch = {share:.1%} of a {mean_epoch:.2f} s "
          f"epoch; reading and checking a state back: {read_s:.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
