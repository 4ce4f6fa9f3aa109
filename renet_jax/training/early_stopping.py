"""The early-stopping record: the best validation score so far, its step, and how many
evaluations have passed without beating it. Saved in every checkpoint. `min_step`:
training never stops early before it (the released ReSeg script's "at least 100
epochs")."""

import dataclasses


@dataclasses.dataclass
class EarlyStopping:
  patience: int  # evaluations without improvement that stop training; 0 = never
  min_step: int = 0
  best_score: float | None = None  # higher is better (scores are negated otherwise)
  best_step: int = 0
  evals_without_improvement: int = 0
  last_step: int = 0

  def update(self, score: float, step: int) -> bool:
    """Records an evaluation; True if it is the best so far."""
    self.last_step = step
    if self.best_score is None or score > self.best_score:
      self.best_score, self.best_step, self.evals_without_improvement = score, step, 0
      return True
    self.evals_without_improvement += 1
    return False

  @property
  def should_stop(self) -> bool:
    return (bool(self.patience) and self.evals_without_improvement >= self.patience
            and self.last_step >= self.min_step)

  def to_json(self) -> dict:
    return {"best_score": self.best_score, "best_step": self.best_step,
            "evals_without_improvement": self.evals_without_improvement,
            "last_step": self.last_step}

  @classmethod
  def from_json(cls, patience: int, saved: dict, min_step: int = 0) -> "EarlyStopping":
    return cls(patience, min_step, **saved)
