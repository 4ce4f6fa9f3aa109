"""The early-stopping record."""

from renet_jax.early_stopping import EarlyStopping


def test_counts_evaluations_without_improvement_and_round_trips():
  stopping = EarlyStopping(patience=2)
  assert stopping.update(0.5, step=10) and not stopping.should_stop
  assert not stopping.update(0.5, step=20)  # equal is not better
  assert stopping.update(0.7, step=30) and stopping.evals_without_improvement == 0
  assert not stopping.update(0.1, step=40) and not stopping.should_stop
  assert not stopping.update(0.6, step=50) and stopping.should_stop
  assert (stopping.best_score, stopping.best_step) == (0.7, 30)
  again = EarlyStopping.from_json(2, stopping.to_json())
  assert again == stopping
  assert not EarlyStopping.from_json(0, stopping.to_json()).should_stop  # 0: never
