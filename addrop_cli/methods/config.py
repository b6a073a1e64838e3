"""Each method's parameters: frozen pydantic models, importable without torch.

They are both the spec's ``methods:`` entries (validated by the spec's schema, which builds its
discriminated union from :mod:`addrop_cli.methods.registry`) and the configuration objects of the
library API, so the CLI and a user's own script describe a method the same way.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from addrop_cli.settings import plain_number

Probability = Annotated[float, Field(gt=0.0, le=1.0)]
"""A rate in (0, 1]: AD-DROP's p and q."""

DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]
"""A dropout rate in [0, 1)."""


class MethodConfig(BaseModel):
    """Base for every method's parameters: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, data: Any) -> Any:
        # a model validator: pydantic allows no field validator on the discriminator `method`
        for key, value in data.items() if isinstance(data, dict) else ():
            if key in cls.model_fields:
                try:
                    plain_number(cls.model_fields[key].annotation, value)
                except ValueError as err:
                    raise ValueError(f"{key}: {err}") from None
        return data

    @classmethod
    def method_name(cls) -> str:
        """The method's name: the one spelling, its ``method`` field's literal (the registry,
        the spec's tag and :attr:`Method.name <addrop_cli.methods.base.Method.name>` read it)."""
        return cls.model_fields["method"].default

    def forward_graphs(self) -> int:
        """Forward passes a training step may keep in memory at once: what the memory estimate
        of ``runs_per_gpu: auto`` counts (activations per pass). One for a plain step."""
        return 1

    def attention_layers(self) -> list[int] | Literal["all"] | None:
        """The attention layers the method hooks, which the model's family must support (the
        preflight checks them); None: the method asks nothing of the model."""
        return None

    def active_in(self, epoch: int) -> bool:
        """Whether the method's own step runs in this 0-based epoch (else a plain step)."""
        return True

    def adapter_problem(self) -> str | None:
        """Why this method cannot train with ``train.adapter`` (a LoRA adapter), or None when it
        combines with one (validation refuses the pair with this reason, docs/adapters.md)."""
        return None

    def inert(self) -> dict[str, str]:
        """Settings that cannot change what this method computes, given the others: field ->
        why. Validation names the ones a user set, and :meth:`effective` ignores them all."""
        return {}

    def effective(self) -> dict[str, Any]:
        """What this method computes, as plain data: two configurations with equal ``effective``
        train identically (same seed, same data), whatever their inert settings say."""
        defaults = type(self)()
        return {
            key: getattr(defaults if key in self.inert() else self, key)
            for key in type(self).model_fields
        }


class BaselineParams(MethodConfig):
    """Plain fine-tuning with the model's own dropout."""

    method: Literal["baseline"] = "baseline"


class DropoutParams(MethodConfig):
    """Fine-tuning with hidden and attention-probability dropout rates set here."""

    method: Literal["dropout"] = "dropout"
    hidden_dropout: DropoutRate = 0.1
    attention_dropout: DropoutRate = 0.1


class AddropParams(MethodConfig):
    """AD-DROP, as docs/algorithm.md defines it."""

    method: Literal["addrop"] = "addrop"
    attribution: Literal["gradient", "integrated_gradient", "attention", "random"] = "gradient"
    drop: Literal["high", "low"] = "high"
    p: Probability = 0.3
    q: Probability = 0.2
    layers: list[Annotated[int, Field(ge=0)]] | Literal["all"] = Field(default_factory=lambda: [0])
    cross_tuning: bool = True
    ig_steps: Annotated[int, Field(ge=1)] = 20
    labels: Literal["pseudo", "gold"] = "pseudo"
    """Whose logit the attribution differentiates: the prediction's (AD-DROP) or the gold
    label's (only the paper's prior experiment). Regression always uses the gold score."""
    ig: Literal["standard", "reference"] = "standard"
    """Integrated gradients: textbook (gradient at the scaled attention) or the authors' code
    (attention output scaled, gradient w.r.t. the unscaled attention); docs/algorithm.md."""

    def forward_graphs(self) -> int:
        """Two: the attribution pass (:meth:`AddropHandle.attribution
        <addrop_cli.methods.api.AddropHandle.attribution>`, with gradients to the attention) and
        the masked pass whose loss is back-propagated. An upper bound: the gradient pass's graph
        is freed before the masked pass, and random dropping has no attribution pass."""
        return 2

    def attention_layers(self) -> list[int] | Literal["all"]:
        return self.layers

    def active_in(self, epoch: int) -> bool:
        """Cross-tuning: plain fine-tuning on even 0-based epochs, AD-DROP on odd ones."""
        return epoch % 2 == 1 if self.cross_tuning else True

    def inert(self) -> dict[str, str]:
        """Random dropping (RD) draws its mask with rate p*q and ranks nothing: no attribution
        settings apply. Attention scores need no gradient, so no label choice either."""
        out: dict[str, str] = {}
        if self.attribution != "integrated_gradient":
            why = f"only integrated gradients use it (attribution is {self.attribution})"
            out |= {"ig_steps": why, "ig": why}
        if self.attribution in ("random", "attention"):
            out["labels"] = f"no gradient is taken with attribution {self.attribution}"
        if self.attribution == "random":
            out["drop"] = "random dropping ranks no position (it drops each with rate p*q)"
        return out

    def effective(self) -> dict[str, Any]:
        out = super().effective()
        if self.attribution == "random":  # only the product matters: p=0.3,q=0.2 is p=0.2,q=0.3
            out["p"], out["q"] = self.p * self.q, None
        return out

    @field_validator("layers")
    @classmethod
    def _distinct_layers(cls, v: list[int] | str) -> list[int] | str:
        if isinstance(v, list):
            if not v:
                raise ValueError("give at least one layer index, or 'all'")
            if len(set(v)) != len(v):
                raise ValueError(f"layer indices must be distinct, got {v}")
            return sorted(v)
        return v


class RdropParams(MethodConfig):
    """R-Drop: two dropout passes, their task losses and a consistency term between them."""

    method: Literal["rdrop"] = "rdrop"
    alpha: Annotated[float, Field(ge=0.0)] = 0.5
    """Weight of the consistency term. With ``form: glue``, 0.5 is the authors' GLUE code:
    0.5 x the mean of the two KL directions, summed over the batch (docs/methods.md)."""
    form: Literal["glue", "readme"] = "glue"
    """``glue``: the authors' BERT GLUE code (both task losses summed; regression compares the
    two predictions by 2 x their mean squared difference). ``readme``: their README's snippet
    (the mean of the two task losses; the same KL term)."""

    def forward_graphs(self) -> int:
        """Two: both passes' logits enter the one loss, so both graphs live until its backward
        (:meth:`RdropMethod.training_step <addrop_cli.methods.rdrop.RdropMethod.training_step>`)."""
        return 2


class MixoutParams(MethodConfig):
    """Mixout: linear layers mix their weights with the pre-trained ones, dropout off."""

    method: Literal["mixout"] = "mixout"
    p: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    """Mix probability: each input column of a weight matrix is replaced by its pre-trained
    value with probability p (rescaled by 1 / (1 - p)); 0 leaves the model as it is. 0.1 is the
    BERT GLUE recipe's (revisit-bert-finetuning's ``--mixout 0.1``)."""

    def adapter_problem(self) -> str | None:
        return (
            "Mixout mixes each Linear layer's fine-tuned weights with its pre-trained ones, and an "
            "adapter keeps those weights frozen at their pre-trained values (the mix is then the "
            "identity: Mixout would only switch dropout off)"
        )


AddropConfig = AddropParams
"""The library's name for AD-DROP's configuration: one class for the spec and for user scripts."""


class ChildtuningParams(MethodConfig):
    """Child-Tuning: each step updates a child network (D: fixed by Fisher info; F: random).

    D keeps the entries with the highest Fisher information, chosen once before training; F
    draws a fresh random mask each step (docs/methods.md)."""

    method: Literal["childtuning"] = "childtuning"
    mode: Literal["d", "f"] = "d"
    """``d``: Child-Tuning_D, the top ``reserve`` fraction of the encoder layers' entries by
    Fisher information (one pass over the training data before training). ``f``:
    Child-Tuning_F, a Bernoulli(``reserve``) mask on every gradient each step, times 1/reserve."""
    reserve: Probability = 0.3
    """The fraction of entries updated: the authors' run.sh (``REVERSE_P=0.3``)."""

    def adapter_problem(self) -> str | None:
        return (
            "Child-Tuning updates a child network of the pre-trained weights, which an adapter "
            "freezes; on the adapter's own weights Child-Tuning_D's Fisher information of every "
            "LoRA A matrix is 0 at the start (B = 0), so D would never update them"
        )
