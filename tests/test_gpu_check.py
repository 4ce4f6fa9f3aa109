"""experiments.gpu_check: its CPU mode end to end on tiny shapes (every section writes
its rows, accuracy within float tolerances of the float64 reference), and a failing row
recorded as an error row with the rows before it kept, JSON lines and Markdown both."""

import json
import os
import subprocess
import sys

import pytest

from experiments import gpu_check

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_failing_row_is_an_error_row_and_nothing_is_lost(tmp_path):
  log = gpu_check.Log(str(tmp_path), budget_s=1e9)
  log.run("layers", "good", lambda: {"fwd_bwd_ms": 1.5})
  log.run("layers", "bad", lambda: 1 / 0, impl="pallas")
  log.run("layers", "after", lambda: {"fwd_bwd_ms": 2.5})
  rows = [json.loads(l) for l in (tmp_path / "gpu_check.jsonl").read_text().splitlines()]
  assert [r["name"] for r in rows] == ["good", "bad", "after"]
  assert rows[1]["error"] == "ZeroDivisionError: division by zero"
  assert rows[1]["impl"] == "pallas" and "traceback" in rows[1]
  md = (tmp_path / "gpu_check.md").read_text()
  assert "| good |" in md and "ZeroDivisionError" in md and "| after |" in md
  log.budget_s = 0  # past the budget: recorded, not run
  log.run("layers", "late", lambda: 1 / 0)
  last = json.loads((tmp_path / "gpu_check.jsonl").read_text().splitlines()[-1])
  assert last["name"] == "late" and "skipped" in last and "error" not in last


@pytest.mark.slow
def test_cpu_mode_runs_every_section_end_to_end(tmp_path):
  out = tmp_path / "check"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.gpu_check", f"--out={out}", "--configs=digits",
       "--mnist_s=30"], cwd=REPO, capture_output=True, text=True, timeout=900,
      env=dict(os.environ, PYTHONPATH=REPO))
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(l) for l in (out / "gpu_check.jsonl").read_text().splitlines()]
  assert not [r for r in rows if "error" in r], [r for r in rows if "error" in r]
  sections = {r["section"] for r in rows}
  assert sections == {"environment", "accuracy", "layers", "training_steps", "mnist_run"}
  accuracy = [r for r in rows if r["section"] == "accuracy" and "impl" in r]
  assert {r["impl"] for r in accuracy} == {"auto", "custom_vjp", "autodiff", "pallas"}
  for r in accuracy:
    bound = 1e-5 if r["dtype"] == "float32" else 5e-2
    assert r["forward_rel_error"] < bound and r["grad_rel_error"] < bound, r
  layers = [r for r in rows if r["section"] == "layers" and "fwd_bwd_ms" in r]
  assert {(r["variant"], r["impl"]) for r in layers} == {("fp32", "pallas"), ("fp32", "auto"),
                                                         ("fp32", "custom_vjp")}
  (table,) = [r for r in rows if r["name"] == "auto_table"]  # pallas over custom_vjp
  assert set(table["pallas_measured_faster"]) == {"gru/16/float32", "gru/16/tf32x3"}
  assert all(v > 0 for v in table["pallas_measured_faster"].values())
  steps = [r for r in rows if r["section"] == "training_steps"]
  assert [r["dtype"] for r in steps] == ["float32", "bfloat16"] and "bf16_speedup" in steps[1]
  (run,) = [r for r in rows if r["section"] == "mnist_run"]
  assert run["test_accuracy"] > 0.5 and run["recurrences"]
  assert (out / "mnist_run" / "results.json").exists()  # (its checkpoints stay out)
  assert not (out / "mnist_run" / "checkpoints").exists()
  assert (out / "gpu_check.md").read_text().count("## ") == 5
