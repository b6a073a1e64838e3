"""Stage a study's finished run records with git (``make study-records STUDY=<name>``).

A run folder is finished when it holds ``DONE``. For each finished run this stages its records
(what ``addrop report`` reads): run.json, metrics.json, epochs.jsonl, predictions.json, env.json,
DONE and attempts/<run_id>.log; for the experiment: experiment.json, spec.yaml, REPORT.md and the
report's plots (*.png, *.svg beside REPORT.md). Nothing else is staged: no unfinished or failed
run, no training state, checkpoints, tracker files, train.log, attempt_times.jsonl or locks.
Each path is named one by one; ``git add -f`` is used only for paths git ignores.

    python tools/study_records.py results/curve-sst2 [--dry-run]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

RUN_FILES = ("run.json", "metrics.json", "epochs.jsonl", "predictions.json", "env.json", "DONE")
EXPERIMENT_FILES = ("experiment.json", "spec.yaml", "REPORT.md")
PLOTS = ("*.png", "*.svg")
CHUNK = 200  # paths per git command


def finished_runs(experiment: Path) -> list[Path]:
    """The run folders holding DONE, by run id."""
    runs = experiment / "runs"
    if not runs.is_dir():
        return []
    return sorted(
        p for p in runs.iterdir() if p.is_dir() and not p.is_symlink() and _file(p / "DONE")
    )


def record_paths(experiment: Path) -> list[Path]:
    """Every file to stage, in a stable order (experiment files, plots, then run by run)."""
    paths = [experiment / name for name in EXPERIMENT_FILES]
    paths += sorted(p for pattern in PLOTS for p in experiment.glob(pattern))
    for run in finished_runs(experiment):
        paths += [run / name for name in RUN_FILES]
        paths.append(experiment / "attempts" / f"{run.name}.log")
    return [p for p in paths if _file(p)]


def _file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git in ``repo``; retried while another git holds the index lock."""
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    for _ in range(20):
        if done.returncode == 0 or "index.lock" not in done.stderr:
            break
        time.sleep(0.5)
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    return done


def ignored(repo: Path, paths: list[str]) -> set[str]:
    """The paths the ignore rules match, tracked or not (``git add`` needs ``-f`` for them)."""
    out: set[str] = set()
    for i in range(0, len(paths), CHUNK):
        done = _git(repo, "check-ignore", "--no-index", "--", *paths[i : i + CHUNK])
        out |= set(done.stdout.splitlines())  # exit 1: none ignored
    return out


def stage(repo: Path, paths: list[str]) -> None:
    """``git add`` each path; ``-f`` only for the ignored ones."""
    forced = ignored(repo, paths)
    for group, flags in (([p for p in paths if p not in forced], []), (sorted(forced), ["-f"])):
        for i in range(0, len(group), CHUNK):
            done = _git(repo, "add", *flags, "--", *group[i : i + CHUNK])
            if done.returncode != 0:
                sys.exit(f"error: git add failed: {done.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path, help="results/<name>")
    parser.add_argument("--dry-run", action="store_true", help="print what would be staged")
    args = parser.parse_args(argv)
    experiment: Path = args.experiment
    if not (experiment / "runs").is_dir() and not (experiment / "experiment.json").is_file():
        print(f"error: {experiment}: not a results folder (no runs/); e.g. results/peers",
              file=sys.stderr)  # fmt: skip
        return 2
    top = _git(experiment, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        print(f"error: {experiment}: not inside a git repository", file=sys.stderr)
        return 2
    repo = Path(top.stdout.strip())
    paths = [str(p.resolve().relative_to(repo)) for p in record_paths(experiment)]
    runs = len(finished_runs(experiment))
    if args.dry_run:
        print("\n".join(paths))
        print(f"would stage {len(paths)} files ({runs} finished runs) of {experiment}")
        return 0
    stage(repo, paths)
    print(f"staged {len(paths)} files ({runs} finished runs) of {experiment}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
