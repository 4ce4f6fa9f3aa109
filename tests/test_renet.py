"""The ReNet layer: naive-loop equality, finite differences, receptive field, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import naive
from renet_jax.nn import renet
from renet_jax.nn.cells import cell_factory
from renet_jax.nn.renet import BidirectionalSweep, ReNet, ReNetLayer

CELLS = [("rnn", False), ("gru", False), ("gru", True), ("lstm", False)]


def _cell(name, reset_after, **options):
  return cell_factory(name, reset_after=True, **options) if reset_after else cell_factory(
      name, **options)


def _randomised(params, seed, scale=0.5):
  return naive.random_like(params, seed, scale)


@pytest.mark.parametrize("cell,reset_after", CELLS)
@pytest.mark.parametrize("patch,order", [((2, 2), "vertical_first"),
                                         ((1, 3), "horizontal_first"),
                                         ((2, 1), "vertical_first")])
def test_layer_equals_naive_loop(cell, reset_after, patch, order):
  layer = ReNetLayer(3, patch, cell=_cell(cell, reset_after), order=order)
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 2))
  params = _randomised(jax.jit(layer.init)(jax.random.key(1), x), seed=2)
  kind = "gru_reset_after" if reset_after else cell
  want = naive.renet_layer(kind, params["params"], np.asarray(x), patch, order)
  np.testing.assert_allclose(jax.jit(layer.apply)(params, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell,reset_after", CELLS)
def test_gradients_match_float64_finite_differences(cell, reset_after):
  with jax.enable_x64(True):
    layer = ReNetLayer(3, (2, 2), cell=_cell(cell, reset_after, param_dtype=jnp.float64))
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 2), jnp.float64)
    params = _randomised(jax.jit(layer.init)(jax.random.key(1), x), seed=2)
    cotangent = jax.random.normal(jax.random.key(3), (2, 2, 2, 6), jnp.float64)
    loss = jax.jit(lambda p, x: jnp.sum(layer.apply(p, x) * cotangent))
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    eps = 1e-6
    for seed in range(3):  # directional derivatives along random directions
      direction = _randomised((params, x), seed=10 + seed, scale=1.0)
      shifted = lambda s: jax.tree.map(lambda a, d: a + s * eps * d, (params, x), direction)
      fd = (loss(*shifted(1)) - loss(*shifted(-1))) / (2 * eps)
      analytic = sum(np.vdot(g, d) for g, d in zip(jax.tree.leaves(grads),
                                                    jax.tree.leaves(direction)))
      np.testing.assert_allclose(analytic, fd, rtol=1e-8)  # float64 throughout


def _jacobian(fn, x):
  """d fn(x) / d x, shape out.shape + x.shape, in one jitted call."""
  return np.asarray(jax.jit(jax.jacrev(fn))(x))


def test_one_layer_has_global_receptive_field():
  layer = ReNetLayer(4, (2, 2))
  x = jax.random.normal(jax.random.key(0), (2, 6, 8, 3))
  params = jax.jit(layer.init)(jax.random.key(1), x)
  jac = _jacobian(lambda x: layer.apply(params, x).sum(-1), x)  # (2, 3, 4) + x.shape
  assert np.all(jac[0, :, :, 0] != 0)  # every output position sees every input pixel
  assert np.all(jac[0, :, :, 1] == 0)  # and no other image


def test_vertical_sublayer_sees_exactly_its_column():
  sweep = BidirectionalSweep(4, axis="vertical")
  x = jax.random.normal(jax.random.key(0), (1, 6, 8, 3))
  grid = lambda x: renet.patchify(x, (2, 2))
  params = jax.jit(sweep.init)(jax.random.key(1), grid(x))
  jac = _jacobian(lambda x: sweep.apply(params, grid(x))[0].sum(-1), x)  # (3, 4, 1, 6, 8, 3)
  for i in range(3):
    for j in range(4):
      g = jac[i, j, 0]
      in_column = np.zeros(g.shape, bool)
      in_column[:, 2 * j:2 * j + 2] = True
      assert np.all(g[in_column] != 0) and np.all(g[~in_column] == 0), (i, j)


@pytest.mark.parametrize("axis", ["vertical", "horizontal"])
def test_direction_semantics(axis):
  units, steps = 3, 5
  sweep = BidirectionalSweep(units, axis=axis)
  grid = jax.random.normal(jax.random.key(0), (1, steps, steps, 2))
  params = jax.jit(sweep.init)(jax.random.key(1), grid)
  along = 1 if axis == "vertical" else 2
  # Per direction, d out / d grid with the swept axis first on both sides: (t, t', ...).
  halves = lambda g: jnp.stack(jnp.split(sweep.apply(params, g)[0].sum(-2 if along == 1
                                                                       else -3), 2, -1))
  jac = _jacobian(lambda g: halves(g).sum(-1), grid)  # (2, steps) + grid.shape
  for t in range(steps):
    fwd, bwd = (np.moveaxis(jac[d, t], along, 0) for d in (0, 1))
    # top-down / left-right: nothing past t; bottom-up / right-left: nothing before t.
    assert np.all(fwd[t + 1:] == 0) and np.all(fwd[:t + 1].any(axis=(1, 2, 3))), t
    assert np.all(bwd[:t] == 0) and np.all(bwd[t:].any(axis=(1, 2, 3))), t


@pytest.mark.parametrize("shape,patch,order,want", [
    ((3, 8, 12, 1), (2, 2), "vertical_first", (3, 4, 6, 10)),
    ((1, 9, 8, 2), (3, 4), "horizontal_first", (1, 3, 2, 10)),
    ((2, 5, 7, 3), (1, 1), "vertical_first", (2, 5, 7, 10)),
    ((2, 5, 7, 3), (2, 3), "vertical_first", None),  # pad="zero": (2, 3, 3, 10)
])
def test_shapes(shape, patch, order, want):
  pad = "zero" if want is None else "none"
  layer = ReNetLayer(5, patch, order=order, pad=pad)
  out, _ = jax.eval_shape(layer.init_with_output, jax.random.key(0), jnp.ones(shape))
  assert out.shape == (want or (2, 3, 3, 10))


def test_zero_padding_equals_explicit_padding():
  x = jax.random.normal(jax.random.key(0), (2, 5, 7, 3))
  padded = jnp.pad(x, ((0, 0), (0, 1), (0, 2), (0, 0)))
  layer = ReNetLayer(4, (2, 3), pad="zero")
  params = jax.jit(layer.init)(jax.random.key(1), x)
  np.testing.assert_allclose(jax.jit(layer.apply)(params, x),
                             jax.jit(ReNetLayer(4, (2, 3)).apply)(params, padded), atol=1e-6)


@pytest.mark.parametrize("shape,kwargs,message", [
    ((8, 8, 1), {}, r"rank 4 \(N, H, W, C\), got shape \(8, 8, 1\)"),
    ((2, 7, 8, 1), {}, r"height 7 is not divisible by patch height 2. Pad the input to 8 "
                       r"\(or pass pad='zero'\), or use a patch height that divides 7"),
    ((2, 8, 9, 1), {"patch_size": (2, 4)}, r"width 9 is not divisible by patch width 4"),
    ((2, 0, 8, 1), {}, r"empty input of shape \(2, 0, 8, 1\)"),
    ((2, 8, 8, 1), {"cell": "gur"}, r"unknown cell 'gur'; choose one of \('rnn', 'gru'"),
    ((2, 8, 8, 1), {"order": "diagonal"}, r"unknown order 'diagonal'"),
    ((2, 8, 8, 1), {"pad": "reflect"}, r"unknown pad 'reflect'"),
])
def test_errors(shape, kwargs, message):
  kwargs = {"patch_size": (2, 2), **kwargs}
  with pytest.raises(ValueError, match=message):
    jax.eval_shape(ReNetLayer(3, **kwargs).init, jax.random.key(0), jnp.ones(shape))


def test_jit_grad_vmap_and_batch_one():
  layer = ReNetLayer(4, (2, 2), dropout_rate=0.3)
  x = jax.random.normal(jax.random.key(0), (5, 1, 4, 6, 2))  # vmap over the first axis
  params = jax.jit(layer.init)(jax.random.key(1), x[0])
  apply = jax.jit(layer.apply)
  one_by_one = np.stack([apply(params, xi) for xi in x])
  mapped = jax.jit(jax.vmap(lambda xi: layer.apply(params, xi)))(x)
  np.testing.assert_allclose(mapped, one_by_one, atol=1e-5)
  assert one_by_one.shape == (5, 1, 2, 3, 8)
  np.testing.assert_allclose(layer.apply(params, x[0]), one_by_one[0], atol=1e-6)  # eager
  grads = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply(p, x[0]) ** 2)))(params)
  assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in jax.tree.leaves(grads))


def test_bfloat16():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3)).astype(jnp.bfloat16)
  layer32 = ReNetLayer(8, (2, 2))
  params = jax.jit(layer32.init)(jax.random.key(1), x)
  ref = jax.jit(layer32.apply)(params, x.astype(jnp.float32))
  bf16 = ReNetLayer(8, (2, 2), cell=cell_factory("gru", dtype=jnp.bfloat16))
  out = jax.jit(bf16.apply)(params, x)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=0.05)
  g = jax.jit(jax.grad(lambda p: jnp.sum(bf16.apply(p, x).astype(jnp.float32))))(params)
  assert all(l.dtype == jnp.float32 and np.all(np.isfinite(l)) for l in jax.tree.leaves(g))


def test_stacked_directions_equal_separate():
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3))
  separate = ReNetLayer(4, (2, 2))
  params = jax.jit(separate.init)(jax.random.key(1), x)
  stacked_params = jax.tree.map(lambda f, b: jnp.stack([f, b]), *[
      {a: {"both": params["params"][a][d]} for a in ("vertical", "horizontal")}
      for d in ("forward", "backward")])
  stacked = ReNetLayer(4, (2, 2), directions="stacked")
  np.testing.assert_allclose(jax.jit(stacked.apply)({"params": stacked_params}, x),
                             jax.jit(separate.apply)(params, x), atol=1e-6)


def test_dropout_after_each_sublayer():
  x = jnp.ones((2, 4, 4, 1))
  layer = ReNetLayer(16, (2, 2), dropout_rate=0.5)
  params = jax.jit(layer.init)(jax.random.key(0), x)
  apply = jax.jit(layer.apply, static_argnames="deterministic")
  clean = apply(params, x)
  np.testing.assert_array_equal(clean, apply(params, x, deterministic=True))
  noisy = apply(params, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
  zeros = float(jnp.mean(noisy == 0))
  assert 0.3 < zeros < 0.7  # the last dropout zeroes about half the outputs
  assert not np.allclose(noisy * 0.5, jnp.where(noisy == 0, 0, clean))  # and one before


def test_stack_composes_layers():
  net = ReNet(units=(4, 6), patch_sizes=((2, 2), (1, 3)))
  out, params = jax.eval_shape(net.init_with_output, jax.random.key(0), jnp.ones((2, 8, 12, 3)))
  assert out.shape == (2, 4, 2, 12)
  assert set(params["params"]) == {"layer0", "layer1"}
  with pytest.raises(ValueError, match="2 entries in units but 1 in patch_sizes"):
    jax.eval_shape(ReNet(units=(4, 6), patch_sizes=((2, 2),)).init, jax.random.key(0),
                   jnp.ones((1, 4, 4, 1)))
