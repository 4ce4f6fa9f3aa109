"""The recurrences: hand-written backward == autodiff, forward == naive float64 loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import naive
from renet_jax import recurrence


def _random_problem(kind, length=5, batch=3, units=4, seed=0):
  gates = recurrence.num_gates(kind)
  k = jax.random.split(jax.random.key(seed), 5)
  rec = {"kernel": 0.6 * jax.random.normal(k[0], (units, gates * units)),
         "bias": jax.random.normal(k[4], (gates * units,))}
  if kind == "gru_reset_after":
    rec["recurrent_bias"] = jax.random.normal(k[1], (gates * units,))
  gx = jax.random.normal(k[2], (length, batch, gates * units))
  cotangent = jax.random.normal(k[3], (length, batch, units))
  return rec, gx, cotangent


@pytest.mark.parametrize("kind", recurrence.KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_custom_vjp_gradients_equal_autodiff(kind, reverse):
  rec, gx, cotangent = _random_problem(kind)

  def loss(impl):
    return lambda rec, gx: jnp.sum(
        recurrence.recurrence(kind, reverse, rec, gx, impl=impl) * cotangent)

  got = jax.grad(loss("custom_vjp"), argnums=(0, 1))(rec, gx)
  want = jax.grad(loss("autodiff"), argnums=(0, 1))(rec, gx)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", recurrence.KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_equals_naive_loop(kind, reverse):
  rec, gx, _ = _random_problem(kind)
  hs = recurrence.recurrence(kind, reverse, rec, gx)
  # A cell whose input projection is the identity reads gx directly.
  width = gx.shape[-1]
  p = {"input_kernel": np.eye(width), "bias": np.asarray(rec["bias"], np.float64),
       "recurrent_kernel": np.asarray(rec["kernel"], np.float64)}
  if "recurrent_bias" in rec:
    p["recurrent_bias"] = np.asarray(rec["recurrent_bias"], np.float64)
  gx64 = np.asarray(gx, np.float64)
  for b in range(gx.shape[1]):
    want = naive.run_line(kind, p, gx64[:, b], reverse=reverse)
    np.testing.assert_allclose(hs[:, b], want, rtol=1e-5, atol=1e-5)


def test_unknown_kind_and_impl_are_rejected():
  rec, gx, _ = _random_problem("gru")
  with pytest.raises(ValueError, match="Unknown recurrence kind 'gur'"):
    recurrence.recurrence("gur", False, rec, gx)
  with pytest.raises(ValueError, match="Unknown recurrence impl"):
    recurrence.recurrence("gru", False, rec, gx, impl="fast")
