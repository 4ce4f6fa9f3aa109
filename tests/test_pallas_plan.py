"""renet_jax.kernels.pallas_plan: how a layout is chosen from the table of real sm_90 compiles
(a synthetic table), and the committed table itself: it covers every recurrence shape the
paper configs run, the layouts it lets `impl="auto"` take are within the H100/H200
limits, and, where the Triton compiler is installed, compiling a chosen layout again
gives what the table says."""

import importlib.util

import jax.numpy as jnp
import pytest

from experiments import pallas_compile
from renet_jax.kernels import pallas_plan, recurrence

H100 = {"registers_per_thread": 255, "shared_bytes_per_block": 227 * 1024}
OPERANDS = ("bfloat16", "float32", "tf32", "tf32x3")


def _kernel(registers=100, spills=0, shared=50_000):
  return {"registers": registers, "spill_bytes": spills, "shared_bytes": shared}


def _entry(bb, warps, resident, forward=None, backward=None, units=128, op="bfloat16"):
  return {"kind": "gru", "padded_units": units, "operand": op, "block_batch": bb,
          "num_warps": warps, "resident": resident, "num_stages": 1,
          "forward": forward or _kernel(), "backward": backward or _kernel()}


@pytest.fixture
def synthetic_table(monkeypatch):
  layouts = [
      _entry(16, 8, True), _entry(32, 8, True), _entry(64, 8, True, backward=_kernel(spills=8)),
      _entry(16, 4, False), _entry(32, 4, False), _entry(64, 4, False),
      # 256 units: nothing fits; one compiles with spills, one overflows shared memory.
      _entry(16, 8, False, forward=_kernel(255, 184), units=256),
      _entry(32, 8, False, forward=_kernel(shared=300_000), units=256),
      _entry(16, 8, False, backward={"error": "ptxas failed"}, units=512)]
  monkeypatch.setattr(pallas_plan, "table", lambda path=None: {"layouts": layouts})


def test_plan_prefers_resident_weights_and_the_largest_tile_that_fills_the_sms(
    synthetic_table):
  # 2 * ceil(4224 / 32) = 264 programs >= 132 SMs; bb 64 would fill them but spills.
  assert pallas_plan.plan("gru", 100, 4224, jnp.bfloat16) == pallas_plan.KernelPlan(32, 8, True)
  # Few sequences: no tile fills the SMs, so the smallest (most programs).
  assert pallas_plan.plan("gru", 100, 100, jnp.bfloat16) == pallas_plan.KernelPlan(16, 8, True)


def test_plan_takes_spilling_layouts_only_when_asked(synthetic_table):
  assert pallas_plan.plan("gru", 256, 1000, jnp.bfloat16) is None
  assert pallas_plan.plan("gru", 256, 1000, jnp.bfloat16, allow_spills=True) == \
      pallas_plan.KernelPlan(16, 8, False)  # the one within shared memory
  assert pallas_plan.plan("gru", 320, 1000, jnp.bfloat16, allow_spills=True) is None
  # Shapes and operands the table does not hold get no plan, so auto never runs them.
  assert pallas_plan.plan("lstm", 100, 1000, jnp.bfloat16) is None
  assert pallas_plan.plan("gru", 100, 1000, jnp.float32, "tf32") is None


def test_operand_names_how_the_recurrent_products_run():
  assert pallas_plan.operand(jnp.bfloat16, "float32") == "bfloat16"
  assert pallas_plan.operand(jnp.float32, "tf32x3") == "tf32x3"
  assert pallas_plan.padded_units(100) == 128 and pallas_plan.padded_units(320) == 512
  assert pallas_plan.padded_units(5) == 16


def test_candidates_skip_resident_weights_that_overflow_shared_memory():
  # 3 gates of 256x256 bf16 = 384 KiB > 227 KiB: streamed only; 128 units fit.
  assert not any(p.resident for p in pallas_plan.candidates("gru", 256, jnp.bfloat16,
                                                           "float32"))
  assert any(p.resident for p in pallas_plan.candidates("gru", 100, jnp.bfloat16, "float32"))


def _config_shapes():
  return pallas_compile.config_shapes()


def test_the_committed_table_covers_every_config_shape_and_operand():
  assert pallas_plan.table()["target"] == "sm_90a"
  for shape in _config_shapes():
    for op in (["bfloat16"] if shape["dtype"] == "bfloat16" else OPERANDS[1:]):
      precision = "float32" if op == "bfloat16" else op
      entries = pallas_plan.layouts(shape["kind"], shape["units"], shape["dtype"], precision)
      assert entries, (shape, op)
      for e in entries:
        for kernel in (e["forward"], e["backward"]):
          assert "error" in kernel or {"registers", "spill_bytes", "shared_bytes"} <= set(kernel)


def test_auto_takes_only_layouts_within_the_h100_limits_at_every_config_shape():
  chosen = 0
  for shape in _config_shapes():
    for precision in ("float32", "tf32", "tf32x3"):
      p = pallas_plan.plan(shape["kind"], shape["units"], shape["sequences"], shape["dtype"],
                           precision)
      if p is None:
        # Then auto runs the kernels on CUDA only where they were measured faster, in the
        # compiled layout that spills least (what the measurement ran), and never where
        # no layout compiles.
        key = (shape["kind"], pallas_plan.padded_units(shape["units"]),
               pallas_plan.operand(shape["dtype"], precision))
        args = ("cuda", shape["kind"], shape["units"], shape["sequences"], shape["dtype"],
                precision)
        measured = recurrence.PALLAS_MEASURED_FASTER.pop(key, None)
        try:
          assert recurrence.auto_impl(*args) != "pallas"
          recurrence.PALLAS_MEASURED_FASTER[key] = 9.0
          spilling = pallas_plan.plan(*args[1:], allow_spills=True)
          assert (recurrence.auto_impl(*args) == "pallas") == (spilling is not None)
        finally:
          recurrence.PALLAS_MEASURED_FASTER.pop(key)
          if measured is not None:
            recurrence.PALLAS_MEASURED_FASTER[key] = measured
        continue
      chosen += 1
      entry = next(e for e in pallas_plan.layouts(shape["kind"], shape["units"],
                                                  shape["dtype"], precision)
                   if pallas_plan.plan_of_entry(e) == p)
      for kernel in (entry["forward"], entry["backward"]):
        assert kernel["registers"] <= H100["registers_per_thread"], (shape, entry)
        assert kernel["shared_bytes"] <= H100["shared_bytes_per_block"], (shape, entry)
        assert kernel["spill_bytes"] == 0, (shape, entry)
  assert chosen > 0  # the table is not empty of fitting layouts


@pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                    reason="the Triton compiler is not installed (pip install -e '.[kernels]')")
def test_compiling_a_chosen_layout_again_gives_the_table_entry():
  shape = {"kind": "gru", "units": 100, "dtype": "bfloat16", **pallas_compile.TABLE_SHAPE}
  p = pallas_plan.plan("gru", 100, 600, jnp.bfloat16)
  assert p is not None
  entry = next(e for e in pallas_plan.layouts("gru", 100, jnp.bfloat16)
               if pallas_plan.plan_of_entry(e) == p)
  kernels = pallas_compile.kernels_of_shape(shape, p)
  for name in ("forward", "backward"):
    got = pallas_compile.compile_kernel(kernels[name])
    assert got == {k: entry[name][k] for k in got}, (name, got, entry[name])
