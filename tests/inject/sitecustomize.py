"""Installs the fault points of ``ADDROP_FAULTS`` at interpreter start (tests/fault_points.py).

Only on PYTHONPATH when a test asked for faults (``fault_env``); then every Python process
started below it (an `addrop` run, its pool workers, a Slurm job) gets the same points.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fault_points  # noqa: E402

sys.path.pop(0)
fault_points.install_from_env()
