"""Early stopping on the task's main metric, and the best evaluation so far."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class EarlyStopping:
    """Tracks the best score of the selection split; says stop after ``patience`` evaluations
    without improvement (never, when patience is None). Its state is plain data, so a resumed
    run continues with the same patience count."""

    metric: str
    higher_is_better: bool
    patience: int | None
    best_score: float | None = None
    evals_since_best: int = 0

    def update(self, score: float) -> bool:
        """Record one evaluation's score; True when it is the best so far (ties keep the first)."""
        improved = self.best_score is None or (
            score > self.best_score if self.higher_is_better else score < self.best_score
        )
        if improved:
            self.best_score, self.evals_since_best = score, 0
        else:
            self.evals_since_best += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.evals_since_best >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "evals_since_best": self.evals_since_best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state["best_score"]
        self.evals_since_best = state["evals_since_best"]
