"""First-hour mistakes with the library API: one UsageError line that names the fix, never a
KeyError or AttributeError from inside a step, and nothing that silently changes what runs."""

from __future__ import annotations

import pytest
import torch
from family_models import padded_ids, tiny_config, tiny_family_model
from transformers import AutoModel

from addrop_cli.errors import UsageError
from addrop_cli.methods import AddropConfig, attach_addrop


def labelled(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**padded_ids(model, [9, 5]), "labels": torch.tensor([0, 1])}


def test_a_dict_config_is_validated_into_the_config_model() -> None:
    model = tiny_family_model("bert")
    handle = attach_addrop(model, {"p": 0.5, "q": 0.5, "cross_tuning": False})
    assert handle.config == AddropConfig(p=0.5, q=0.5, cross_tuning=False)
    assert handle.step(labelled(model)).addrop


@pytest.mark.parametrize(
    ("config", "says"),
    [({"p": 2}, "p:"), ({"pp": 0.3}, "pp:"), ("p=0.3", "AddropConfig(")],
)
def test_a_bad_config_gets_one_line(config: object, says: str) -> None:
    with pytest.raises(UsageError, match="^attach_addrop: config") as err:
        attach_addrop(tiny_family_model("bert"), config)  # type: ignore[arg-type]
    assert says in str(err.value) and "\n" not in str(err.value)


def test_something_that_is_not_a_model_or_has_no_task_head_is_refused() -> None:
    with pytest.raises(UsageError, match="expected a loaded transformers model"):
        attach_addrop("bert-base-uncased")  # type: ignore[arg-type]
    bare = AutoModel.from_config(tiny_config("bert"))
    with pytest.raises(UsageError, match="no task head.*AutoModelForSequenceClassification"):
        attach_addrop(bare)


def test_attaching_twice_is_refused_unless_replacing() -> None:
    model = tiny_family_model("bert")
    first = attach_addrop(model)
    with pytest.raises(UsageError, match="already has AD-DROP attached.*detach"):
        attach_addrop(model)
    first.detach()
    second = attach_addrop(model)
    third = attach_addrop(model, replace=True)
    assert model.addrop_hook is third.hook is not second.hook


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, "42", True])
def test_bad_seeds_are_refused(seed: object) -> None:
    with pytest.raises(UsageError, match="seed must be an integer"):
        attach_addrop(tiny_family_model("bert"), seed=seed)  # type: ignore[arg-type]


def test_a_generator_that_is_not_one_is_refused() -> None:
    with pytest.raises(UsageError, match="generator must be a torch.Generator"):
        attach_addrop(tiny_family_model("bert"), generator=42)  # type: ignore[arg-type]


@pytest.mark.parametrize("epoch", ["1", -1, 1.0, True])
def test_bad_epochs_are_refused_and_change_nothing(epoch: object) -> None:
    handle = attach_addrop(tiny_family_model("bert"))  # cross-tuning: plain on epoch 0
    with pytest.raises(UsageError, match="0-based integer"):
        handle.set_epoch(epoch)  # type: ignore[arg-type]
    assert not handle.active, "a refused epoch (-1 is odd) must not switch AD-DROP on"


@pytest.mark.parametrize("drop", ["labels", "input_ids"])
def test_a_batch_without_labels_or_inputs_names_the_missing_key(drop: str) -> None:
    model = tiny_family_model("bert")
    handle = attach_addrop(model)
    batch = labelled(model)
    del batch[drop]
    with pytest.raises(UsageError, match=f"no '{drop}'"):
        handle.step(batch)
    with pytest.raises(UsageError, match="batch must be a dict"):
        handle.step([batch])  # type: ignore[arg-type]


def test_a_detached_handle_refuses_to_step_or_enable() -> None:
    model = tiny_family_model("bert")
    handle = attach_addrop(model, AddropConfig(cross_tuning=False))
    handle.detach()
    with pytest.raises(UsageError, match="detached.*attach again"):
        handle.step(labelled(model))
    with pytest.raises(UsageError, match="detached"):
        handle.enable()
