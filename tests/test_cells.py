"""Cells: outputs against the naive float64 loop, initialisation, torch weight import."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import naive
from renet_jax.nn import cells

KINDS = {"rnn": {}, "gru": {}, "gru_reset_after": {"reset_after": True}, "lstm": {}}


def _make(kind, units=5, **kw):
  name = "gru" if kind.startswith("gru") else kind
  return cells.cell_factory(name, **KINDS[kind], **kw)(units=units)


def _randomised(params, seed):
  return naive.random_like(params, seed, 0.5)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("reverse", [False, True])
def test_cell_equals_naive_loop(kind, reverse):
  cell = _make(kind)
  xs = jax.random.normal(jax.random.key(0), (6, 3, 4))
  params = _randomised(jax.jit(cell.init)(jax.random.key(1), xs), seed=2)
  hs = jax.jit(cell.apply, static_argnames="reverse")(params, xs, reverse=reverse)
  p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
  for b in range(xs.shape[1]):
    want = naive.run_line(kind, p, np.asarray(xs[:, b], np.float64), reverse=reverse)
    np.testing.assert_allclose(hs[:, b], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_initialisation(kind):
  units, features = 6, 7
  cell = _make(kind, units)
  p = cell.init(jax.random.key(0), jnp.ones((2, 1, features)))["params"]
  gates = p["recurrent_kernel"].shape[1] // units
  for g in range(gates):
    w_rec = np.asarray(p["recurrent_kernel"][:, g * units:(g + 1) * units])
    np.testing.assert_allclose(w_rec.T @ w_rec, np.eye(units), atol=1e-5)
    w_in = np.asarray(p["input_kernel"][:, g * units:(g + 1) * units])
    limit = np.sqrt(6 / (features + units))  # Glorot uniform, one gate block
    assert np.abs(w_in).max() <= limit and np.abs(w_in).max() > 0.5 * limit
  want_bias = np.zeros(gates * units)
  if kind == "lstm":
    want_bias[units:2 * units] = 1.0  # forget gate, order [i, f, g, o]
  np.testing.assert_array_equal(p["bias"], want_bias)


@pytest.mark.parametrize("init", ["glorot_uniform", "orthogonal"])
def test_per_gate_blocks_are_the_initializer_drawn_for_each_gate_key(init):
  """Block g of a (rows, G*U) matrix is the initializer at split key g, bitwise (the
  blocks are drawn in one loop; a jitted and an eager call agree)."""
  base = getattr(jax.nn.initializers, init)()
  key, rows, units, gates = jax.random.key(5), 7, 5, 3
  blocks = [base(k, (rows, units)) for k in jax.random.split(key, gates)]
  for fn in (cells.per_gate(base, gates), jax.jit(cells.per_gate(base, gates),
                                                   static_argnums=1)):
    np.testing.assert_array_equal(fn(key, (rows, gates * units)), np.concatenate(blocks, 1))


def test_lstm_forget_bias_is_configurable():
  p = cells.LSTMCell(3, forget_bias=2.5).init(jax.random.key(0), jnp.ones((2, 1, 4)))
  np.testing.assert_array_equal(p["params"]["bias"], [0, 0, 0, 2.5, 2.5, 2.5] + [0] * 6)


def _torch_gru(w_ih, w_hh, b_ih, b_hh, xs):
  """nn.GRU's documented equations, gates stacked [r, z, n]."""
  u = w_hh.shape[1]
  s = lambda k: slice(k * u, (k + 1) * u)
  h, out = np.zeros(u), []
  for x in xs:
    gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
    r = naive.sigmoid(gi[s(0)] + gh[s(0)])
    z = naive.sigmoid(gi[s(1)] + gh[s(1)])
    n = np.tanh(gi[s(2)] + r * gh[s(2)])
    h = (1 - z) * n + z * h
    out.append(h)
  return np.stack(out)


def test_gru_from_torch_matches_torch_equations():
  rng = np.random.default_rng(0)
  units, features = 4, 3
  w_ih, w_hh = rng.normal(size=(3 * units, features)), rng.normal(size=(3 * units, units))
  b_ih, b_hh = rng.normal(size=3 * units), rng.normal(size=3 * units)
  xs = rng.normal(size=(5, 1, features))
  params = {"params": cells.gru_from_torch(w_ih, w_hh, b_ih, b_hh)}
  got = cells.GRUCell(units, reset_after=True).apply(params, jnp.asarray(xs, jnp.float32))
  np.testing.assert_allclose(got[:, 0], _torch_gru(w_ih, w_hh, b_ih, b_hh, xs[:, 0]),
                             rtol=1e-5, atol=1e-5)


def test_dtypes():
  cell = cells.GRUCell(4)
  params = cell.init(jax.random.key(0), jnp.ones((3, 2, 5)))
  x16 = jnp.ones((3, 2, 5), jnp.bfloat16)
  assert cell.apply(params, x16).dtype == jnp.float32  # promoted to the params' dtype
  assert cells.GRUCell(4, dtype=jnp.bfloat16).apply(params, x16).dtype == jnp.bfloat16


def test_cell_factory_binds_options_and_passes_factories_through():
  factory = cells.cell_factory("gru", reset_after=True, impl="autodiff", dtype=None)
  cell = factory(units=3, name="c")
  assert isinstance(cell, cells.GRUCell) and cell.reset_after and cell.impl == "autodiff"
  assert cell.dtype is None and cell.name == "c"  # None options leave the defaults
  assert cells.cell_factory(factory) is factory
  assert cells.cell_factory(factory, dtype=jnp.bfloat16)(units=2).dtype == jnp.bfloat16


def test_errors():
  with pytest.raises(ValueError, match=r"Unknown cell 'gruu'; choose one of \('rnn'"):
    cells.cell_factory("gruu")
  with pytest.raises(ValueError, match=r"The 'lstm' cell has no option 'reset_after'"):
    cells.cell_factory("lstm", reset_after=True)
  with pytest.raises(ValueError, match=r"no option 'forget_bais' \(did you mean "
                     r"'forget_bias'\?\)"):
    cells.cell_factory("lstm", forget_bais=0.0)
  with pytest.raises(ValueError, match=r"time-major sequence \(L, B, F\)"):
    cells.GRUCell(3).init(jax.random.key(0), jnp.ones((2, 3)))


# The parallel cells (minGRU, minLSTM).


@pytest.mark.parametrize("kind", cells.PARALLEL_CELLS)
@pytest.mark.parametrize("impl", ["associative", "sequential"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype,tol", [(None, 1e-5), (jnp.bfloat16, 5e-2)])
def test_parallel_cell_equals_naive_loop(kind, impl, reverse, dtype, tol):
  cell = cells.cell_factory(kind, impl=impl, dtype=dtype)(units=4)
  xs = jax.random.normal(jax.random.key(0), (9, 3, 5))
  params = _randomised(jax.jit(cell.init)(jax.random.key(1), xs), seed=2)
  hs = jax.jit(cell.apply, static_argnames="reverse")(params, xs, reverse=reverse)
  assert hs.dtype == (dtype or jnp.float32)
  p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
  for b in range(xs.shape[1]):
    want = naive.parallel_cell_line(kind, p, np.asarray(xs[:, b], np.float64), reverse)
    np.testing.assert_allclose(np.asarray(hs[:, b], np.float64), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", cells.PARALLEL_CELLS)
@pytest.mark.parametrize("impl", ["associative", "sequential"])
def test_parallel_cell_gradients_equal_float64_finite_differences(kind, impl):
  """Every parameter's and the input's gradient, through the cell's custom backward."""
  cell = cells.cell_factory(kind, impl=impl)(units=3)
  xs = jax.random.normal(jax.random.key(0), (5, 2, 4))
  cotangent = np.asarray(jax.random.normal(jax.random.key(3), (5, 2, 3)), np.float64)
  params = _randomised(jax.jit(cell.init)(jax.random.key(1), xs), seed=2)["params"]
  got = jax.jit(jax.grad(lambda p, x: jnp.sum(cell.apply({"params": p}, x) * cotangent),
                         argnums=(0, 1)))(params, xs)
  p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}

  def loss(p, x):
    return sum(np.sum(naive.parallel_cell_line(kind, p, x[:, b]) * cotangent[:, b])
               for b in range(x.shape[1]))

  eps = 1e-6
  x64 = np.asarray(xs, np.float64)
  for name, value in list(p64.items()) + [("xs", x64)]:
    want = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
      shifted = []
      for sign in (1, -1):
        v = value.copy()
        v[idx] += sign * eps
        shifted.append(loss({**p64, name: v}, x64) if name != "xs" else loss(p64, v))
      want[idx] = (shifted[0] - shifted[1]) / (2 * eps)
    g = got[1] if name == "xs" else got[0][name]
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-4, err_msg=name)


def test_parallel_cells_have_no_recurrent_kernel_and_a_forget_bias():
  xs = jnp.ones((2, 1, 5))
  p = cells.MinGRUCell(4).init(jax.random.key(0), xs)["params"]
  assert set(p) == {"input_kernel", "bias"} and p["input_kernel"].shape == (5, 8)
  p = cells.MinLSTMCell(4, forget_bias=2.0).init(jax.random.key(0), xs)["params"]
  assert p["input_kernel"].shape == (5, 12)
  np.testing.assert_array_equal(p["bias"], [2.0] * 4 + [0.0] * 8)  # [f, i, h~]


def test_parallel_cell_impls_are_checked():
  assert cells.cell_impls("mingru") == ("auto", "associative", "sequential")
  assert "custom_vjp" in cells.cell_impls("gru")
  with pytest.raises(ValueError, match="Unknown linear-scan impl 'custom_vjp'"):
    cells.MinGRUCell(3, impl="custom_vjp").init(jax.random.key(0), jnp.ones((2, 1, 4)))
