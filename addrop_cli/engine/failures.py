"""What a failed run's FAILED marker says: one line a researcher can act on.

A run that raises is recorded as failed and the experiment goes on (``executors``). Most
exceptions are recorded as ``Type: message``; running out of memory is common enough, and its
fix well-known enough, that the reason names it and says what to lower.
"""

from __future__ import annotations

from addrop_cli.errors import one_line

OOM_ADVICE = (
    "try a smaller train.batch_size (with train.grad_accum to keep the effective batch) "
    "or a smaller train.max_length, e.g. train.batch_size=8"
)


def is_out_of_memory(err: BaseException) -> bool:
    """True for host or accelerator out-of-memory errors (CUDA, MPS, CPU allocations)."""
    if isinstance(err, MemoryError):
        return True
    import torch

    oom_types = tuple(
        t
        for t in (
            getattr(torch, "OutOfMemoryError", None),
            getattr(torch.cuda, "OutOfMemoryError", None),
        )
        if isinstance(t, type)
    )
    if oom_types and isinstance(err, oom_types):
        return True
    # MPS and some allocators raise a plain RuntimeError that says so
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def describe_failure(err: BaseException, *, sharing: int = 1) -> str:
    """The one-line reason recorded for a run that raised ``err``.

    ``sharing``: how many runs share the run's GPU; running out of memory then also names
    fewer runs per GPU as a fix (the neighbours' runs go on: each is its own process).
    """
    detail = one_line(err, typed=True)
    if is_out_of_memory(err):
        advice = OOM_ADVICE
        if sharing > 1:
            advice += (
                f"; or fewer runs per GPU ({sharing} ran on this one): --runs-per-gpu {sharing - 1}"
            )
        return f"out of memory ({detail}); {advice}"
    return f"{type(err).__name__}: {err}".strip()


def release_accelerator_memory() -> None:
    """Give cached GPU memory back after a failed run, so the next run starts with all of it."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
