"""Where a local pool's workers run: which GPU, how many runs share it, how many CPU threads.

A base-size encoder on GLUE's short inputs uses a small part of a modern GPU, and its steps are
bound by kernel launches; several runs on one GPU (``executor.runs_per_gpu``) fill it.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from addrop_cli.models.footprint import run_memory_bytes
from addrop_cli.models.location import located
from addrop_cli.spec.schema import ExecutorSpec, ExperimentSpec

Placement = list[tuple[str | None, int | None]]
"""(CUDA_VISIBLE_DEVICES, torch threads) for each worker."""

AUTO_MAX_RUNS_PER_GPU = 8
"""auto never packs more: past this, runs on one GPU mostly wait for each other's kernels."""
MEMORY_HEADROOM = 0.9
"""auto plans with this share of the free memory (other processes, fragmentation)."""


def visible_gpus() -> list[str]:
    """The GPU ids this process may use (honouring CUDA_VISIBLE_DEVICES); [] without CUDA."""
    try:
        # torch/transformers load in seconds: imported on use, so importing this stays fast
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA is simply no GPU
        return []
    if count == 0:
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        ids = [x.strip() for x in listed.split(",") if x.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def free_gpu_memory(gpus: Sequence[str]) -> list[int]:
    """Free bytes on each GPU: nvidia-smi (no CUDA context in this process), else torch."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"]
            + ["-i", ",".join(gpus)],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        free = [int(line.strip()) << 20 for line in out.splitlines() if line.strip()]
        if len(free) == len(gpus):
            return free
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    import torch

    return [torch.cuda.mem_get_info(i)[0] for i in range(len(gpus))]


def worker_placement(
    workers: int, gpus: Sequence[str], threads: int | None, cpus: int | None = None
) -> Placement:
    """(CUDA_VISIBLE_DEVICES, torch threads) for each worker.

    With GPUs, workers take them round robin (K x GPUs workers put K on each). Every worker gets
    ``threads`` torch threads, by default an equal share of the cores: runs that share a
    machine must not each spin a thread per core.
    """
    cpus = cpus or os.cpu_count() or 1
    share = threads or max(1, cpus // max(1, workers))
    if gpus:
        return [(gpus[i % len(gpus)], share) for i in range(workers)]
    return [(None, share) for _ in range(workers)]


def runs_sharing(placement: Placement) -> list[int]:
    """For each worker, how many workers (itself included) share its GPU; 1 on CPU."""
    per_gpu = Counter(gpu for gpu, _ in placement if gpu is not None)
    return [per_gpu[gpu] if gpu is not None else 1 for gpu, _ in placement]


def auto_runs_per_gpu(run_bytes: int, free: Sequence[int], cpus: int) -> int:
    """K for ``runs_per_gpu: auto``: what fits in the fullest GPU's free memory, at least 1,
    at most :data:`AUTO_MAX_RUNS_PER_GPU` and at most one worker per CPU core."""
    fits = int(MEMORY_HEADROOM * min(free) // max(1, run_bytes))
    per_core = max(1, cpus // max(1, len(free)))
    return max(1, min(fits, AUTO_MAX_RUNS_PER_GPU, per_core))


@dataclass(frozen=True)
class PoolPlan:
    """The local workers to start, and a line that says how the plan was made (or None)."""

    placement: Placement
    note: str | None = None

    @property
    def workers(self) -> int:
        return len(self.placement)


def plan_pool(
    executor: ExecutorSpec,
    gpus: Sequence[str],
    run_bytes: Callable[[], int],
    *,
    cpus: int | None = None,
    free: Callable[[Sequence[str]], list[int]] = free_gpu_memory,
) -> PoolPlan:
    """The pool ``executor`` asks for on this machine.

    On CPU, ``workers`` sets the pool (runs_per_gpu does not apply). With GPUs, runs_per_gpu K
    (other than 1) puts K workers on each GPU; ``auto`` picks K from ``run_bytes()`` (one
    run's estimated memory) and each GPU's free memory.
    """
    cpus = cpus or os.cpu_count() or 1
    k = executor.runs_per_gpu
    note = None
    if not gpus:
        if k != 1:
            note = "no GPU visible: runs_per_gpu applies to GPUs; on CPU --workers N sets the pool"
        workers = executor.workers or 1
    elif k == 1:
        workers = executor.workers or len(gpus)
    else:
        if k == "auto":
            need, free_now = run_bytes(), free(gpus)
            k = auto_runs_per_gpu(need, free_now, cpus)
            note = (
                f"runs per GPU: auto -> {k} (a run needs about {need / 2**30:.1f} GiB; "
                f"{min(free_now) / 2**30:.1f} GiB free on the fullest GPU, {cpus} CPU cores)"
            )
        workers = k * len(gpus)
    return PoolPlan(worker_placement(workers, gpus, executor.threads, cpus), note)


def spec_run_bytes(spec: ExperimentSpec, base_dir: Path) -> int:
    """One run of ``spec``, estimated (:mod:`addrop_cli.models.footprint`) for the method that
    keeps the most forward passes alive (each config's ``forward_graphs``)."""
    # torch/transformers load in seconds: imported on use, so importing this stays fast
    from addrop_cli.models.loading import load_config

    config = load_config(located(spec.model, base_dir))
    passes = max(params.forward_graphs() for params in spec.methods.values())
    return run_memory_bytes(
        config,
        spec.train.batch_size,
        spec.train.max_length,
        mixed_precision=spec.train.precision != "fp32",
        passes=passes,
    )
