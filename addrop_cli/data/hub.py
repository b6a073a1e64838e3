"""Examples from the Hugging Face Hub dataset ``nyu-mll/glue`` through ``datasets``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from addrop_cli.data.examples import HUB_DATASET, Example
from addrop_cli.data.tasks import TaskInfo
from addrop_cli.errors import DataError, one_line

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


# The Hugging Face Hub
# ---------------------------------------------------------------------------------------------


def _hub_float(v: Any) -> float:
    """The Hub stores STS-B scores as float32: give back the decimal the GLUE file holds."""
    return float(str(np.float32(v)))


def examples_from_hub_rows(
    task: TaskInfo, split: str, rows: Iterable[Mapping[str, Any]], where: str | None = None
) -> list[Example]:
    """Convert rows in the Hub's column layout (``sentence``/``label``/``idx``, ...) to examples.

    The Hub marks unlabelled test rows with label -1; they become ``label=None``.
    """
    where = where or f"{HUB_DATASET}/{task.hub_config}:{task.hub_splits.get(split, split)}"
    is_test = split in task.test_splits
    examples: list[Example] = []
    for pos, row in enumerate(rows):
        at = f"{where}:{pos}"
        for col in (*task.text_columns, "label"):
            if col not in row:
                raise DataError(
                    f"{at}: missing column {col!r} (has {', '.join(row)}); "
                    f"this is not the {HUB_DATASET} {task.hub_config} layout"
                )
        raw = row["label"]
        label: int | float | None
        if is_test or raw is None or (not task.is_regression and int(raw) == -1):
            label = None
        elif task.is_regression:
            label = _hub_float(raw)
        else:
            label = int(raw)
            if not 0 <= label < len(task.label_names):
                raise DataError(
                    f"{at}: label id {raw!r} out of range for {task.display} "
                    f"({len(task.label_names)} classes); the Hub dataset changed its layout"
                )
        if label is None and not is_test:
            raise DataError(
                f"{at}: unlabelled row in the {split} split; the Hub data is incomplete"
            )
        texts = [row[c] for c in task.text_columns]
        examples.append(Example.at(split, pos, texts, label))
    return examples


def load_hub_split(task: TaskInfo, split: str) -> list[Example]:
    """One split of ``nyu-mll/glue`` through ``datasets.load_dataset`` (downloads on first use)."""
    hub_split = task.hub_splits[split]
    where = f"{HUB_DATASET}/{task.hub_config}:{hub_split}"
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{where}: the `datasets` package is not installed; pip install datasets, "
            f"or set data.glue_dir / ADDROP_GLUE_DIR to a local GLUE folder"
        ) from None
    try:
        ds = datasets.load_dataset(HUB_DATASET, task.hub_config, split=hub_split)
    except Exception as e:  # noqa: BLE001 - any failure to fetch is the user's environment
        raise DataError(
            f"{where}: could not load from the Hugging Face Hub ({one_line(e, typed=True)}); "
            f"check the network and HF_DATASETS_OFFLINE, or set data.glue_dir / ADDROP_GLUE_DIR "
            f"to a local GLUE folder"
        ) from None
    feature = getattr(ds, "features", {}).get("label") if hasattr(ds, "features") else None
    names = tuple(getattr(feature, "names", ()) or ())
    if not task.is_regression and names and names != task.label_names:
        raise DataError(
            f"{where}: label names {names} differ from the expected {task.label_names}; "
            f"the Hub dataset changed, use a local GLUE folder"
        )
    return examples_from_hub_rows(task, split, _rows_of(ds), where)


def offline_problem(task: TaskInfo) -> str | None:
    """With HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set, a Hub split not in the local cache cannot
    load: say so before any run starts (None when online, or when the cache has it)."""
    flags = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    if not any(os.environ.get(f, "").strip().lower() in ("1", "true", "yes", "on") for f in flags):
        return None
    where = f"{HUB_DATASET}/{task.hub_config}"
    try:
        import datasets

        datasets.load_dataset_builder(HUB_DATASET, task.hub_config)
    except ImportError:
        return None  # check_data says `datasets` is missing
    except Exception:  # noqa: BLE001 - not cached (offline) is the only expected failure
        return (
            f"{where}: not in the local Hugging Face cache, and HF_HUB_OFFLINE or "
            "HF_DATASETS_OFFLINE is set; unset it to download once, or set data.glue_dir / "
            "ADDROP_GLUE_DIR to a GLUE folder (see README, Data)"
        )
    return None


def _rows_of(ds: Any) -> Iterable[Mapping[str, Any]]:
    """Rows of a ``datasets.Dataset`` (column-wise, which is much faster than row access)."""
    if hasattr(ds, "to_dict") and hasattr(ds, "column_names"):
        cols = ds.to_dict()
        names = list(cols)
        n = len(cols[names[0]]) if names else 0
        return ({k: cols[k][i] for k in names} for i in range(n))
    return ds


# ---------------------------------------------------------------------------------------------
