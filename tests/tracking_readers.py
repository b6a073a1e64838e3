"""Read back what the trackers wrote, with each tool's own reader (test helpers).

TensorBoard: its ``EventAccumulator``. MLflow: ``MlflowClient`` on the store. W&B: the offline
run's transaction log (``run-<id>.wandb``): W&B's own record framing (a LevelDB-style log of
32 KiB blocks) around its own protobuf ``Record`` messages, parsed with ``wandb.proto``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK, HEADER = 32768, 7
FULL, LAST = 1, 4  # record kinds; FIRST (2) and MIDDLE (3) open and continue a split record


def tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """Tag -> step -> value, for every scalar in the event files under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def tensorboard_hparams(folder: Path) -> dict[str, Any]:
    """The hyperparameters written with the ``hparams`` plugin's session start."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(folder))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    out: dict[str, Any] = {}
    for key, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        out[key] = getattr(value, kind)
    return out


def mlflow_runs(uri: str, experiment: str) -> list[dict[str, Any]]:
    """Each run of ``experiment``: params, tags, status and metric histories (key -> step ->
    value)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    out = []
    for run in client.search_runs([found.experiment_id]):
        histories = {
            key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
            for key in run.data.metrics
        }
        out.append(
            {
                "params": run.data.params,
                "tags": run.data.tags,
                "status": run.info.status,
                "metrics": histories,
            }
        )
    return out


def wandb_records(path: Path) -> list[Any]:
    """Every ``Record`` in an offline run's ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B", f"{path}: not a W&B transaction log"
    records, pending, i = [], b"", HEADER
    while i + HEADER <= len(data):
        left = BLOCK - i % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            i += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[i : i + HEADER])
        chunk = data[i + HEADER : i + HEADER + length]
        i += HEADER + length
        if kind == 0:
            continue
        pending += chunk
        if kind in (FULL, LAST):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def wandb_offline_run(folder: Path) -> dict[str, Any]:
    """The one offline run under ``folder``: its run record and history (step -> values)."""
    (log,) = folder.glob("offline-run-*/run-*.wandb")
    run, history, summary, config = None, {}, {}, {}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            config |= {u.key: json.loads(u.value_json) for u in run.config.update}
        elif kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in record.history.item}
            history.setdefault(record.history.step.num, {}).update(
                {k: v for k, v in row.items() if not k.startswith("_")}
            )
        elif kind == "summary":
            summary |= {_key(u): json.loads(u.value_json) for u in record.summary.update}
    assert run is not None, f"{log}: no run record"
    return {
        "name": run.display_name,
        "group": run.run_group,
        "tags": list(run.tags),
        "job_type": run.job_type,
        "config": config,
        "history": history,
        "summary": summary,
    }


def _key(item: Any) -> str:
    """W&B stores ``train/loss`` as the nested key (train, loss)."""
    return item.key or "/".join(item.nested_key)


def tensorboard_steps(folder: Path, tag: str) -> list[int]:
    """The steps of ``tag``'s scalars as TensorBoard shows them, in order (a repeated step
    would appear twice; what a resumed writer's ``purge_step`` drops does not appear)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every one
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def wandb_run_ids(folder: Path) -> list[str]:
    """The W&B run id of each offline run folder under ``folder`` (one per attempt), as W&B
    names its transaction log (``run-<id>.wandb``: a killed attempt's log may end before its
    run record)."""
    return [log.stem.removeprefix("run-") for log in folder.glob("offline-run-*/run-*.wandb")]


def tensorboard_hparam_metrics(folder: Path) -> list[str]:
    """The metric tags of the ``hparams`` plugin's experiment (what the HParams dashboard
    shows as columns beside the hyperparameters)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(folder))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    return [info.name.tag for info in experiment.metric_infos]
