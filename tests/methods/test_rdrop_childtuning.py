"""The peer regularisers, each by its defining property against an independent computation on a
tiny BERT (docs/methods.md): R-Drop's loss is the authors' formula of its two passes' logits;
Child-Tuning_D keeps exactly the entries at or above the Fisher threshold and leaves the others
to weight decay alone; Child-Tuning_F's masked gradient is unbiased."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from fault_helpers import SMOKE
from test_methods import CPU, batch, tiny

from addrop_cli.methods.config import ChildtuningParams, RdropParams
from addrop_cli.methods.registry import build_method
from addrop_cli.report import build_report, load_runs
from addrop_cli.report.render import cost_grid


def _by_hand(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, alpha: float, form: str):
    """The authors' BERT GLUE ``bert_kl`` (form glue) or README snippet (form readme), written
    out: no library loss functions."""
    log_a, log_b = a.log_softmax(-1), b.log_softmax(-1)
    ce = [-(log.gather(1, labels[:, None])).mean() for log in (log_a, log_b)]
    tasks = ce[0] + ce[1] if form == "glue" else 0.5 * (ce[0] + ce[1])
    kl_b_a = (log_b.exp() * (log_b - log_a)).sum()  # kl_div(log p, q_tec).sum()
    kl_a_b = (log_a.exp() * (log_a - log_b)).sum()  # kl_div(log q, p_tec).sum()
    return tasks + alpha * (kl_b_a + kl_a_b) / 2


@pytest.mark.parametrize(("alpha", "form"), [(0.5, "glue"), (1.0, "readme"), (0.0, "glue")])
def test_rdrop_loss_is_the_authors_formula_of_its_two_passes(
    tiny_bert_dir: Path, alpha: float, form: str
) -> None:
    model = tiny(tiny_bert_dir, dropout=0.3)
    b = batch([10, 6, 8], labels=torch.tensor([2, 1, 0]))
    method = build_method(
        RdropParams(alpha=alpha, form=form), is_regression=False, seed=0, device=CPU
    )
    torch.manual_seed(7)
    out = method.training_step(model, b)
    torch.manual_seed(7)  # the same two dropout draws, by hand
    inputs = {k: v for k, v in b.items() if k != "labels"}
    a, second = model(**inputs).logits, model(**inputs).logits
    assert not torch.allclose(a, second)  # dropout made the passes differ: the KL term is live
    expected = _by_hand(a, second, b["labels"], alpha, form)
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert torch.equal(out.logits, a.detach())
    stats = method.epoch_stats()
    assert (stats["forward_passes"], stats["backward_passes"]) == (2.0, 1.0)


def test_rdrop_regression_adds_the_squared_difference_of_the_two_predictions(
    tiny_bert_dir: Path,
) -> None:
    """STS-B: the GLUE code adds 1.0 x MSE(first, second); alpha 0.5 x 2 x MSE is that."""
    model = tiny(tiny_bert_dir, num_labels=1, dropout=0.3)
    b = batch([10, 6], labels=torch.tensor([0.5, 3.0]))
    method = build_method(RdropParams(), is_regression=True, seed=0, device=CPU)
    torch.manual_seed(3)
    out = method.training_step(model, b)
    torch.manual_seed(3)
    inputs = {k: v for k, v in b.items() if k != "labels"}
    a, second = (model(**inputs).logits.squeeze(-1) for _ in range(2))
    y = b["labels"].float()
    expected = ((a - y) ** 2).mean() + ((second - y) ** 2).mean() + ((a - second) ** 2).mean()
    assert torch.allclose(out.loss, expected, atol=1e-6)


def _batches() -> list[dict[str, torch.Tensor]]:
    return [
        batch([10, 6, 8], labels=torch.tensor([2, 1, 0])),
        batch([4, 9], labels=torch.tensor([0, 2]), length=9),
    ]


def _fisher_by_hand(model: torch.nn.Module, batches: list[dict]) -> dict[str, torch.Tensor]:
    """The authors' calculate_fisher written out: squared gradient, each tensor's gradient scaled
    to norm <= 1 first, averaged over batches, for the parameters named like 'layer'."""
    names = [n for n, _ in model.named_parameters() if "layer" in n]
    total = {n: 0.0 for n in names}
    for b in batches:
        model.zero_grad()
        logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits
        (-(logits.log_softmax(-1).gather(1, b["labels"][:, None])).mean()).backward()
        for n, p in model.named_parameters():
            if n in names:
                g = p.grad * min(1.0, 1.0 / (float(p.grad.norm()) + 1e-6))
                total[n] = total[n] + g**2
    model.zero_grad()
    return {n: t / len(batches) for n, t in total.items()}


def test_childtuning_d_keeps_exactly_the_entries_at_or_above_the_fisher_threshold(
    tiny_bert_dir: Path,
) -> None:
    model = tiny(tiny_bert_dir)  # no dropout: the Fisher pass is deterministic
    method = build_method(ChildtuningParams(reserve=0.3), is_regression=False, seed=0, device=CPU)
    method.prepare(model, _batches())
    fisher = _fisher_by_hand(model, _batches())
    values = torch.cat([f.reshape(-1) for f in fisher.values()]).double()
    threshold = torch.quantile(values, 0.7)  # global, across every masked tensor
    assert set(method.mask) == set(fisher)
    assert not any("embeddings" in n or "classifier" in n for n in method.mask)
    for name, kept in method.mask.items():
        assert torch.equal(kept, fisher[name].double() >= threshold), name
    kept_fraction = sum(int(m.sum()) for m in method.mask.values()) / values.numel()
    assert abs(kept_fraction - 0.3) < 0.01
    assert method.epoch_stats()["fisher_seconds"] > 0


def test_childtuning_d_step_changes_masked_out_entries_by_weight_decay_only(
    tiny_bert_dir: Path,
) -> None:
    from addrop_cli.engine.optim import build_optimizer
    from addrop_cli.spec.schema import TrainSpec

    model = tiny(tiny_bert_dir)
    method = build_method(ChildtuningParams(reserve=0.3), is_regression=False, seed=0, device=CPU)
    method.prepare(model, _batches())
    lr, decay = 1e-2, 0.1
    optimizer = build_optimizer(model, TrainSpec(lr=lr, weight_decay=decay))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method.training_step(model, _batches()[0]).loss.backward()
    method.before_optimizer_step(model)
    optimizer.step()
    decayed = {id(p) for p in optimizer.param_groups[0]["params"]}
    for name, param in model.named_parameters():
        if name not in method.mask:
            continue
        kept, old = method.mask[name], before[name]
        only_decay = old * (1 - lr * decay) if id(param) in decayed else old
        assert torch.allclose(param[~kept], only_decay[~kept], rtol=1e-6, atol=1e-9), name
        if kept.any():  # the threshold is global: a tensor may keep nothing
            moved = (param[kept] - only_decay[kept]).abs()
            assert moved.max() > 1e-4, name  # the kept entries took an Adam step
    head = dict(model.named_parameters())["classifier.weight"]
    assert not torch.allclose(head, before["classifier.weight"] * (1 - lr * decay))


def test_childtuning_f_masked_gradient_is_unbiased(tiny_bert_dir: Path) -> None:
    """Mean over n masks of mask x g / reserve is g within 5 standard errors per entry; the
    kept fraction is reserve. Without the 1/reserve rescale the mean would be reserve x g."""
    model = tiny(tiny_bert_dir)
    reserve, n = 0.3, 400
    method = build_method(
        ChildtuningParams(mode="f", reserve=reserve), is_regression=False, seed=0, device=CPU
    )
    method.training_step(model, _batches()[0]).loss.backward()
    param = dict(model.named_parameters())["bert.encoder.layer.0.attention.self.query.weight"]
    grad = param.grad.clone()
    total, kept = torch.zeros_like(grad), 0.0
    for _ in range(n):
        param.grad.copy_(grad)
        method.before_optimizer_step(model)
        total += param.grad
        kept += float((param.grad != 0).float().mean())
    mean = total / n
    error = grad.abs() * ((1 - reserve) / (reserve * n)) ** 0.5
    assert bool(((mean - grad).abs() <= 5 * error + 1e-12).all())
    assert abs(kept / n - reserve) < 0.01


def test_childtuning_d_fisher_pass_is_in_the_runs_cost_and_the_reports_cost_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The Fisher pass is paid once per run: metrics.json's prepare_time_s (inside the wall
    time) is the epoch records' fisher_seconds, and the cost table shows it in its own column."""
    args = ["tasks=[sst2]", "seeds=[1]", "train.epochs=1", "train.threads=1"]
    args.append("methods={baseline: {}, ct: {method: childtuning}}")
    result = run_cli(capsys, "run", SMOKE, "--plain", "--results", tmp_path, *args)
    assert result.code == 0, result.err
    runs = {r.variant: r for r in load_runs(tmp_path / "smoke")}
    ct, baseline = runs["ct"].metrics, runs["baseline"].metrics
    epochs = [json.loads(line) for line in (runs["ct"].path / "epochs.jsonl").open()]
    assert ct.prepare_time_s == round(epochs[-1]["method"]["fisher_seconds"], 3) > 0
    assert ct.wall_time_s > ct.prepare_time_s
    assert baseline.prepare_time_s is None
    grid = cost_grid(build_report([tmp_path / "smoke"]))
    column = dict(zip(grid.text["Variant"], grid.text["preparation (s)"], strict=True))
    assert column == {"baseline": "—", "ct": f"{ct.prepare_time_s:,.1f}"}
    assert any("Fisher information" in note for note in grid.notes)
