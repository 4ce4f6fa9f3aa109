"""The early-stopping record: the best validation score so far, its step, and how many
evaluations have passed without beating it. Saved in every checkpoint."""

import dataclasses


@dataclasses.dataclass
class EarlyStopping:
  patience: int  # evaluations without improvement that stop training; 0 = never
  best_score: float | None = None  # higher is better (scores are negated otherwise)
  best_step: int = 0
  evals_without_improvement: int = 0

  def update(self, score: float, step: int) -> bool:
    """Records an evaluation; True if it is the best so far."""
    if self.best_score is None or score > self.best_score:
      self.best_score, self.best_step, self.evals_without_improvement = score, step, 0
      return True
    self.evals_without_improvement += 1
    return False

  @property
  def should_stop(self) -> bool:
    return bool(self.patience) and self.evals_without_improvement >= self.patience

  def to_json(self) -> dict:
    return {"best_score": self.best_score, "best_step": self.best_step,
            "evals_without_improvement": self.evals_without_improvement}

  @classmethod
  def from_json(cls, patience: int, saved: dict) -> "EarlyStopping":
    return cls(patience, **saved)
