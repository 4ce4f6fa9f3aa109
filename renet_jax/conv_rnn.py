"""Convolutional and deconvolutional recurrent layers over time (thesis ch. 5).

A convolutional RNN (Xingjian et al. 2015) is an RNN whose state is a feature map and
whose input-to-state and state-to-state transitions are convolutions; here each
transition is a *stack* of convolutions (thesis: several convolutions inside the
transition instead of one). A deconvolutional RNN's input-to-state transition starts
with a transposed convolution, upsampling the input to the state's resolution.

  layer = ConvRNN(units=32, kind="gru", stride=2)             # encoder: 1/2 resolution
  layer = ConvRNN(units=32, kind="gru", stride=2, transpose=True)  # decoder: 2x
  hs = layer(xs)  # xs (T, N, H, W, C) time-major -> (T, N, H', W', U) (2U bidirectional)

Equations per step (x_t the input transition's gate pre-activations at t, S the state
transition, sigma the logistic function; gate layout as in `renet_jax.recurrence`):
  rnn   h' = tanh(x_t + S(h))
  gru   [z, r] = sigma(x_t[z, r] + S_zr(h)); n = tanh(x_t[n] + S_n(r * h));
        h' = (1 - z) * h + z * n          (the thesis GRU: reset before the product)
  lstm  [i, f, g, o] = x_t + S(h); c' = sigma(f) c + sigma(i) tanh(g); h' = sigma(o) tanh(c')
A transition is `convs` = ((features, kernel), ...) hidden convolutions (stride 1, SAME,
ReLU after each; biases) followed by the gate convolution (`kernel_size`, G*U outputs;
the input transition's has the bias, the state transition's none). The input
transition runs on all frames at once before the time loop (it does not depend on the
state); only the state transition is inside the `lax.scan`. Its first convolution has
the layer's stride: strided SAME for encoders (output ceil(H/s)), a transposed
convolution with kernel = stride (each input pixel becomes an s x s block) for decoders.

Initialisation as for the ReNet cells: Glorot uniform for input-side kernels and hidden
state convolutions, orthogonal per gate block for the state transition's gate
convolution (its kernel flattened to (k*k*U, U) per gate), LSTM forget bias 1.
`recurrent=False` drops the state transition and restarts every frame from a zero
state: the same network seeing each frame alone (the per-frame baseline).
`bidirectional=True` adds a second layer running backwards in time (non-causal);
`remat=True` recomputes each step in the backward pass (long clips).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from renet_jax import upsampling

KINDS = ("rnn", "gru", "lstm")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def conv(x, kernel, bias=None, stride: int = 1):
  """SAME convolution (cross-correlation, TensorFlow's padding) of NHWC `x` with an HWIO
  kernel."""
  y = lax.conv_general_dilated(x, kernel, (stride, stride), "SAME",
                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y if bias is None else y + bias


def conv_im2col(x, kernel, bias=None, stride: int = 1):
  """`conv` as one matrix product over the k*k shifted views of `x` (im2col), for the
  state transitions inside the time loop: there XLA:CPU's convolution gradients ran
  ~9x slower than this (a whole model's gradient on a 10-frame 32x32 clip batch: 26.6 s
  against 3.0 s), while outside a loop its convolutions are ~2x faster than this."""
  kh, kw, c, o = kernel.shape
  n, h, w, _ = x.shape
  oh, ow = -(-h // stride), -(-w // stride)
  pad_h, pad_w = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
  x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                  (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
  views = [x[:, a:a + stride * (oh - 1) + 1:stride, b:b + stride * (ow - 1) + 1:stride]
           for a in range(kh) for b in range(kw)]
  y = jnp.concatenate(views, axis=-1) @ kernel.reshape(kh * kw * c, o)
  return y if bias is None else y + bias


class ConvStack(nn.Module):
  """Hidden convolutions `convs` ((features, kernel), ...; ReLU after each) then one
  output convolution (`features`, `kernel_size`). The first convolution has `stride`
  (`transpose`: an upsampling transposed convolution with kernel = stride)."""
  features: int
  kernel_size: int = 3
  convs: Sequence[Sequence[int]] = ()
  stride: int = 1
  transpose: bool = False
  out_bias: bool = True
  out_init: nn.initializers.Initializer = nn.initializers.glorot_uniform()
  out_bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  im2col: bool = False  # `conv_im2col` (inside the time loop) instead of `conv`

  @nn.compact
  def __call__(self, x):
    layers = [tuple(c) for c in self.convs] + [(self.features, self.kernel_size)]
    for k, (features, kernel) in enumerate(layers):
      last = k == len(layers) - 1
      first_upsample = k == 0 and self.transpose and self.stride > 1
      size = self.stride if first_upsample else kernel
      w = self.param(f"conv{k}", self.out_init if last else nn.initializers.glorot_uniform(),
                     (size, size, x.shape[-1], features), jnp.float32)
      b = (self.param(f"bias{k}", self.out_bias_init if last else nn.initializers.zeros_init(),
                      (features,), jnp.float32) if (self.out_bias or not last) else None)
      if first_upsample:
        x = upsampling.upsample(x, w, b)
      else:
        x = (conv_im2col if self.im2col else conv)(x, w, b, self.stride if k == 0 else 1)
      if not last:
        x = nn.relu(x)
    return x


class _Step(nn.Module):
  """One time step: (state, x_t) -> (state', h_t), the state transition inside."""
  kind: str
  units: int
  kernel_size: int
  convs: Sequence[Sequence[int]]
  recurrent: bool

  def _transition(self, gates, name):
    return ConvStack(gates * self.units, self.kernel_size, self.convs, out_bias=False,
                     out_init=_per_gate_kernel(nn.initializers.orthogonal(), gates),
                     im2col=True, name=name)

  @nn.compact
  def __call__(self, state, gx):
    u = self.units
    if not self.recurrent:  # every frame alone
      state = jax.tree.map(jnp.zeros_like, state)
    if self.kind == "rnn":
      pre = gx + (self._transition(1, "state")(state) if self.recurrent else 0)
      h = jnp.tanh(pre)
      return h, h
    if self.kind == "gru":
      h = state
      zr = gx[..., :2 * u] + (self._transition(2, "state_zr")(h) if self.recurrent else 0)
      z, r = jax.nn.sigmoid(zr[..., :u]), jax.nn.sigmoid(zr[..., u:])
      n = jnp.tanh(gx[..., 2 * u:] + (self._transition(1, "state_n")(r * h)
                                       if self.recurrent else 0))
      h = (1 - z) * h + z * n
      return h, h
    h, c = state
    pre = gx + (self._transition(4, "state")(h) if self.recurrent else 0)
    i, f, g, o = (pre[..., k * u:(k + 1) * u] for k in range(4))
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


def _per_gate_kernel(init, gates):
  """`init` per gate block of a (k, k, in, gates*U) kernel (flax's orthogonal treats
  it as a (k*k*in, U) matrix per block)."""
  def init_fn(key, shape, dtype=jnp.float32):
    keys = jax.random.split(key, gates)
    block = shape[:-1] + (shape[-1] // gates,)
    return jnp.concatenate([init(k, block, dtype) for k in keys], axis=-1)
  return init_fn


class ConvRNN(nn.Module):
  """A convolutional (or, with `transpose`, deconvolutional) RNN layer over time-major
  clips (T, N, H, W, C) -> (T, N, H', W', U), or 2U with `bidirectional`."""
  units: int
  kind: str = "gru"
  stride: int = 1
  transpose: bool = False
  kernel_size: int = 3
  input_convs: Sequence[Sequence[int]] = ()
  state_convs: Sequence[Sequence[int]] = ()
  recurrent: bool = True
  bidirectional: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, xs):
    self._check(xs)
    outs = [self._direction(xs, reverse=False, name="forward")]
    if self.bidirectional:
      outs.append(self._direction(xs, reverse=True, name="backward"))
    return jnp.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]

  def _direction(self, xs, reverse, name):
    t, n = xs.shape[:2]
    gates = GATES[self.kind]
    bias_init = nn.initializers.zeros_init()
    if self.kind == "lstm":
      u = self.units
      bias_init = lambda key, shape, dtype=jnp.float32: (  # forget gate starts at 1
          jnp.zeros(shape, dtype).at[u:2 * u].set(1.0))
    gx = ConvStack(gates * self.units, self.kernel_size, self.input_convs, self.stride,
                   self.transpose, out_bias_init=bias_init, name=f"{name}_input")(
                       xs.reshape((t * n,) + xs.shape[2:]))
    gx = gx.reshape((t, n) + gx.shape[1:])
    step = _Step
    if self.remat:
      step = nn.remat(step)
    scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=0, out_axes=0, reverse=reverse)
    h0 = jnp.zeros(gx.shape[1:-1] + (self.units,), gx.dtype)
    state = (h0, h0) if self.kind == "lstm" else h0
    _, hs = scan(self.kind, self.units, self.kernel_size, self.state_convs, self.recurrent,
                 name=f"{name}_step")(state, gx)
    return hs

  def _check(self, xs):
    name = type(self).__name__
    if self.kind not in KINDS:
      raise ValueError(f"{name}: unknown kind {self.kind!r}; choose one of {KINDS}.")
    if self.units < 1:
      raise ValueError(f"{name}: units={self.units}; the state needs at least one channel.")
    if self.stride < 1 or self.kernel_size < 1:
      raise ValueError(f"{name}: stride={self.stride} and kernel_size={self.kernel_size} "
                       "must be positive.")
    if xs.ndim != 5:
      raise ValueError(f"{name} expects time-major clips (T, N, H, W, C), got shape "
                       f"{xs.shape}.")
