"""Convolutional and deconvolutional RNN layers: against the naive float64 loops
(convolutions written out per pixel), finite differences, causality, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import naive
from renet_jax.conv_rnn import ConvRNN


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _random_params(params, seed=1):
  """Non-trivial values for every parameter (biases included)."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [0.4 * jax.random.normal(k, l.shape)
                                   for k, l in zip(keys, leaves)])


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("stride,transpose,recurrent,bidirectional", [
    (2, False, True, True), (2, True, True, False), (1, False, False, False)])
def test_layer_equals_the_naive_loop(kind, stride, transpose, recurrent, bidirectional):
  layer = ConvRNN(3, kind=kind, stride=stride, transpose=transpose, input_convs=((4, 3),),
                  state_convs=((2, 1),), recurrent=recurrent, bidirectional=bidirectional)
  xs = jax.random.normal(jax.random.key(0), (4, 2, 5, 6, 2))  # odd sizes, strides 2
  params = _random_params(layer.init(jax.random.key(0), xs)["params"])
  got = np.asarray(layer.apply({"params": params}, xs))
  p = _np(params)
  for n in range(xs.shape[1]):
    frames = np.asarray(xs[:, n], np.float64)
    want = [naive.conv_rnn_clip(kind, p["forward_input"], p.get("forward_step", {}), frames,
                                3, stride, transpose, recurrent)]
    if bidirectional:
      want.append(naive.conv_rnn_clip(kind, p["backward_input"], p["backward_step"], frames,
                                      3, stride, transpose, recurrent, reverse=True))
    np.testing.assert_allclose(got[:, n], np.concatenate(want, -1), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_gradients_match_float64_finite_differences(kind):
  layer = ConvRNN(2, kind=kind, stride=2, input_convs=((3, 3),), state_convs=((2, 3),))
  xs = jax.random.normal(jax.random.key(0), (3, 1, 4, 4, 2))
  params = _random_params(layer.init(jax.random.key(0), xs)["params"])
  weights = jax.random.normal(jax.random.key(2), layer.apply({"params": params}, xs).shape)
  loss = lambda p, x: jnp.sum(layer.apply({"params": p}, x) * weights)
  g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, xs)
  p64 = _np(params)
  def naive_loss(p, x):
    hs = naive.conv_rnn_clip(kind, p["forward_input"], p["forward_step"], x[:, 0], 2, 2)
    return float(np.sum(hs * np.asarray(weights[:, 0], np.float64)))
  rng = np.random.default_rng(0)
  eps = 1e-6
  x64 = np.asarray(xs, np.float64)
  for _ in range(3):  # random input directions
    d = rng.normal(size=x64.shape)
    fd = (naive_loss(p64, x64 + eps * d) - naive_loss(p64, x64 - eps * d)) / (2 * eps)
    np.testing.assert_allclose(np.sum(np.asarray(g_x) * d), fd, rtol=2e-3, atol=2e-4)
  leaves, tree = jax.tree.flatten(p64)
  for _ in range(3):  # random parameter directions
    d = [rng.normal(size=l.shape) for l in leaves]
    shift = lambda s: jax.tree.unflatten(tree, [l + s * e for l, e in zip(leaves, d)])
    fd = (naive_loss(shift(eps), x64) - naive_loss(shift(-eps), x64)) / (2 * eps)
    got = sum(np.sum(np.asarray(g) * e) for g, e in zip(jax.tree.leaves(g_params), d))
    np.testing.assert_allclose(got, fd, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("kind", ["gru"])
def test_outputs_up_to_t_ignore_later_frames(kind):
  layer = ConvRNN(3, kind=kind, input_convs=((3, 3),))
  xs = jax.random.normal(jax.random.key(0), (6, 2, 5, 5, 1))
  params = layer.init(jax.random.key(0), xs)
  base = layer.apply(params, xs)
  for t in range(5):
    changed = xs.at[t + 1:].add(jax.random.normal(jax.random.key(t), xs[t + 1:].shape))
    out = layer.apply(params, changed)
    np.testing.assert_array_equal(out[:t + 1], base[:t + 1])
    assert not np.allclose(out[t + 1:], base[t + 1:])


@pytest.mark.parametrize("frames,size", [(1, (7, 9)), (3, (5, 12))])
def test_shapes_and_jit_grad_remat(frames, size):
  enc = ConvRNN(4, stride=2, bidirectional=True, remat=True)
  dec = ConvRNN(3, stride=2, transpose=True)
  xs = jnp.ones((frames, 2) + size + (3,))
  p_enc = enc.init(jax.random.key(0), xs)
  hs = enc.apply(p_enc, xs)
  assert hs.shape == (frames, 2, -(-size[0] // 2), -(-size[1] // 2), 8)
  p_dec = dec.init(jax.random.key(1), hs)
  up = jax.jit(dec.apply)(p_dec, hs)
  assert up.shape == (frames, 2, 2 * hs.shape[2], 2 * hs.shape[3], 3)
  grads = jax.grad(lambda p: jnp.sum(enc.apply(p, xs) ** 2))(p_enc)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_bad_arguments_name_the_fix():
  with pytest.raises(ValueError, match="units=0"):
    ConvRNN(0).init(jax.random.key(0), jnp.ones((2, 1, 4, 4, 1)))
  with pytest.raises(ValueError, match=r"time-major clips \(T, N, H, W, C\)"):
    ConvRNN(2).init(jax.random.key(0), jnp.ones((2, 4, 4, 1)))
  with pytest.raises(ValueError, match="unknown kind 'gru2'"):
    ConvRNN(2, kind="gru2").init(jax.random.key(0), jnp.ones((2, 1, 4, 4, 1)))
