"""The method interface, baseline and dropout, and AD-DROP's step on a tiny BERT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from addrop_cli.methods.addrop import AddropMethod
from addrop_cli.methods.base import task_loss
from addrop_cli.methods.config import AddropParams, BaselineParams, DropoutParams
from addrop_cli.methods.registry import METHOD_NAMES, METHODS, build_method
from addrop_cli.models.compiling import compile_model, compile_problem
from addrop_cli.models.hook import AttentionHook

CPU = torch.device("cpu")


def tiny(
    tiny_bert_dir: Path, *, num_labels: int = 3, dropout: float = 0.0, impl: str = "sdpa", **kw
) -> torch.nn.Module:
    """The conftest tiny BERT, seeded; dropout 0 makes both passes deterministic."""
    config = AutoConfig.from_pretrained(
        tiny_bert_dir,
        num_labels=num_labels,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        **kw,
    )
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation=impl).train()


def batch(lengths: list[int], *, labels: torch.Tensor | None = None, length: int = 10):
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(5, 400, (len(lengths), length), generator=g)
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    out = {
        "input_ids": ids * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
        "labels": torch.zeros(len(lengths), dtype=torch.long) if labels is None else labels,
    }
    return out


def addrop(**kw: object) -> AddropMethod:
    params = AddropParams(**{"cross_tuning": False, **kw})  # type: ignore[arg-type]
    method = build_method(params, is_regression=bool(kw.get("_r")), seed=11, device=CPU)
    assert isinstance(method, AddropMethod)
    return method


def capture_masks(method: AddropMethod, model: torch.nn.Module) -> list[dict[int, torch.Tensor]]:
    """Record the masks each step draws, without changing them."""
    seen: list[dict[int, torch.Tensor]] = []
    handle = method.handle_for(model)
    original = handle.masks

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(original(*args, **kwargs))
        return seen[-1]

    handle.masks = spy  # type: ignore[method-assign]
    return seen


def close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal up to float rounding, relative to the (tiny) scale of attention gradients."""
    scale = float(expected.abs().max())
    assert scale > 0
    return torch.allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def inputs_of(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in b.items() if k != "labels"}


# ----------------------------------------------------------------------------- interface


def test_registry_and_build_method() -> None:
    """Each registered name is its config's ``method`` literal (spelled once), the spec accepts
    it, ``addrop list methods`` shows it, and it builds its own class from default parameters."""
    from addrop_cli.spec.load import load_spec

    smoke = Path(__file__).resolve().parents[2] / "experiments" / "smoke.yaml"
    assert METHODS.names and METHODS.names == METHOD_NAMES
    for name, info in METHODS.items():
        assert name == info.name == info.params.method_name() == info.params().method
        spec = load_spec(smoke, [f"methods={{v: {{method: {name}}}}}"])
        assert type(spec.methods["v"]) is info.params
        method = build_method(info.params(), is_regression=False, seed=0, device=CPU)
        assert method.name == name and isinstance(method, info.load())
        assert method.params == info.params()
    dropout = build_method(
        DropoutParams(hidden_dropout=0.2, attention_dropout=0.05),
        is_regression=False,
        seed=0,
        device=CPU,
    )
    assert dropout.config_overrides() == {
        "hidden_dropout_prob": 0.2,
        "attention_probs_dropout_prob": 0.05,
    }
    assert (
        build_method(BaselineParams(), is_regression=False, seed=0, device=CPU).config_overrides()
        == {}
    )


def test_task_loss() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    ce = task_loss(logits, torch.tensor([0, 1]), is_regression=False)
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])))
    mse = task_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([1.0, 1.0]), is_regression=True)
    assert mse.item() == pytest.approx(2.0)


def test_baseline_step_and_stats(tiny_bert_dir: Path) -> None:
    model = tiny(tiny_bert_dir)
    method = build_method(BaselineParams(), is_regression=False, seed=0, device=CPU)
    method.attach(model)
    method.on_epoch_start(0)
    b = batch([10, 6], labels=torch.tensor([2, 1]))
    out = method.training_step(model, b)
    expected = task_loss(model(**inputs_of(b)).logits, b["labels"], False)
    assert torch.allclose(out.loss, expected)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert method.epoch_stats() == {  # nothing of another method's (no addrop_epoch)
        "forward_passes": 1.0,
        "backward_passes": 1.0,
    }


# ----------------------------------------------------------------------------- AD-DROP


def test_cross_tuning_schedule_decides_per_epoch(tiny_bert_dir: Path) -> None:
    model = tiny(tiny_bert_dir)
    method = addrop(cross_tuning=True)
    method.attach(model)
    b = batch([10, 7])
    passes = []
    for epoch in range(4):
        method.on_epoch_start(epoch)
        method.training_step(model, b)
        stats = method.epoch_stats()
        passes.append((stats["addrop_epoch"], stats["forward_passes"], "dropped_frac_l0" in stats))
    assert passes == [(0, 1, False), (1, 2, True), (0, 1, False), (1, 2, True)]
    always = addrop(cross_tuning=False)
    always.on_epoch_start(0)
    always.training_step(model, b)
    assert always.epoch_stats()["addrop_epoch"] == 1.0


# train.compile: the key method tests again with the model's dense blocks compiled. aot_eager
# captures the graphs and runs them through AOT autograd as inductor does (that is where the hook
# could break), without generating code; one test runs inductor itself.
COMPILED = pytest.param("aot_eager", marks=pytest.mark.slow, id="compiled")
EAGER = pytest.param(None, id="eager")


def compiled(model: torch.nn.Module, backend: str | None) -> torch.nn.Module:
    if backend is not None:
        assert compile_model(model, CPU, backend=backend) is None
    return model


@pytest.mark.parametrize("backend", [EAGER, COMPILED])
def test_gradient_attribution_matches_an_independent_eager_computation(
    tiny_bert_dir: Path, backend: str | None
) -> None:
    model = tiny(tiny_bert_dir)
    method = addrop(layers=[0, 1])
    method.attach(model)
    compiled(model, backend)
    b = batch([10, 7, 3], labels=torch.tensor([0, 1, 2]))
    scores, forwards, backwards = method.handle_for(model).attribution(inputs_of(b), b["labels"])
    assert (forwards, backwards) == (1, 1)
    assert all(p.grad is None and p.requires_grad for p in model.parameters()), (
        "the attribution pass must not touch parameter gradients"
    )
    eager = tiny(tiny_bert_dir, impl="eager")
    eager.load_state_dict(model.state_dict())
    out = eager(**inputs_of(b), output_attentions=True)
    for a in out.attentions:
        a.retain_grad()
    pseudo = out.logits.argmax(-1)
    assert not torch.equal(pseudo, b["labels"]), "the test needs gold != pseudo somewhere"
    out.logits.gather(1, pseudo[:, None]).sum().backward()
    for layer in (0, 1):
        assert close(scores[layer], out.attentions[layer].grad)
    # ...and not the gold-label gradient
    eager.zero_grad()
    out = eager(**inputs_of(b), output_attentions=True)
    out.attentions[0].retain_grad()
    out.logits.gather(1, b["labels"][:, None]).sum().backward()
    assert not close(scores[0], out.attentions[0].grad)


@pytest.mark.parametrize("labels", ["pseudo", "gold"])
def test_regression_attribution_is_the_negated_mse_gradient(
    tiny_bert_dir: Path, labels: str
) -> None:
    model = tiny(tiny_bert_dir, num_labels=1, problem_type="regression")
    params = AddropParams(labels=labels)  # type: ignore[arg-type]
    method = build_method(params, is_regression=True, seed=0, device=CPU)
    b = batch([10, 5])
    b["labels"] = torch.tensor([0.5, 4.0])
    scores, _, _ = method.handle_for(model).attribution(inputs_of(b), b["labels"])
    eager = tiny(tiny_bert_dir, num_labels=1, impl="eager", problem_type="regression")
    eager.load_state_dict(model.state_dict())
    out = eager(**inputs_of(b), output_attentions=True)
    out.attentions[0].retain_grad()
    torch.nn.functional.mse_loss(out.logits.squeeze(-1), b["labels"]).backward()
    assert close(scores[0], -out.attentions[0].grad)


def test_integrated_gradient_with_one_step_is_attention_times_gradient(
    tiny_bert_dir: Path,
) -> None:
    model = tiny(tiny_bert_dir)
    b = batch([10, 4])
    grad_scores, _, _ = addrop().handle_for(model).attribution(inputs_of(b), b["labels"])
    ig = addrop(attribution="integrated_gradient", ig_steps=1)
    ig_scores, forwards, backwards = ig.handle_for(model).attribution(inputs_of(b), b["labels"])
    assert (forwards, backwards) == (2, 1)
    hook = ig.handle.hook if ig.handle else None
    assert hook is not None
    with torch.no_grad(), hook.recording() as probs:
        model(**inputs_of(b))
    assert close(ig_scores[0], probs[0] * grad_scores[0])
    assert model.training, "integrated gradients restore train mode"
    steps = addrop(attribution="integrated_gradient", ig_steps=3, layers=[0, 1])
    _, forwards, backwards = steps.handle_for(model).attribution(inputs_of(b), b["labels"])
    assert (forwards, backwards) == (1 + 3 * 2, 3 * 2)
    assert all(p.grad is None for p in model.parameters())


def independent_integrated_gradient(
    eager: torch.nn.Module,
    b: dict[str, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
    *,
    steps: int,
    ig: str,
    gold: bool,
) -> torch.Tensor:
    """Layer 0's IG written out from docs/algorithm.md on the stock eager BERT, without addrop's
    hook: the dropout-free attention A, m passes with layer 0 using alpha_k * A (standard:
    the gradient at the scaled attention; reference: w.r.t. the unscaled one)."""
    from transformers.models.bert import modeling_bert

    eager.eval()
    with torch.no_grad():
        attention = eager(**inputs_of(b), output_attentions=True).attentions[0]
    stock = modeling_bert.eager_attention_forward
    used: list[torch.Tensor] = []

    def replaced(module, query, key, value, *args, **kwargs):  # type: ignore[no-untyped-def]
        if module.layer_idx != 0:
            return stock(module, query, key, value, *args, **kwargs)
        return torch.matmul(used[-1], value).transpose(1, 2).contiguous(), used[-1]

    monkeypatch.setattr(modeling_bert, "eager_attention_forward", replaced)
    total = torch.zeros_like(attention)
    for k in range(1, steps + 1):
        alpha = k / steps
        leaf = (attention * alpha if ig == "standard" else attention.clone()).requires_grad_()
        used.append(leaf if ig == "standard" else leaf * alpha)
        logits = eager(**inputs_of(b)).logits
        target = b["labels"] if gold else logits.argmax(-1)
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), leaf)
        total += grad
    monkeypatch.setattr(modeling_bert, "eager_attention_forward", stock)
    return attention * total / steps


@pytest.mark.parametrize("ig", ["standard", "reference"])
@pytest.mark.parametrize("labels", ["pseudo", "gold"])
def test_integrated_gradient_matches_an_independent_computation(
    tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch, ig: str, labels: str
) -> None:
    # Attention dropout on: the attribution must still use the dropout-free attention.
    model = tiny(tiny_bert_dir, dropout=0.3)
    b = batch([10, 7, 3], labels=torch.tensor([0, 1, 2]))
    method = addrop(attribution="integrated_gradient", ig_steps=4, ig=ig, labels=labels)
    scores, _, _ = method.handle_for(model).attribution(inputs_of(b), b["labels"])
    assert model.training, "integrated gradients restore train mode"
    eager = tiny(tiny_bert_dir, dropout=0.3, impl="eager")
    eager.load_state_dict(model.state_dict())
    expected = independent_integrated_gradient(
        eager, b, monkeypatch, steps=4, ig=ig, gold=labels == "gold"
    )
    assert close(scores[0], expected)
    key_real = b["attention_mask"].bool()
    pair = (key_real[:, None, :, None] & key_real[:, None, None, :]).expand_as(expected)
    assert torch.all(scores[0][pair] != 0), "no real position is zeroed by dropout"
    other = independent_integrated_gradient(
        eager,
        b,
        monkeypatch,
        steps=4,
        ig="reference" if ig == "standard" else "standard",
        gold=labels == "gold",
    )
    assert not close(scores[0], other), "the two IG definitions must differ on this batch"


def test_gold_labels_rank_by_the_gold_logit_gradient(tiny_bert_dir: Path) -> None:
    model = tiny(tiny_bert_dir)
    b = batch([10, 7, 3], labels=torch.tensor([0, 1, 2]))
    scores, _, _ = addrop(labels="gold").handle_for(model).attribution(inputs_of(b), b["labels"])
    eager = tiny(tiny_bert_dir, impl="eager")
    eager.load_state_dict(model.state_dict())
    out = eager(**inputs_of(b), output_attentions=True)
    out.attentions[0].retain_grad()
    assert not torch.equal(out.logits.argmax(-1), b["labels"]), "needs gold != pseudo somewhere"
    out.logits.gather(1, b["labels"][:, None]).sum().backward()
    assert close(scores[0], out.attentions[0].grad)


@pytest.mark.parametrize(
    "attribution,backend",
    [
        *(
            pytest.param(a, None, id=a)
            for a in ("gradient", "integrated_gradient", "attention", "random")
        ),
        *(
            pytest.param(a, "aot_eager", marks=pytest.mark.slow, id=f"{a}-compiled")
            for a in ("gradient", "integrated_gradient")
        ),
    ],
)
def test_second_pass_drops_exactly_the_mask(
    tiny_bert_dir: Path, attribution: str, backend: str | None
) -> None:
    model = tiny(tiny_bert_dir)
    method = addrop(attribution=attribution, layers="all", p=0.5, q=0.5, ig_steps=2)
    method.attach(model)
    compiled(model, backend)
    assert method.handle is not None
    method.handle.hook.keep_probs = True
    seen = capture_masks(method, model)
    b = batch([10, 8, 2], labels=torch.tensor([0, 1, 2]))
    out = method.training_step(model, b)
    out.loss.backward()
    probs = method.handle.hook.probs
    key_real = b["attention_mask"].bool()
    for layer in (0, 1):
        mask = seen[0][layer]
        assert mask.shape == (3, 4, 10, 10) and mask.dtype == torch.bool
        assert mask.any()
        assert torch.all(probs[layer][mask] == 0)
        assert torch.all(probs[layer][~key_real[:, None, None, :].expand_as(mask)] == 0)
        assert torch.allclose(probs[layer].sum(-1), torch.ones(()), atol=1e-5)
    assert all(p.grad is not None for p in model.parameters())
    stats = method.epoch_stats()
    assert set(stats) >= {"dropped_frac_l0", "dropped_frac_l1", "forward_passes", "backward_passes"}


def test_hook_keeps_no_probabilities_between_steps(tiny_bert_dir: Path) -> None:
    model = tiny(tiny_bert_dir)
    method = addrop(layers="all")
    method.training_step(model, batch([10, 4])).loss.backward()
    assert (
        method.handle is not None
        and method.handle.hook.probs == {}
        and method.handle.hook.mode == "off"
    )


def test_extreme_p_q_on_two_token_inputs_stays_finite(tiny_bert_dir: Path) -> None:
    model = tiny(tiny_bert_dir, dropout=0.1)
    method = addrop(p=0.9, q=0.9, layers="all")
    b = batch([2, 2, 1], length=2)
    for _ in range(3):
        out = method.training_step(model, b)
        out.loss.backward()
        assert torch.isfinite(out.loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_dropped_fraction_is_about_p_times_q(tiny_bert_dir: Path) -> None:
    model = tiny(tiny_bert_dir)
    b = batch([10] * 8)
    for attribution in ("gradient", "random"):
        method = addrop(attribution=attribution, p=0.5, q=0.4)
        for _ in range(3):
            method.training_step(model, b)
        # 8 x 4 heads x 10 rows x 5 candidates per step: q within a few standard deviations
        assert method.epoch_stats()["dropped_frac_l0"] == pytest.approx(0.2, abs=0.04)


def test_same_seed_same_masks_and_evaluation_is_never_masked(
    tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny(tiny_bert_dir)
    b = batch([10, 6, 3])
    drawn = []
    for seed in (5, 5, 6):
        method = build_method(
            AddropParams(attribution="attention", cross_tuning=False),
            is_regression=False,
            seed=seed,
            device=CPU,
        )
        seen = capture_masks(method, model)  # type: ignore[arg-type]
        method.training_step(model, b)
        drawn.append(seen[0][0])
    assert torch.equal(drawn[0], drawn[1])
    assert not torch.equal(drawn[0], drawn[2])

    model.eval()
    explicit: list[int] = []
    probabilities = AttentionHook.probabilities

    def spy(self, layer, *args, **kwargs):  # type: ignore[no-untyped-def]
        explicit.append(layer)
        return probabilities(self, layer, *args, **kwargs)

    monkeypatch.setattr(AttentionHook, "probabilities", spy)
    stock = tiny(tiny_bert_dir).eval()
    stock.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(**inputs_of(b)).logits, stock(**inputs_of(b)).logits)
    assert explicit == []


def test_addrop_step_under_bf16_autocast(tiny_bert_dir: Path) -> None:
    model = tiny(tiny_bert_dir, dropout=0.1)
    method = addrop(p=0.9, q=0.9, layers="all")
    method.attach(model)
    assert method.handle is not None
    method.handle.hook.keep_probs = True
    seen = capture_masks(method, model)
    b = batch([10, 3, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method.training_step(model, b)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.all(method.handle.hook.probs[1][seen[0][1]] == 0)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inductor"])
def test_compiled_steps_equal_eager_steps(tiny_bert_dir: Path, backend: str) -> None:
    """Same seed, same batches: the compiled model's AD-DROP and baseline steps give the eager
    model's losses and gradients, over batches of other lengths (no recompiling per length)."""
    results = []
    for compile_with in (None, backend):
        model = tiny(tiny_bert_dir)
        method = addrop(layers=[0], p=0.5, q=0.5)
        method.attach(model)
        compiled(model, compile_with)
        baseline = build_method(BaselineParams(), is_regression=False, seed=0, device=CPU)
        seen = []
        for lengths, width in (([10, 7, 3], 10), ([6, 2], 6), ([9, 9, 1, 4], 9)):
            b = batch(lengths, labels=torch.tensor([0, 1, 2, 1][: len(lengths)]), length=width)
            for step in (method, baseline):
                model.zero_grad(set_to_none=True)
                out = step.training_step(model, b)
                out.loss.backward()
                grads = torch.cat([p.grad.flatten() for p in model.parameters()])
                seen.append((out.loss.detach(), grads))
        results.append(seen)
    for (loss, grads), (c_loss, c_grads) in zip(*results, strict=True):
        assert torch.allclose(loss, c_loss, rtol=1e-5, atol=1e-6)
        assert torch.allclose(grads, c_grads, rtol=1e-4, atol=1e-6)


def test_compile_names_what_it_cannot_compile(tiny_bert_dir: Path) -> None:
    model = tiny(tiny_bert_dir)
    assert compile_problem(model, CPU) is None
    note = compile_problem(model, torch.device("mps"))
    assert note is not None and note.startswith("train.compile:") and "uncompiled" in note
    model.config.model_type = "deberta-v2"
    note = compile_model(model, CPU)
    assert note is not None and "deberta-v2" in note and "\n" not in note
    assert not any(
        hasattr(m, "_compiled_call_impl") and m._compiled_call_impl for m in model.modules()
    )
