"""What a run ran on: package versions, git commit, device. Saved as each run's env.json."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("addrop-cli", "torch", "transformers", "datasets", "tokenizers", "numpy", "scipy")


def git_commit(folder: Path) -> str | None:
    """The commit of the repository holding ``folder`` (with '+dirty'), or None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def describe_environment(
    folder: Path, device: str | None = None, threads: int | None = None
) -> dict[str, Any]:
    """Versions, host and device; ``threads``: the torch threads the run used (the process's
    count once the run is over may differ: train.threads is per run)."""
    import torch

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": versions,
        "git_commit": git_commit(folder),
        "device": device,
        "torch_threads": threads or torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        env["cuda"] = {
            "version": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(),
            "count": torch.cuda.device_count(),
        }
    return env
