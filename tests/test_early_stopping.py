"""The early-stopping record."""

from renet_jax.training.early_stopping import EarlyStopping


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


def test_never_stops_before_min_step():
  stopping = EarlyStopping(patience=1, min_step=30)
  stopping.update(0.9, step=10)
  stopping.update(0.1, step=20)
  assert stopping.evals_without_improvement == 1 and not stopping.should_stop
  stopping.update(0.1, step=30)
  assert stopping.should_stop
  assert EarlyStopping.from_json(1, stopping.to_json(), min_step=40) == EarlyStopping(
      1, 40, 0.9, 10, 2, 30)
  # Records saved before last_step existed still load.
  old = {k: v for k, v in stopping.to_json().items() if k != "last_step"}
  assert EarlyStopping.from_json(1, old).last_step == 0
