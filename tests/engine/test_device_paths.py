"""The device paths, on the device ``ADDROP_TEST_DEVICE`` names (cpu by default; cuda in
``make gpu-check``): a run placed on the device, the AD-DROP step under bf16 and fp16 autocast
with the attention hook, and a compiled model's steps against the eager model's.

Marked ``device``: ``bench/gpu_check.py`` runs ``pytest -m device`` with
``ADDROP_TEST_DEVICE=cuda``. A device that is named but missing fails the tests (it never skips
them): a CUDA build that does not see its GPU must not pass as a green run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_methods import batch, capture_masks, inputs_of, tiny

from addrop_cli.engine.loop import run_one
from addrop_cli.methods.config import AddropParams, BaselineParams
from addrop_cli.methods.registry import build_method
from addrop_cli.models.compiling import compile_model
from addrop_cli.spec.load import load_spec
from addrop_cli.spec.matrix import expand

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"
DEVICE = torch.device(os.environ.get("ADDROP_TEST_DEVICE", "cpu"))

pytestmark = pytest.mark.device


def on_device(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to(DEVICE) for k, v in b.items()}


def addrop_on_device(**kw: object):  # noqa: ANN201 - an AddropMethod
    params = AddropParams(**{"cross_tuning": False, **kw})  # type: ignore[arg-type]
    return build_method(params, is_regression=False, seed=11, device=DEVICE)


def test_the_device_named_is_there() -> None:
    if DEVICE.type == "cuda":
        assert torch.cuda.is_available(), f"ADDROP_TEST_DEVICE=cuda, torch {torch.__version__}"
    assert torch.zeros(1, device=DEVICE).device.type == DEVICE.type


def test_a_run_trains_on_the_device_and_measures_its_memory_there() -> None:
    overrides = ["tasks=[sst2]", "seeds=[1]", "train.epochs=1", f"train.device={DEVICE.type}"]
    (run,) = [r for r in expand(load_spec(SMOKE, overrides), SMOKE.parent) if r.variant == "addrop"]
    outcome = run_one(run)
    assert outcome.metrics.device.startswith(DEVICE.type)
    kind = "cuda_max_allocated" if DEVICE.type == "cuda" else "process_max_rss"
    assert outcome.metrics.memory_kind == kind and (outcome.metrics.peak_memory_mb or 0) > 0
    assert all(torch.isfinite(torch.tensor(e.train_loss)) for e in outcome.epochs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_addrop_step_under_autocast_drops_exactly_the_mask(
    tiny_bert_dir: Path, dtype: torch.dtype
) -> None:
    model = tiny(tiny_bert_dir, dropout=0.1).to(DEVICE)
    method = addrop_on_device(p=0.5, q=0.5, layers="all")
    method.attach(model)
    method.handle.hook.keep_probs = True
    seen = capture_masks(method, model)
    b = on_device(batch([10, 3, 2], labels=torch.tensor([0, 1, 2])))
    with torch.autocast(DEVICE.type, dtype=dtype):
        out = method.training_step(model, b)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    key_real = b["attention_mask"].bool()
    for layer in (0, 1):
        mask, probs = seen[0][layer], method.handle.hook.probs[layer]
        assert mask.device.type == DEVICE.type and mask.any()
        assert torch.all(probs[mask] == 0)
        assert torch.all(probs[~key_real[:, None, None, :].expand_as(mask)] == 0)
        assert not (mask & ~key_real[:, None, None, :]).any(), "padding is never a candidate"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
def test_compiled_steps_equal_eager_steps_on_the_device(tiny_bert_dir: Path) -> None:
    """inductor on the device: the same seed and batches give the eager model's losses and
    gradients (fp32; on CUDA within rtol 1e-3, the fused kernels sum in another order)."""
    rtol, atol = (1e-3, 1e-5) if DEVICE.type == "cuda" else (1e-4, 1e-6)
    results = []
    for compiled in (False, True):
        model = tiny(tiny_bert_dir).to(DEVICE)
        method = addrop_on_device(layers=[0], p=0.5, q=0.5)
        method.attach(model)
        if compiled:
            assert compile_model(model, DEVICE, backend="inductor") is None
        baseline = build_method(BaselineParams(), is_regression=False, seed=0, device=DEVICE)
        seen = []
        for lengths, width in (([10, 7, 3], 10), ([6, 2], 6), ([9, 9, 1, 4], 9)):
            labels = torch.tensor([0, 1, 2, 1][: len(lengths)])
            b = on_device(batch(lengths, labels=labels, length=width))
            for step in (method, baseline):
                model.zero_grad(set_to_none=True)
                out = step.training_step(model, b)
                out.loss.backward()
                grads = torch.cat([p.grad.flatten() for p in model.parameters()])
                seen.append((out.loss.detach(), grads))
        results.append(seen)
    for (loss, grads), (c_loss, c_grads) in zip(*results, strict=True):
        assert torch.allclose(loss, c_loss, rtol=rtol, atol=atol)
        assert torch.allclose(grads, c_grads, rtol=rtol, atol=atol)


def test_evaluation_on_the_device_is_never_masked(tiny_bert_dir: Path) -> None:
    model = tiny(tiny_bert_dir).to(DEVICE)
    method = addrop_on_device(layers="all")
    method.attach(model)
    stock = tiny(tiny_bert_dir).to(DEVICE).eval()
    stock.load_state_dict(model.state_dict())
    model.eval()
    b = on_device(batch([10, 6, 3]))
    with torch.no_grad():
        assert torch.allclose(model(**inputs_of(b)).logits, stock(**inputs_of(b)).logits)
