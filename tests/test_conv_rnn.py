"""Convolutional and deconvolutional RNN layers: against the naive float64 loops
(convolutions written out per pixel, transposed ones by their adjoint definition,
ConvLSTM peepholes as Shi et al. write them), finite differences, causality, shapes,
the stride-1 transposed stack as a convolution stack, bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import naive
from jax import lax

from renet_jax.nn.conv_rnn import ConvRNN, ConvStack, transposed_kernel_as_conv


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _random_params(params, seed=1):
  return naive.random_like(params, seed, 0.4)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("stride,transpose,recurrent,bidirectional", [
    (2, False, True, True), (2, True, True, False), (1, True, True, False),
    (1, False, False, False)])
def test_layer_equals_the_naive_loop(kind, stride, transpose, recurrent, bidirectional):
  layer = ConvRNN(3, kind=kind, stride=stride, transpose=transpose, input_convs=((4, 3),),
                  state_convs=((2, 3),), recurrent=recurrent, bidirectional=bidirectional)
  xs = jax.random.normal(jax.random.key(0), (4, 2, 5, 6, 2))  # odd sizes, strides 2
  params = _random_params(jax.jit(layer.init)(jax.random.key(0), xs)["params"])
  got = np.asarray(jax.jit(layer.apply)({"params": params}, xs))
  p = _np(params)
  for n in range(xs.shape[1]):
    frames = np.asarray(xs[:, n], np.float64)
    want = [naive.conv_rnn_clip(kind, p["forward_input"], p.get("forward_step", {}), frames,
                                3, stride, transpose, recurrent)]
    if bidirectional:
      want.append(naive.conv_rnn_clip(kind, p["backward_input"], p["backward_step"], frames,
                                      3, stride, transpose, recurrent, reverse=True))
    np.testing.assert_allclose(got[:, n], np.concatenate(want, -1), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
@pytest.mark.parametrize("transpose,recurrent", [(False, True), (True, True), (False, False)])
def test_parallel_cell_layer_equals_the_naive_loop(kind, transpose, recurrent):
  """Gates from the input transition alone, one linear scan over time (both ways)."""
  layer = ConvRNN(3, kind=kind, stride=2, transpose=transpose, input_convs=((4, 3),),
                  recurrent=recurrent, bidirectional=True)
  xs = jax.random.normal(jax.random.key(0), (4, 2, 5, 6, 2))
  params = _random_params(jax.jit(layer.init)(jax.random.key(0), xs)["params"])
  assert set(params) == {"forward_input", "backward_input"}  # no state transition
  got = np.asarray(jax.jit(layer.apply)({"params": params}, xs))
  p = _np(params)
  for n in range(xs.shape[1]):
    frames = np.asarray(xs[:, n], np.float64)
    want = [naive.conv_rnn_clip(kind, p[f"{d}_input"], {}, frames, 3, 2, transpose,
                                recurrent, reverse=d == "backward")
            for d in ("forward", "backward")]
    np.testing.assert_allclose(got[:, n], np.concatenate(want, -1), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_gradients_match_float64_finite_differences(kind):
  layer = ConvRNN(2, kind=kind, stride=2, input_convs=((3, 3),), state_convs=((2, 3),))
  xs = jax.random.normal(jax.random.key(0), (3, 1, 4, 4, 2))
  params = _random_params(jax.jit(layer.init)(jax.random.key(0), xs)["params"])
  weights = jax.random.normal(jax.random.key(2), (3, 1, 2, 2, 2))  # the output's shape
  loss = lambda p, x: jnp.sum(layer.apply({"params": p}, x) * weights)
  g_params, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, xs)
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
  xs = np.random.default_rng(0).standard_normal((6, 2, 5, 5, 1)).astype(np.float32)
  params = jax.jit(layer.init)(jax.random.key(0), xs)
  apply = jax.jit(layer.apply)
  base = apply(params, xs)
  for t in range(5):
    changed = xs.copy()
    changed[t + 1:] += np.random.default_rng(t).standard_normal(xs[t + 1:].shape)
    out = apply(params, changed)
    np.testing.assert_array_equal(out[:t + 1], base[:t + 1])
    assert not np.allclose(out[t + 1:], base[t + 1:])


@pytest.mark.parametrize("frames,size", [(1, (7, 9)), (3, (5, 12))])
def test_shapes_and_jit_grad_remat(frames, size):
  enc = ConvRNN(4, stride=2, bidirectional=True, remat=True)
  dec = ConvRNN(3, stride=2, transpose=True)
  xs = jnp.ones((frames, 2) + size + (3,))
  p_enc = jax.jit(enc.init)(jax.random.key(0), xs)
  hs = jax.jit(enc.apply)(p_enc, xs)
  assert hs.shape == (frames, 2, -(-size[0] // 2), -(-size[1] // 2), 8)
  p_dec = jax.jit(dec.init)(jax.random.key(1), hs)
  up = jax.jit(dec.apply)(p_dec, hs)
  assert up.shape == (frames, 2, 2 * hs.shape[2], 2 * hs.shape[3], 3)
  # Rematerialisation recomputes the forward in the backward: the same gradients as
  # keeping the activations (the same parameters, remat off), on inputs that vary.
  xs = jax.random.normal(jax.random.key(2), xs.shape)
  loss = lambda layer: lambda p: jnp.sum(jnp.sin(layer.apply(p, xs)))
  grads = jax.jit(jax.grad(loss(enc)))(p_enc)
  kept = jax.jit(jax.grad(loss(ConvRNN(4, stride=2, bidirectional=True, remat=False))))(p_enc)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               grads, kept)
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) > 1e-3


def test_lstm_peepholes_are_shis_and_optional():
  xs = jax.random.normal(jax.random.key(0), (3, 1, 4, 4, 2))
  with_peep, without = ConvRNN(2, kind="lstm"), ConvRNN(2, kind="lstm", peephole=False)
  p = jax.jit(with_peep.init)(jax.random.key(0), xs)
  step = p["params"]["forward_step"]
  assert {k: v.shape for k, v in step.items() if k.startswith("peephole")} == {
      f"peephole_{g}": (4, 4, 2) for g in "ifo"}  # one weight per position and channel
  assert not any(k.startswith("peephole") for k in jax.eval_shape(
      without.init, jax.random.key(0), xs)["params"]["forward_step"])
  # Initialised at 0: the same outputs as without them until trained.
  q = {"params": jax.tree.map(lambda a: a, p["params"])}
  for k in "ifo":
    del q["params"]["forward_step"][f"peephole_{k}"]
  apply_with, apply_without = jax.jit(with_peep.apply), jax.jit(without.apply)
  np.testing.assert_allclose(apply_with(p, xs), apply_without(q, xs), atol=1e-6)
  # Non-zero peepholes change them (the naive loop above checks how).
  p = {"params": _random_params(p["params"])}
  assert not np.allclose(apply_with(p, xs), apply_without(
      {"params": {**p["params"], "forward_step": {
          k: v for k, v in p["params"]["forward_step"].items()
          if not k.startswith("peephole")}}}, xs))


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_stride_one_transposed_stack_is_a_convolution_stack(kernel):
  """Each transposed convolution equals lax.conv_transpose (transpose_kernel=True: the
  gradient of a convolution), and the whole transposed stack equals a convolution stack
  whose kernels are the transposed ones flipped and channel-swapped."""
  x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
  transposed = ConvStack(4, kernel, convs=((5, kernel),), transpose=True)
  plain = ConvStack(4, kernel, convs=((5, kernel),))
  p = _random_params(jax.jit(transposed.init)(jax.random.key(0), x)["params"])
  got = jax.jit(transposed.apply)({"params": p}, x)
  dn = ("NHWC", "HWIO", "NHWC")
  want = jax.nn.relu(lax.conv_transpose(x, p["conv0"], (1, 1), "SAME", dimension_numbers=dn,
                                        transpose_kernel=True) + p["bias0"])
  want = lax.conv_transpose(want, p["conv1"], (1, 1), "SAME", dimension_numbers=dn,
                            transpose_kernel=True) + p["bias1"]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  as_conv = {k: transposed_kernel_as_conv(v) if k.startswith("conv") else v
             for k, v in p.items()}
  np.testing.assert_allclose(jax.jit(plain.apply)({"params": as_conv}, x), got, rtol=1e-5,
                             atol=1e-5)
  # Initialised as the convolution stack is, weights mapped the same way.
  p0, q0 = (jax.jit(m.init)(jax.random.key(3), x)["params"] for m in (transposed, plain))
  np.testing.assert_array_equal(transposed_kernel_as_conv(p0["conv1"]), q0["conv1"])


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_initialisation_keeps_the_scale_and_starts_without_recurrence(kind):
  """The default video network's logits at initialisation are not vanishing (Glorot and
  orthogonal kernels gave a GRU network's a standard deviation of 3e-4, and training
  did not start),
  and every state transition starts at zero: a tanh RNN then equals the per-frame
  network exactly."""
  from renet_jax.nn.models import VideoSegmenter
  x = jax.random.uniform(jax.random.key(0), (2, 4, 32, 32, 1))
  net = VideoSegmenter(11, encoder_units=(16, 16), decoder_units=(16, 16), cell=kind,
                       input_convs=((16, 3),), state_convs=((16, 3),))
  params = jax.jit(net.init)(jax.random.key(1), x)
  # (gated cells halve the signal per layer at the first frame: LSTM 0.003, GRU 0.013)
  logits = jax.jit(net.apply)(params, x)
  assert float(np.std(logits)) > 2e-3
  steps = [s for layer in params["params"].values() for n, s in layer.items()
           if n.endswith("_step")]
  assert len(steps) == 4  # one per layer
  for step in steps:
    for transition in step.values():
      if isinstance(transition, dict):  # a ConvStack: its gate convolution is last
        last = max(k for k in transition if k.startswith("conv"))
        assert not np.any(transition[last])
  if kind == "rnn":
    baseline = net.clone(recurrent=False)
    base_params = {"params": {layer: {n: s for n, s in v.items() if not n.endswith("_step")}
                              for layer, v in params["params"].items()}}
    np.testing.assert_allclose(logits, jax.jit(baseline.apply)(base_params, x), atol=1e-6)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_bfloat16_computes_in_bfloat16_close_to_float32(kind):
  xs = jax.random.normal(jax.random.key(0), (4, 2, 8, 8, 3))
  layers = [ConvRNN(4, kind=kind, stride=2, input_convs=((4, 3),), state_convs=((4, 3),),
                    dtype=d) for d in (None, jnp.bfloat16)]
  params = jax.jit(layers[0].init)(jax.random.key(0), xs)
  assert jax.tree.map(jnp.shape, jax.eval_shape(layers[1].init, jax.random.key(0), xs)) == \
      jax.tree.map(jnp.shape, params)
  f32, bf16 = (jax.jit(layer.apply)(params, xs) for layer in layers)
  assert f32.dtype == jnp.float32 and bf16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(bf16, np.float32), f32, atol=0.05)
  assert float(jnp.abs(bf16.astype(jnp.float32) - f32).max()) > 0  # really rounded


def test_bad_arguments_name_the_fix():
  with pytest.raises(ValueError, match="units=0"):
    ConvRNN(0).init(jax.random.key(0), jnp.ones((2, 1, 4, 4, 1)))
  with pytest.raises(ValueError, match=r"time-major clips \(T, N, H, W, C\)"):
    ConvRNN(2).init(jax.random.key(0), jnp.ones((2, 4, 4, 1)))
  with pytest.raises(ValueError, match="unknown kind 'gru2'"):
    ConvRNN(2, kind="gru2").init(jax.random.key(0), jnp.ones((2, 1, 4, 4, 1)))
  with pytest.raises(ValueError, match=r"state_convs=\(\(16,\),\) must be \(\(features, "
                     r"kernel\), \.\.\.\) pairs"):
    ConvRNN(2, state_convs=((16,),)).init(jax.random.key(0), jnp.ones((2, 1, 4, 4, 1)))
  with pytest.raises(ValueError, match="needs an odd kernel"):
    ConvRNN(2, transpose=True, state_convs=((2, 2),)).init(
        jax.random.key(0), jnp.ones((2, 1, 4, 4, 1)))
