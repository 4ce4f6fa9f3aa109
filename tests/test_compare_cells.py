"""launch.compare_cells: the per-cell table from run folders, against hand-computed values."""

import json

import pytest

from launch import compare_cells


def _run(folder, test, validations, step_s=2.0, epochs=None):
  """A run whose epoch k (1-based) has a train row of `step_s` and a validation row."""
  folder.mkdir(parents=True)
  rows = []
  for k, v in enumerate(validations, 1):
    rows.append({"step": 10 * k, "split": "train", "time": k, "step_s": step_s,
                 "epoch": float(k)})
    rows.append({"step": 10 * k, "split": "validation", "time": k, "accuracy": v,
                 "epoch": float(k)})
  (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (folder / "results.json").write_text(json.dumps(
      {"test_accuracy": test, "epochs": float(epochs or len(validations))}))


def test_table_by_hand(tmp_path):
  _run(tmp_path / "digits" / "gru" / "seed0", 0.90, [0.5, 0.8, 0.9])
  _run(tmp_path / "digits" / "gru" / "seed1", 0.94, [0.6, 0.7, 0.7])  # best 0.7
  # target: mean of the GRU seeds' best validation accuracy = 0.8
  _run(tmp_path / "digits" / "mingru" / "seed0", 0.80, [0.81, 0.9], step_s=1.0)
  _run(tmp_path / "digits" / "mingru" / "seed1", 0.70, [0.5, 0.6, 0.85, 0.9], step_s=1.0)
  _run(tmp_path / "digits" / "mingru" / "seed2", 0.60, [0.1], step_s=1.0)
  rows = compare_cells.compare(str(tmp_path))
  assert [r["cell"] for r in rows] == ["gru", "mingru"]
  gru, mingru = rows
  assert gru["target"] == pytest.approx(0.8) and gru["reached"] == "1/2"
  assert gru["epochs_to_target"] == 2.0 and gru["step_s_to_target"] == 4.0
  assert mingru["reached"] == "2/3"
  assert mingru["epochs_to_target"] == pytest.approx(2.0)  # median of 1 and 3
  assert mingru["step_s_to_target"] == pytest.approx(2.0)  # median of 1 s and 3 s
  assert mingru["test_mean"] == pytest.approx(0.7) and mingru["test_min"] == 0.6
  assert mingru["step_s_per_epoch"] == pytest.approx(1.0)
  assert mingru["best_validation"] == pytest.approx((0.9 + 0.9 + 0.1) / 3)
  table = compare_cells.markdown(rows, "gru")
  assert "| digits | mingru | 3 | accuracy 70.00 (60.00-80.00) | 63.33 | 2.3 |" in table


def test_a_cell_kept_elsewhere_joins_its_task(tmp_path):
  _run(tmp_path / "elsewhere" / "seed0", 0.9, [0.8])
  _run(tmp_path / "cells" / "horse" / "mingru" / "seed0", 0.85, [0.7, 0.8], step_s=3.0)
  rows = compare_cells.compare(str(tmp_path / "cells"), "gru",
                               {("horse", "gru"): str(tmp_path / "elsewhere")})
  assert [(r["task"], r["cell"]) for r in rows] == [("horse", "gru"), ("horse", "mingru")]
  assert rows[1]["epochs_to_target"] == 2.0 and rows[1]["step_s_to_target"] == 6.0
