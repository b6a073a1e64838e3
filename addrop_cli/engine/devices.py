"""Where a run computes: the device, mixed precision, moving batches, and peak memory."""

from __future__ import annotations

import resource
import sys
from contextlib import AbstractContextManager, nullcontext

import torch

from addrop_cli.errors import RunError


def pick_device(wanted: str) -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. An explicit device that is missing is an error."""
    if wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RunError("train.device: cuda requested but no CUDA GPU is visible; use device=auto")
    if wanted == "mps" and not torch.backends.mps.is_available():
        raise RunError("train.device: mps requested but Apple MPS is not available; use auto")
    return torch.device(wanted)


def pick_precision(wanted: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32. Mixed precision only on GPUs."""
    if device.type != "cuda" or wanted == "fp32":
        return None
    if wanted == "fp16":
        return torch.float16
    if wanted == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


class Autocast:
    """A fresh autocast context per use (``with autocast():``), or no-op in fp32."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None) -> None:
        self.device, self.dtype = device, dtype

    def __call__(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory and what it measures: CUDA tensors on a GPU, the process's RSS elsewhere."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process_max_rss"
