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


def test_the_plan_puts_the_layer_table_first_shape_major_and_counts_what_fits(
    tmp_path, monkeypatch):
  """On a GPU: per shape fp32 then bf16 (custom_vjp, cuDNN, the kernels where a layout
  compiles), then the MNIST and CIFAR-10 steps, then the rest; auto is never a timed row
  but every layer row says what it resolves to. `fits` counts rows in order."""
  monkeypatch.setattr(gpu_check.recurrence, "lowering_platform", lambda: "cuda")
  shapes = {k: gpu_check.benchmarks.SHAPES[k] for k in ("mnist", "camvid")}
  (tmp_path / "mnist").mkdir()  # data folders the plan looks for (not read: not run)
  (tmp_path / "cifar10").mkdir()
  rows = gpu_check.plan(False, shapes, gpu_check.SECTIONS, [], str(tmp_path),
                        str(tmp_path), str(tmp_path), {})
  layers = [(r.fields["shape"], r.fields["variant"], r.fields["impl"],
             r.fields.get("precision")) for r in rows if r.section == "layers"]
  first = [row for row in layers if row[1] in ("fp32", "bf16")][:9]
  assert first == [("mnist", "fp32", "custom_vjp", "float32"),
                   ("mnist", "fp32", "torch", None),
                   ("mnist", "bf16", "custom_vjp", "float32"),
                   ("mnist", "bf16", "pallas", "float32"),  # the measured kernel
                   ("mnist", "bf16", "torch", None),
                   ("camvid", "fp32", "custom_vjp", "float32"),
                   ("camvid", "fp32", "pallas", "float32"),  # a layout compiles at 128
                   ("camvid", "fp32", "torch", None),
                   ("camvid", "bf16", "custom_vjp", "float32")]
  assert "auto" not in {impl for _, _, impl, _ in layers}
  bf16 = [r for r in rows if r.section == "layers" and r.fields["shape"] == "mnist"
          and r.fields["variant"] == "bf16" and r.fields["impl"] != "torch"
          and "cell" not in r.fields]
  assert {r.fields["impl"]: r.fields["is_auto"] for r in bf16} == {
      "custom_vjp": False, "pallas": True}  # what auto runs on CUDA
  sections = [r.section for r in rows]
  steps = [i for i, r in enumerate(rows) if r.section == "training_steps"]
  assert [rows[i].name for i in steps[:4]] == ["mnist", "mnist", "cifar10", "cifar10"]
  assert max(i for i, s in enumerate(sections) if s == "layers"
             and rows[i].fields["variant"] in ("fp32", "bf16") and "cell" not in rows[i].fields
             and rows[i].fields.get("precision") != "tf32x3") < steps[0]
  # The parallel cells, both scans, after the MNIST/CIFAR-10 steps, before the rest.
  parallel = [i for i, r in enumerate(rows) if "cell" in r.fields]
  assert [(rows[i].fields["cell"], rows[i].fields["impl"]) for i in parallel[:4]] == [
      ("mingru", "sequential"), ("mingru", "associative"), ("minlstm", "sequential"),
      ("minlstm", "associative")]
  assert len(parallel) == 2 * 2 * 2 * 2  # shapes x variants x cells x scans
  assert steps[3] < parallel[0] and parallel[-1] < sections.index("accuracy")
  assert {rows[i].fields["auto_runs"] for i in parallel} == {"sequential"}  # not measured
  assert steps[0] < sections.index("accuracy") and sections[-1] == "mnist_run"
  skipped = {r.name for r in rows if r.skip and r.section == "training_steps"}
  assert skipped == {"weizmann_horse:vgg", "camvid:vgg"}  # no data for them here
  # fits: in order, a row that would end past the budget is left out, later ones that
  # still fit are counted (as Log.run skips and goes on).
  rows = [gpu_check.Row("layers", str(e), {}, None, e) for e in (10.0, 50.0, 30.0, 5.0, 1.0)]
  assert gpu_check.fits(rows, 45.0) == (3, 45.0)
  rows[0].skip = "no data"
  assert gpu_check.fits(rows, 45.0) == (3, 36.0)


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
  (estimate,) = [r for r in rows if r["name"] == "estimate"]
  # Tiny rows: all that can run here (not the cuDNN ones without torch) fit in 480 s.
  assert estimate["estimated_to_fit"] == estimate["rows"] - estimate["cannot_run_here"]
  accuracy = [r for r in rows if r["section"] == "accuracy" and "impl" in r]
  assert {r["impl"] for r in accuracy} == {"custom_vjp", "autodiff", "pallas"}
  assert {r["auto_runs"] for r in accuracy} == {"custom_vjp"}  # CPU
  for r in accuracy:
    bound = 1e-5 if r["dtype"] == "float32" else 5e-2
    assert r["forward_rel_error"] < bound and r["grad_rel_error"] < bound, r
  parallel = [r for r in rows if r["section"] == "layers" and "cell" in r]
  assert [(r["cell"], r["impl"], "fwd_bwd_ms" in r) for r in parallel] == [
      (c, i, True) for c in ("mingru", "minlstm") for i in ("sequential", "associative")]
  layers = [r for r in rows if r["section"] == "layers" and "fwd_bwd_ms" in r
            and "cell" not in r and r["impl"] != "torch"]  # torch: where it is installed
  assert [(r["variant"], r["impl"]) for r in layers] == [
      ("fp32", "custom_vjp"), ("fp32", "pallas"), ("bf16", "custom_vjp"), ("bf16", "pallas")]
  assert all(r["compile_s"] > 0 and r["time_s"] > 0 for r in layers)
  assert [r["is_auto"] for r in layers] == [True, False, True, False]
  # The auto table's ratios are the rows' own times: custom_vjp over pallas.
  (table,) = [r for r in rows if r["name"] == "auto_table"]
  ms = {(r["variant"], r["impl"]): r["fwd_bwd_ms"] for r in layers}
  assert table["pallas_measured_faster"] == {
      "gru/16/float32": round(ms["fp32", "custom_vjp"] / ms["fp32", "pallas"], 3),
      "gru/16/bfloat16": round(ms["bf16", "custom_vjp"] / ms["bf16", "pallas"], 3)}
  steps = [r for r in rows if r["section"] == "training_steps"]
  assert [r["dtype"] for r in steps] == ["float32", "bfloat16"] and "bf16_speedup" in steps[1]
  assert steps[1]["bf16_speedup"] == pytest.approx(steps[0]["ms_per_step"]
                                                   / steps[1]["ms_per_step"], rel=1e-6)
  assert all(r["prepare_s"] >= 0 and r["compile_s"] > 0 and r["time_s"] > 0 for r in steps)
  (run,) = [r for r in rows if r["section"] == "mnist_run"]
  assert run["test_accuracy"] > 0.5 and run["recurrences"]
  assert (out / "mnist_run" / "results.json").exists()  # (its checkpoints stay out)
  assert not (out / "mnist_run" / "checkpoints").exists()
  assert (out / "gpu_check.md").read_text().count("## ") == 5
