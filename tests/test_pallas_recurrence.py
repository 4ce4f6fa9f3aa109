"""The Pallas recurrence kernels (Pallas' interpret mode on this CPU) against the naive
float64 loop: outputs, and gradients against float64 central finite differences of that
loop, for every cell and GRU form, both directions, awkward sizes, every kernel layout
and bf16; their lowering to Triton for CUDA with explicit precision; every `impl` of the
layer giving the same results; what `impl="auto"` picks and where "pallas" is refused."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import naive
from experiments import pallas_compile
from renet_jax.kernels import pallas_plan, pallas_recurrence, recurrence
from renet_jax.nn.cells import cell_factory
from renet_jax.nn.renet import ReNetLayer


def _naive(kind, weights, xs, reverse):
  """(L, B, U) float64 hidden states from the per-vector loop of tests/naive.py."""
  p = {"input_kernel": weights["input_kernel"], "bias": weights["bias"],
       "recurrent_kernel": weights["kernel"]}
  if "recurrent_bias" in weights:
    p["recurrent_bias"] = weights["recurrent_bias"]
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  xs = np.asarray(xs, np.float64)
  return np.stack([naive.run_line(kind, p, xs[:, b], reverse) for b in range(xs.shape[1])],
                  axis=1)


SIZES = [(1, 1, 5, 2),     # one step, one sequence, units below one tile
         (4, 17, 33, 5)]   # batch over one block, units past a power of two


@pytest.mark.parametrize("kind", recurrence.KINDS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "L{}-B{}-U{}-F{}".format(*s))
def test_kernel_equals_the_naive_loop(kind, reverse, size):
  weights, xs, _ = naive.random_recurrence(kind, *size)
  hs = jax.jit(pallas_recurrence.recurrence, static_argnums=(0, 1))(kind, reverse, weights, xs)
  np.testing.assert_allclose(hs, _naive(kind, weights, xs, reverse), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("kind", recurrence.KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_kernel_gradients_match_float64_finite_differences(kind, reverse):
  weights, xs, cotangent = naive.random_recurrence(kind, 5, 17, 6, 3)
  loss = lambda weights, xs: jnp.sum(pallas_recurrence.recurrence(kind, reverse, weights, xs)
                                     * cotangent)
  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(weights, xs)
  naive_loss = lambda weights, xs: float(np.sum(_naive(kind, weights, xs, reverse)
                                                * np.asarray(cotangent, np.float64)))
  to64 = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float64), t)
  point = to64((weights, xs))
  eps = 1e-6
  for seed in range(2):  # directional derivatives along random directions
    leaves, tree = jax.tree.flatten(point)
    rng = np.random.default_rng(seed)
    direction = jax.tree.unflatten(tree, [rng.normal(size=l.shape) for l in leaves])
    shifted = lambda s: jax.tree.map(lambda a, d: a + s * eps * d, point, direction)
    fd = (naive_loss(*shifted(1)) - naive_loss(*shifted(-1))) / (2 * eps)
    analytic = sum(float(np.vdot(np.asarray(g, np.float64), d)) for g, d in
                   zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    np.testing.assert_allclose(analytic, fd, rtol=2e-4, atol=1e-4)


LAYOUTS = [pallas_plan.KernelPlan(16, 4, True), pallas_plan.KernelPlan(32, 8, False),
           pallas_plan.KernelPlan(64, 4, True)]


@pytest.mark.parametrize("kind", recurrence.KINDS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda p: "B{}-W{}-{}".format(
    p.block_batch, p.num_warps, "resident" if p.resident else "streamed"))
def test_every_layout_gives_the_same_values_and_gradients(kind, layout):
  """Weights loaded once before the time loop or read per step, batch tiles of 16-64
  (the batch of 37 spans several tiles and pads the last): the same hidden states as
  the naive loop, and the same gradients as the lax.scan reference."""
  weights, xs, cotangent = naive.random_recurrence(kind, 4, 37, 9, 3)
  run = lambda r, x: pallas_recurrence.recurrence(kind, True, r, x, plan=layout)
  np.testing.assert_allclose(jax.jit(run)(weights, xs), _naive(kind, weights, xs, True),
                             rtol=2e-5, atol=2e-5)
  grads = jax.jit(jax.grad(lambda r, x: jnp.sum(run(r, x) * cotangent), argnums=(0, 1)))(
      weights, xs)
  want = jax.jit(jax.grad(lambda r, x: jnp.sum(recurrence.recurrence(
      kind, True, r, x, impl="autodiff") * cotangent), argnums=(0, 1)))(weights, xs)
  for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", recurrence.KINDS)
def test_bfloat16_inputs_and_weights_stay_close(kind):
  """bf16 inputs and weights, fp32 products and state: within 0.05 of the fp32 run."""
  weights, xs, cotangent = naive.random_recurrence(kind, 6, 5, 12, 4)
  rec16, xs16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), (weights, xs))
  hs16 = jax.jit(pallas_recurrence.recurrence, static_argnums=(0, 1))(kind, False, rec16, xs16)
  assert hs16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(hs16, np.float32),
                             _naive(kind, weights, xs, False), atol=0.05)
  grads = jax.jit(jax.grad(lambda r, x: jnp.sum(pallas_recurrence.recurrence(
      kind, False, r, x).astype(jnp.float32) * cotangent), argnums=(0, 1)))(rec16, xs16)
  reference = jax.jit(jax.grad(lambda r, x: jnp.sum(recurrence.recurrence(
      kind, False, r, x, impl="autodiff") * cotangent), argnums=(0, 1)))(weights, xs)
  for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
    assert g.dtype == jnp.bfloat16
    scale = float(jnp.abs(r).max()) + 1e-6
    assert float(jnp.abs(g.astype(jnp.float32) - r).max()) / scale < 0.05


@pytest.mark.parametrize("kind", recurrence.KINDS)
def test_kernels_lower_to_triton_for_cuda(kind):
  """Forward and backward lower through Pallas' Triton backend for CUDA (from this
  CPU-only process): one Triton call each, fp32 and bf16, at a ReSeg sweep's shape."""
  for dtype in (jnp.float32, jnp.bfloat16):
    weights, xs, _ = naive.random_recurrence(kind, 45, 40, 100, 16, dtype=dtype)
    grad = jax.jit(jax.grad(lambda r, x: jnp.sum(pallas_recurrence.recurrence(
        kind, True, r, x).astype(jnp.float32)), argnums=(0, 1)))
    text = grad.trace(weights, xs).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("xla.gpu.triton") == 2, (kind, dtype)


def _triton_dots(fn, *args):
  """The input precisions of the dot products in the Triton kernels `fn` lowers to."""
  # IEEE is the dialect's default, which the printer leaves out.
  precision = lambda line: (re.findall(r"inputPrecision = (\w+)", line) or ["ieee"])[0]
  return [[precision(line) for line in k["ir"].splitlines() if "tt.dot " in line]
          for k in pallas_compile.triton_kernels(fn, *args)]


@pytest.mark.parametrize("precision,want", [("float32", "ieee"), ("tf32", "tf32"),
                                            ("tf32x3", "tf32x3")])
def test_float32_products_have_the_precision_asked(precision, want):
  """Triton's default for fp32 dots is TF32: the kernels say IEEE unless TF32 (or three
  TF32 passes) is asked."""
  weights, xs, _ = naive.random_recurrence("lstm", 3, 16, 20, 4)
  fn = jax.grad(lambda r, x: jnp.sum(pallas_recurrence.recurrence(
      "lstm", False, r, x, precision)), argnums=(0, 1))
  forward, backward = _triton_dots(fn, weights, xs)
  assert forward == [want] * 4 and backward == [want] * 4, (forward, backward)


@pytest.mark.slow
def test_every_impl_gives_the_same_layer():
  """impl="auto" picks a valid implementation here; all give the same outputs and
  gradients, with both direction layouts (stacked: one kernel launch for both)."""
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3))
  make = lambda impl, directions: ReNetLayer(5, (2, 2), cell=cell_factory("gru", impl=impl),
                                             directions=directions)
  params = jax.jit(make("autodiff", "separate").init)(jax.random.key(1), x)
  stacked = {"params": jax.tree.map(lambda f, b: jnp.stack([f, b]), *[
      {a: {"both": params["params"][a][d]} for a in ("vertical", "horizontal")}
      for d in ("forward", "backward")])}
  results = {}
  for impl in recurrence.IMPLS:
    for directions, p in (("separate", params), ("stacked", stacked)):
      layer = make(impl, directions)
      results[impl, directions] = jax.jit(jax.value_and_grad(
          lambda p, x: jnp.sum(layer.apply(p, x) ** 2), argnums=(0, 1)))(p, x)
  (want, want_grads) = results["autodiff", "separate"]
  for (impl, directions), (value, grads) in results.items():
    np.testing.assert_allclose(value, want, rtol=1e-5, err_msg=f"{impl} {directions}")
    if directions == "stacked":  # the same gradients, stacked
      grads = (jax.tree.map(lambda g: g, {a: {d: jax.tree.map(lambda s: s[k], grads[0][
          "params"][a]["both"]) for k, d in enumerate(("forward", "backward"))}
          for a in ("vertical", "horizontal")}), grads[1])
      grads = ({"params": grads[0]}, grads[1])
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
      np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5, err_msg=f"{impl} {directions}")


def test_unknown_impl_is_rejected():
  weights, xs, _ = naive.random_recurrence("gru", 2, 2, 3, 2)
  with pytest.raises(ValueError, match=r"Unknown recurrence impl 'cudnn'; choose one of "
                                       r"\('auto', 'custom_vjp', 'autodiff', 'pallas'\)"):
    recurrence.recurrence("gru", False, weights, xs, impl="cudnn")


def test_pallas_is_refused_where_it_has_no_kernel(monkeypatch):
  weights, xs, _ = naive.random_recurrence("gru", 2, 2, 3, 2)
  monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
  with pytest.raises(ValueError, match=r"impl='pallas' has no kernel for platform 'tpu'.*"
                                       r"use impl='auto' or 'custom_vjp'"):
    recurrence.recurrence("gru", False, weights, xs, impl="pallas")


def test_pallas_is_refused_on_a_gpu_where_no_layout_compiles(monkeypatch):
  weights, xs, _ = naive.random_recurrence("gru", 2, 2, 320, 2)
  monkeypatch.setattr(pallas_plan, "table", lambda path=None: {"layouts": []})
  monkeypatch.setattr(pallas_recurrence, "_lowers_for_gpu", lambda: True)
  with pytest.raises(ValueError, match=r"no kernel layout of a gru with 320 units "
                                       r"\(float32 products\) is known to compile.*"
                                       r"use impl='auto'"):
    pallas_recurrence.recurrence("gru", False, weights, xs)


def test_auto_picks_pallas_only_where_measured_faster_and_fitting(monkeypatch):
  fitting = {"registers": 128, "spill_bytes": 0, "shared_bytes": 100_000}
  spilling = {"registers": 255, "spill_bytes": 200, "shared_bytes": 100_000}
  entry = lambda up, op, kernel: {
      "kind": "gru", "padded_units": up, "operand": op, "block_batch": 16, "num_warps": 8,
      "resident": False, "num_stages": 1, "forward": kernel, "backward": kernel}
  monkeypatch.setattr(pallas_plan, "table", lambda path=None: {"layouts": [
      entry(128, "tf32x3", fitting), entry(128, "bfloat16", fitting),
      entry(512, "bfloat16", spilling)]})
  assert recurrence.auto_impl("cuda", "gru", 100, 300, jnp.bfloat16) == "custom_vjp"
  monkeypatch.setattr(recurrence, "PALLAS_MEASURED_FASTER",
                      {("gru", 128, "tf32x3"): 1.5, ("gru", 128, "float32"): 1.5,
                       ("gru", 512, "bfloat16"): 2.0})
  assert recurrence.auto_impl("cuda", "gru", 100, 300, jnp.float32, "tf32x3") == "pallas"
  assert recurrence.auto_impl("cpu", "gru", 100, 300, jnp.float32, "tf32x3") == "custom_vjp"
  # Not measured faster in bf16; measured, but no compiled layout for IEEE fp32.
  assert recurrence.auto_impl("cuda", "gru", 100, 300, jnp.bfloat16) == "custom_vjp"
  assert recurrence.auto_impl("cuda", "gru", 100, 300, jnp.float32) == "custom_vjp"
  # Measured faster with its only layout, which spills: that measured layout runs.
  assert recurrence.auto_impl("cuda", "gru", 320, 300, jnp.bfloat16) == "pallas"
  # Measured faster, but no layout compiles: never a kernel that cannot compile.
  monkeypatch.setattr(pallas_plan, "table", lambda path=None: {"layouts": [
      entry(512, "bfloat16", {"error": "out of resources"})]})
  assert recurrence.auto_impl("cuda", "gru", 320, 300, jnp.bfloat16) == "custom_vjp"


def test_auto_choices_name_every_sweep_of_a_layer():
  x = jnp.zeros((2, 4, 6, 3))
  layer = ReNetLayer(5, (2, 2), cell=cell_factory("lstm"))
  params = jax.eval_shape(layer.init, jax.random.key(0), x)
  choices = recurrence.auto_choices(layer.apply, params, x)
  # Vertical sweep: 2 images x 3 columns of 2 patches; horizontal: 2 x 2 rows of 3.
  assert choices == [
      {"kind": "lstm", "units": 5, "sequences": 6, "length": 2, "dtype": "float32",
       "precision": "float32", "impl": recurrence.AUTO},
      {"kind": "lstm", "units": 5, "sequences": 4, "length": 3, "dtype": "float32",
       "precision": "float32", "impl": recurrence.AUTO}]
