"""The method contract, checked on every registered method without naming one.

Parametrised from :data:`addrop_cli.methods.registry.METHODS` (default parameters), so a method
registered tomorrow is covered by registering it: its state survives the training-state files
and a resumed step equals the uninterrupted one; a run killed mid-epoch and resumed stores what
an uninterrupted run stores; the loop's calls and :class:`MethodTrainer`'s give the same steps;
its statistics are plain JSON numbers; its config's ``forward_graphs`` covers the forward passes
its loss keeps alive. ``test_a_method_registered_in_a_test_is_checked_without_being_named``
proves the first claim with a throw-away method (``tests/throwaway_methods.py``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fault_helpers import METHOD_TIMING, SMOKE
from lockstep import steps_in_lockstep
from resume_helpers import stopped_and_resumed, stored
from transformers import AutoConfig, AutoModelForSequenceClassification

from addrop_cli.methods.base import Method
from addrop_cli.methods.registry import METHODS, MethodInfo, build_method
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import RunSpec, expand
from addrop_cli.store.records import EpochRecord
from addrop_cli.store.state import TrainingStateFiles

CPU = torch.device("cpu")
SEED = 7
HERE = Path(__file__).resolve().parents[1]  # tests/


@pytest.fixture(params=METHODS.names)
def info(request: pytest.FixtureRequest) -> MethodInfo:
    return METHODS[request.param]


def built(info: MethodInfo) -> Method:
    return build_method(info.params(), is_regression=False, seed=SEED, device=CPU)


def tiny_model(tiny_bert_dir: Path, method: Method) -> torch.nn.Module:
    """The conftest tiny BERT with dropout on (and the method's config values), seeded."""
    values = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    config = AutoConfig.from_pretrained(tiny_bert_dir, num_labels=3)
    for key, value in (values | method.config_overrides()).items():
        setattr(config, key, value)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).train()


def labelled(seed: int, lengths: tuple[int, ...] = (9, 7, 4, 2)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return {
        "input_ids": torch.randint(5, 400, (len(lengths), width), generator=g) * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(mask),
        "labels": torch.arange(len(lengths)) % 3,
    }


def loop_step(method: Method, model: torch.nn.Module, batch: dict, opt: torch.optim.Optimizer):
    """One step in the order the training loop calls the hooks (engine/loop.py)."""
    out = method.training_step(model, dict(batch))
    out.loss.backward()
    method.before_optimizer_step(model)
    opt.step()
    opt.zero_grad()
    return out


def started(info: MethodInfo, tiny_bert_dir: Path, epoch: int = 1):
    """A method attached to its model, prepared on two batches, at the start of ``epoch``."""
    method = built(info)
    model = tiny_model(tiny_bert_dir, method)
    method.attach(model)
    method.prepare(model, [labelled(10 + i) for i in range(2)])
    model.zero_grad(set_to_none=True)
    method.on_epoch_start(epoch)
    return method, model


def same(a: object, b: object) -> bool:
    """Equal, tensors element for element (a method's state holds tensors, dicts, numbers)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if torch.is_tensor(a) and torch.is_tensor(b):
        return a.dtype == b.dtype and torch.equal(a, b)
    return type(a) is type(b) and a == b


# ----------------------------------------------------------------------------- state


def test_state_round_trip_through_the_state_files(
    info: MethodInfo, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """Two steps, the method's state through the training-state files into a method built and
    attached afresh (as a resumed run's setup does, without its preparation pass): the next
    step's loss, gradients, statistics and state are the uninterrupted method's."""
    method, model = started(info, tiny_bert_dir)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(2):
        torch.manual_seed(100 + i)
        loop_step(method, model, labelled(i), opt)
    files = TrainingStateFiles(tmp_path)
    files.write({"model": model.state_dict(), "method": method.state_dict()}, step=2, epoch=1)
    loaded = files.load()
    assert loaded is not None

    twin = built(info)
    twin_model = tiny_model(tiny_bert_dir, twin)
    twin.attach(twin_model)
    twin_model.load_state_dict(loaded.payload["model"])
    twin.on_epoch_start(1)
    twin.load_state_dict(loaded.payload["method"])
    assert same(twin.state_dict(), method.state_dict())

    results = []
    for m, net in ((method, model), (twin, twin_model)):
        torch.manual_seed(200)
        out = m.training_step(net, labelled(5))
        out.loss.backward()
        m.before_optimizer_step(net)
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        results.append((out.loss.detach(), grads, m.step_stats(), m.epoch_stats()))
    assert same(results[0], results[1])
    assert same(twin.state_dict(), method.state_dict())


def _run(info: MethodInfo) -> RunSpec:
    variants = f"methods={{{info.name}: {{method: {info.name}}}}}"
    overrides = ["tasks=[sst2]", "seeds=[1]", "train.epochs=2", "train.threads=1", variants]
    (run,) = expand(load_spec(SMOKE, [*overrides, "train.checkpoint_every_steps=4"]), SMOKE.parent)
    return run


def test_a_run_stopped_mid_epoch_resumes_bit_identically(
    info: MethodInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process twin of tests/engine/test_resume.py's SIGKILL test: the run stops after step 22 (7
    batches into epoch 2, 2 steps after its last state) and goes on from that state."""
    reference, resumed, left = stopped_and_resumed(_run(info), 22, tmp_path, monkeypatch)
    assert (left.step, left.epoch) == (20, 1)
    assert stored(resumed) == stored(reference)


# ----------------------------------------------------------------------------- drivers


def test_the_loop_and_the_trainer_take_the_same_steps(
    info: MethodInfo, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """The hooks called as the loop calls them, and :class:`MethodTrainer`'s compute_loss with
    its callbacks (epoch start, pre-optimiser step), from the same weights and generator draws:
    equal losses, statistics and updated weights, step after step, in an epoch where the method
    is active. A method that sets the model's config is refused by MethodTrainer in one line."""
    from transformers import TrainingArguments

    from addrop_cli.errors import UsageError
    from addrop_cli.methods.trainer import MethodTrainer

    method = built(info)
    ours = tiny_model(tiny_bert_dir, method)
    theirs = copy.deepcopy(ours)
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no", seed=SEED
    )
    if method.config_overrides():
        with pytest.raises(UsageError, match="sets the model's config") as err:
            MethodTrainer(model=theirs, args=args, method=info.params())
        assert "\n" not in str(err.value)
        return
    trainer = MethodTrainer(model=theirs, args=args, method=info.params())
    method.attach(ours)
    epoch = next(e for e in range(4) if info.params().active_in(e))
    for side in ("loop", "trainer"):
        torch.manual_seed(99)
        if side == "loop":
            method.prepare(ours, [labelled(10 + i) for i in range(2)])
            ours.zero_grad(set_to_none=True)
            method.on_epoch_start(epoch)
        else:
            trainer.prepare_method([labelled(10 + i) for i in range(2)])
            trainer.state.epoch = epoch
            trainer.callback_handler.on_epoch_begin(trainer.args, trainer.state, trainer.control)
    steps_in_lockstep(method, ours, trainer, theirs, [labelled(i) for i in range(3)])
    measured = {k: v for k, v in method.epoch_stats().items() if k not in METHOD_TIMING}
    assert measured.items() <= trainer.method.epoch_stats().items()
    assert same(dict(ours.named_parameters()), dict(theirs.named_parameters()))


# ----------------------------------------------------------------------------- facts


def test_statistics_are_json_ready(info: MethodInfo, tiny_bert_dir: Path) -> None:
    """Per-step and per-epoch statistics: finite floats under string keys, which an epoch record
    stores as they are, in every epoch of a cross-tuning cycle."""
    method, model = started(info, tiny_bert_dir, epoch=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(2):
        method.on_epoch_start(epoch)
        loop_step(method, model, labelled(epoch), opt)
        for stats in (method.step_stats(), method.epoch_stats()):
            assert stats and all(type(k) is str and type(v) is float for k, v in stats.items())
            assert all(math.isfinite(v) for v in stats.values())
            assert json.loads(json.dumps(stats, allow_nan=False)) == stats
        stats = method.epoch_stats()
        record = EpochRecord(epoch=1, step=1, train_loss=0.0, select={}, dev={}, method=stats)
        assert record.model_dump(mode="json")["method"] == stats


def _graphs_in(loss: torch.Tensor, outputs: list[torch.Tensor]) -> int:
    """How many of the model's forward outputs the loss's autograd graph still reaches."""
    seen, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return sum(out.grad_fn in seen for out in outputs if out.grad_fn is not None)


def test_forward_graphs_covers_the_passes_a_step_keeps_alive(
    info: MethodInfo, tiny_bert_dir: Path
) -> None:
    """The config's ``forward_graphs`` (what ``runs_per_gpu: auto`` budgets) is at least the
    number of forward passes whose graphs the returned loss holds until its backward."""
    method, model = started(info, tiny_bert_dir, epoch=0)
    outputs: list[torch.Tensor] = []
    model.register_forward_hook(lambda _m, _i, out: outputs.append(out.logits))
    for epoch in range(2):
        method.on_epoch_start(epoch)
        outputs.clear()
        loss = method.training_step(model, labelled(epoch)).loss
        alive = _graphs_in(loss, outputs)
        assert 1 <= alive <= info.params().forward_graphs(), (epoch, alive)
        loss.backward()
        model.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------- extension


def test_a_method_registered_in_a_test_is_checked_without_being_named() -> None:
    """A pytest run of this file with tests/throwaway_methods.py loaded as a plugin: its two
    methods, registered there and named nowhere here, are checked. The sound one passes every
    check; the one that keeps its generator out of its state fails the state checks."""
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "throwaway_methods", "-q", "-rA",
         "-p", "no:cacheprovider", str(Path(__file__)), "-k", "throwaway or forgetful"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, cwd=HERE.parent,
        timeout=600,
    )  # fmt: skip
    lines = done.stdout.splitlines()

    def outcome(test: str, name: str) -> str:
        (line,) = [x for x in lines if x.endswith(f"::{test}[{name}]") or f"::{test}[{name}] " in x]
        return line.split()[0]

    names = dir(sys.modules[__name__])
    for check in [n for n in names if n.startswith("test_") and "registered" not in n]:
        assert outcome(check, "throwaway") == "PASSED", (check, done.stdout[-3000:])
    assert outcome("test_state_round_trip_through_the_state_files", "forgetful") == "FAILED"
    assert outcome("test_a_run_stopped_mid_epoch_resumes_bit_identically", "forgetful") == "FAILED"
