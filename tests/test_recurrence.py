"""The recurrences: hand-written backward == autodiff, forward == naive float64 loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import naive
from renet_jax.kernels import recurrence


def _random_problem(kind, length=5, batch=3, units=4, features=3, seed=0):
  return naive.random_recurrence(kind, length, batch, units, features, seed)


@pytest.mark.parametrize("kind", recurrence.KINDS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("in_loop", [False, True])
def test_custom_vjp_gradients_equal_autodiff(kind, reverse, in_loop, monkeypatch):
  # Both ways of forming the input gradients (inside the backward loop for large
  # batches, after it for small ones).
  monkeypatch.setattr(recurrence, "_IN_LOOP_MIN_BATCH", 1 if in_loop else 10**9)
  weights, xs, cotangent = _random_problem(kind)
  got, want = _gradients(kind, reverse, weights, xs, cotangent)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", recurrence.KINDS)
@pytest.mark.parametrize("in_loop", [False, True])
def test_float64_gradients_are_float64_exact(kind, in_loop, monkeypatch):
  """The backward's sums over time keep float64 (they were float32, which left float64
  gradients off by up to 1e-6 relative: tests/test_renet.py's finite differences)."""
  monkeypatch.setattr(recurrence, "_IN_LOOP_MIN_BATCH", 1 if in_loop else 10**9)
  with jax.enable_x64(True):
    weights, xs, cotangent = _random_problem(kind, length=9)
    weights, xs, cotangent = jax.tree.map(lambda a: a.astype(jnp.float64),
                                          (weights, xs, cotangent))
    got, want = _gradients(kind, False, weights, xs, cotangent)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert g.dtype == np.float64
    np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def _gradients(kind, reverse, weights, xs, cotangent):
  """d sum(recurrence * cotangent) / d (weights, xs) by the custom_vjp and by autodiff."""
  def loss(impl):
    return lambda weights, xs: jnp.sum(
        recurrence.recurrence(kind, reverse, weights, xs, impl=impl) * cotangent)

  got, want = (jax.jit(jax.grad(loss(impl), argnums=(0, 1)))(weights, xs)
               for impl in ("custom_vjp", "autodiff"))
  assert jax.tree.structure(got) == jax.tree.structure(want)
  return got, want


@pytest.mark.parametrize("kind", recurrence.KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_equals_naive_loop(kind, reverse):
  weights, xs, _ = _random_problem(kind)
  hs = recurrence.recurrence(kind, reverse, weights, xs)
  p = {"input_kernel": np.asarray(weights["input_kernel"], np.float64),
       "bias": np.asarray(weights["bias"], np.float64),
       "recurrent_kernel": np.asarray(weights["kernel"], np.float64)}
  if "recurrent_bias" in weights:
    p["recurrent_bias"] = np.asarray(weights["recurrent_bias"], np.float64)
  xs64 = np.asarray(xs, np.float64)
  for b in range(xs.shape[1]):
    want = naive.run_line(kind, p, xs64[:, b], reverse=reverse)
    np.testing.assert_allclose(hs[:, b], want, rtol=1e-5, atol=1e-5)


def test_unknown_kind_and_impl_are_rejected():
  weights, xs, _ = _random_problem("gru")
  with pytest.raises(ValueError, match="Unknown recurrence kind 'gur'"):
    recurrence.recurrence("gur", False, weights, xs)
  with pytest.raises(ValueError, match="Unknown recurrence impl"):
    recurrence.recurrence("gru", False, weights, xs, impl="fast")


def test_backward_form_follows_the_platform_lowered_for(monkeypatch):
  """Input gradients inside the reverse loop are a CPU choice: lowering the same
  gradient for CUDA (from this CPU-only process) must keep them out of the loop, whose
  carry then has no input-kernel gradient (features x gates*units)."""
  monkeypatch.setattr(recurrence, "_IN_LOOP_MIN_BATCH", 1)
  weights, xs, _ = _random_problem("gru", features=5, units=7)
  grad = jax.jit(jax.grad(
      lambda weights, xs: recurrence.recurrence("gru", False, weights, xs).sum(),
      argnums=(0, 1)))
  carries_input_kernel_grad = {}
  for platform in ("cpu", "cuda"):
    text = jax.export.export(grad, platforms=[platform])(weights, xs).mlir_module()
    loops = [line for line in text.splitlines() if "stablehlo.while" in line]
    assert len(loops) == 2  # the forward and the reverse scan
    carries_input_kernel_grad[platform] = any("tensor<5x21xf32>" in l for l in loops)
  assert carries_input_kernel_grad == {"cpu": True, "cuda": False}


def test_auto_runs_the_kernels_where_the_h200_measured_them_faster():
  """PALLAS_MEASURED_FASTER is the committed H200 check's auto_table row; auto runs the
  Pallas kernels on CUDA there (GRU, 256 units, bf16: MNIST layer 1 at batch 64 is 896
  sequences a sweep) and custom_vjp for every other cell, width, operand and platform."""
  import json
  import os
  path = os.path.join(os.path.dirname(__file__), "..", "results", "gpu", "h200-2026-12-04",
                      "call1-gpu_check.jsonl")
  with open(path) as f:
    (row,) = [r for r in map(json.loads, f) if r.get("name") == "auto_table"]
  measured = {tuple(int(p) if p.isdigit() else p for p in k.split("/")): v
              for k, v in row["pallas_measured_faster"].items()}
  assert recurrence.PALLAS_MEASURED_FASTER == measured == {("gru", 256, "bfloat16"): 1.723}
  auto = lambda platform, kind="gru", units=256, dtype=jnp.bfloat16, precision="float32": \
      recurrence.auto_impl(platform, kind, units, 896, dtype, precision)
  assert auto("cuda") == "pallas"
  assert auto("cuda", units=250) == "pallas"  # padded to the same 256
  for platform in ("cpu", "rocm", "tpu"):
    assert auto(platform) == "custom_vjp"
  assert auto("cuda", dtype=jnp.float32) == "custom_vjp"  # measured slower: no layout
  assert auto("cuda", dtype=jnp.float32, precision="tf32x3") == "custom_vjp"
  assert auto("cuda", kind="lstm") == "custom_vjp"
  assert auto("cuda", kind="gru_reset_after") == "custom_vjp"
  assert auto("cuda", units=100) == "custom_vjp"  # CamVid/Horse width: not measured
