"""The linear recurrence of the parallel cells against float64 step-by-step loops and
float64 finite differences, both implementations, both directions, fp32 and bf16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import naive
from renet_jax.kernels import linear_scan

IMPLS = ("associative", "sequential")


def _problem(length=7, shape=(3, 2), seed=0):
  ka, kb, kc = jax.random.split(jax.random.key(seed), 3)
  a = jax.random.uniform(ka, (length,) + shape, minval=0.05, maxval=0.99)
  b = jax.random.normal(kb, (length,) + shape)
  return a, b, jax.random.normal(kc, (length,) + shape)


@pytest.mark.parametrize("impl", IMPLS + ("auto",))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 2e-2)])
def test_outputs_equal_the_float64_loop(impl, reverse, dtype, tol):
  a, b, _ = _problem(length=13)
  a, b = a.astype(dtype), b.astype(dtype)
  h = jax.jit(linear_scan.linear_scan, static_argnums=(2, 3))(a, b, reverse, impl)
  assert h.dtype == dtype
  want = naive.linear_recurrence(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                 reverse)
  # bf16: the inputs are rounded once, the 13-step sum is kept in fp32; the output is
  # rounded once more (relative error 2^-8).
  np.testing.assert_allclose(np.asarray(h, np.float64), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("impl", IMPLS)
def test_float64_stays_float64(impl):
  """float64 values are summed in float64, forward and backward (they were rounded to
  float32)."""
  a, b, cotangent = (np.asarray(v, np.float64) for v in _problem(length=13))
  with jax.enable_x64(True):
    h = linear_scan.linear_scan(a, b, impl=impl)
    grads = jax.grad(lambda a, b: jnp.sum(linear_scan.linear_scan(a, b, impl=impl)
                                          * cotangent), argnums=(0, 1))(a, b)
  assert h.dtype == np.float64
  np.testing.assert_allclose(h, naive.linear_recurrence(a, b), rtol=1e-13, atol=1e-13)
  # d loss / d b_t = g_t and d loss / d a_t = g_t h_(t-1), with g the adjoint run
  # backwards: g_t = c_t + a_(t+1) g_(t+1).
  g = naive.linear_recurrence(np.concatenate([a[1:], np.ones_like(a[:1])]), cotangent,
                              reverse=True)
  h_prev = np.concatenate([np.zeros_like(h[:1]), h[:-1]])
  np.testing.assert_allclose(grads[1], g, rtol=1e-13, atol=1e-13)
  np.testing.assert_allclose(grads[0], g * h_prev, rtol=1e-13, atol=1e-13)


def _finite_differences(f, *args, eps=1e-6):
  grads = []
  for i, x in enumerate(args):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
      plus, minus = [list(args) for _ in range(2)]
      plus[i], minus[i] = x.copy(), x.copy()
      plus[i][idx] += eps
      minus[i][idx] -= eps
      g[idx] = (f(*plus) - f(*minus)) / (2 * eps)
    grads.append(g)
  return grads


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
def test_gradients_equal_float64_finite_differences(impl, reverse, dtype, tol):
  a, b, cotangent = _problem(length=6, shape=(2,))
  a64, b64, c64 = (np.asarray(v, np.float64) for v in (a, b, cotangent))
  loss = lambda a, b: jnp.sum(linear_scan.linear_scan(a, b, reverse, impl)
                              .astype(jnp.float32) * cotangent)
  got = jax.jit(jax.grad(loss, argnums=(0, 1)))(a.astype(dtype), b.astype(dtype))
  want = _finite_differences(
      lambda a, b: np.sum(naive.linear_recurrence(a, b, reverse) * c64), a64, b64)
  for g, w in zip(got, want):
    assert g.dtype == dtype
    np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=tol, atol=tol)


def test_long_sequences_stay_finite_and_exact():
  """120 steps of gates near 0 (the products underflow fp32): no NaN, and equal."""
  a, b, _ = _problem(length=120)
  a = a * 1e-3
  want = naive.linear_recurrence(np.asarray(a, np.float64), np.asarray(b, np.float64))
  for impl in IMPLS:
    h = jax.jit(linear_scan.linear_scan, static_argnames="impl")(a, b, impl=impl)
    np.testing.assert_allclose(h, want, rtol=1e-5, atol=1e-6)


def test_auto_choice_follows_the_measured_table(monkeypatch):
  monkeypatch.setattr(linear_scan, "AUTO_ASSOCIATIVE_MIN_LENGTH", {"cpu": 10, "cuda": None})
  assert linear_scan.auto_impl("cpu", 9) == "sequential"
  assert linear_scan.auto_impl("cpu", 10) == "associative"
  assert linear_scan.auto_impl("cuda", 1000) == "sequential"
  assert linear_scan.auto_impl("tpu", 1000) == "sequential"  # not in the table
  # A symbolic length (an exported model's image size) cannot be scanned associatively.
  (length,) = jax.export.symbolic_shape("t")
  assert linear_scan.auto_impl("cpu", length) == "sequential"


def test_exports_with_a_symbolic_length():
  a, b, _ = _problem(length=5)
  f = jax.jit(lambda a, b: linear_scan.linear_scan(a, b))
  shape = jax.export.symbolic_shape("t, 3, 2")
  spec = jax.ShapeDtypeStruct(shape, jnp.float32)
  exported = jax.export.export(f, platforms=["cpu"])(spec, spec)
  np.testing.assert_allclose(exported.call(a, b), f(a, b), rtol=1e-6)


def test_bad_arguments_are_named():
  a, b, _ = _problem()
  with pytest.raises(ValueError, match="Unknown linear-scan impl 'parallel'"):
    linear_scan.linear_scan(a, b, impl="parallel")
  with pytest.raises(ValueError, match="one shape"):
    linear_scan.linear_scan(a, b[:, :1])
