"""Convolutional and deconvolutional recurrent layers over time (thesis ch. 5).

A convolutional RNN (Xingjian Shi et al. 2015, ConvLSTM) is an RNN whose state is a
feature map and whose input-to-state and state-to-state transitions are convolutions.
The thesis's two changes, as built here:
- each transition is a *stack* of convolutions (hidden convolutions, ReLU after each,
  then the gate convolution) instead of one; the input-to-state stack (`input_convs`)
  and the state-to-state stack (`state_convs`) are configured separately;
- a *deconvolutional* RNN (`transpose=True`) has transposed convolutions in both
  transitions. Its upsampling is done once, by the input transition's first convolution:
  a transposed convolution with kernel = stride s (each input pixel becomes an s x s
  block; the (features, kernel) spec's kernel is not used there), so the state lives at
  s times the input's resolution. Every other convolution of a deconv RNN, the whole
  state transition included, is a stride-1 SAME transposed convolution (odd kernels).
  At stride 1 a transposed convolution is a convolution with the kernel flipped and its
  channel axes swapped (`transposed_kernel_as_conv`), so the deconv RNN's state
  transition computes the same family of functions as a convolution stack: only the
  parametrisation differs, and it is initialised as that convolution would be.

  layer = ConvRNN(units=32, kind="gru", stride=2)                  # encoder: 1/2 resolution
  layer = ConvRNN(units=32, kind="gru", stride=2, transpose=True)  # decoder: 2x
  hs = layer(xs)  # xs (T, N, H, W, C) time-major -> (T, N, H', W', U) (2U bidirectional)

Equations per step (x_t the input transition's gate pre-activations at t, S the state
transition, sigma the logistic function, o the elementwise product; gate layout as in
`renet_jax.kernels.recurrence`):
  rnn   h' = tanh(x_t + S(h))
  gru   [z, r] = sigma(x_t[z, r] + S_zr(h)); n = tanh(x_t[n] + S_n(r o h));
        h' = (1 - z) o h + z o n          (the thesis GRU: reset before the product)
  lstm  ConvLSTM as Shi et al. define it, with peepholes (`peephole=True`, the default):
        i = sigma(x_t[i] + S(h)[i] + W_ci o c);  f = sigma(x_t[f] + S(h)[f] + W_cf o c)
        c' = f o c + i o tanh(x_t[g] + S(h)[g]);  o = sigma(x_t[o] + S(h)[o] + W_co o c')
        h' = o o tanh(c')
        W_c* hold one weight per state position and channel (so a layer is tied to its
        frame size), initialised to 0; `peephole=False` drops them.
  mingru, minlstm  the parallel cells of `renet_jax.nn.cells` (Feng et al. 2024): their gates
        come from the input transition alone (no state transition, so `state_convs`
        is not used), and the elementwise recurrence over time is one
        `renet_jax.kernels.linear_scan` over all frames (`scan_impl`).
A transition's gate convolution has `kernel_size` and G*U outputs (the input
transition's has the bias, the state transition's none). The input transition runs on
all frames at once before the time loop (it does not depend on the state); only the
state transition is inside the `lax.scan`. Encoders stride the input transition's first
convolution (SAME, output ceil(H/s)).

Initialisation keeps the signal's scale through stacked layers and starts every layer
as its per-frame counterpart: He normal for the hidden (ReLU) convolutions, LeCun normal
for the input transition's gate convolution, zeros for the state transition's gate
convolution (the recurrence is learnt from there), LSTM forget bias 1. (With Glorot
kernels and orthogonal state kernels, as for the ReNet cells, the default 4-layer
network's logits at initialisation had a standard deviation of 3e-4 on [0, 1] frames:
Adam's updates then sat at its epsilon and training did not start; the orthogonal
state kernels also slowed learning where no memory was needed, loss 0.84 against 0.19
after 200 steps on coloured moving digits.)
`recurrent=False` drops the state transition and restarts every frame from a zero
state: the same network seeing each frame alone (the per-frame baseline).
`bidirectional=True` adds a second layer running backwards in time (non-causal);
`remat=True` recomputes each step in the backward pass (long clips); `dtype` (e.g.
bfloat16) is the transitions' computation dtype, the parameters staying float32.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from renet_jax.errors import ModelCheckError
from renet_jax.nn import cells, upsampling

KINDS = ("rnn", "gru", "lstm", "mingru", "minlstm")


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


def transposed_kernel_as_conv(kernel):
  """The convolution kernel (k, k, C, F) that computes the stride-1 SAME transposed
  convolution of `kernel` (k, k, F, C) (odd k): spatially flipped, channel axes swapped.
  A transposed convolution is the adjoint (gradient) of the convolution with the same
  kernel; at stride 1 the adjoint is again a convolution, so a stack of stride-1
  transposed convolutions computes the same functions as a convolution stack, with the
  weights permuted by this map (its own inverse). `tests/test_conv_rnn.py` shows both."""
  return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


class ConvStack(nn.Module):
  """Hidden convolutions `convs` ((features, kernel), ...; ReLU after each) then one
  output convolution (`features`, `kernel_size`). The first convolution has `stride`.
  `transpose`: every convolution of the stack is a transposed one: the first, with
  stride s > 1, the upsampling one with kernel = stride (each input pixel becomes an
  s x s block; nn.ConvTranspose's parameters), the others stride-1 SAME transposed
  convolutions (kernels (k, k, out, in), the adjoint of a convolution; odd k)."""
  features: int
  kernel_size: int = 3
  convs: Sequence[Sequence[int]] = ()
  stride: int = 1
  transpose: bool = False
  out_bias: bool = True
  out_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  out_bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  im2col: bool = False  # `conv_im2col` (inside the time loop) instead of `conv`
  dtype: Any = None     # computation dtype (parameters stay float32)

  @nn.compact
  def __call__(self, x):
    layers = [tuple(c) for c in self.convs] + [(self.features, self.kernel_size)]
    for k, (features, kernel) in enumerate(layers):
      last = k == len(layers) - 1
      init = self.out_init if last else nn.initializers.he_normal()
      upsample = k == 0 and self.transpose and self.stride > 1
      if upsample:
        w = self.param(f"conv{k}", init, (self.stride,) * 2 + (x.shape[-1], features),
                       jnp.float32)
      elif self.transpose:
        if kernel % 2 == 0:
          raise ModelCheckError(f"ConvStack: a stride-1 transposed convolution needs an odd "
                                f"kernel (SAME padding is then symmetric), got {kernel}.")
        # Initialised as the convolution it is the transpose of would be.
        w = self.param(f"conv{k}", lambda key, shape, dtype=jnp.float32:
                       transposed_kernel_as_conv(init(key, shape, dtype)),
                       (kernel, kernel, x.shape[-1], features), jnp.float32)
      else:
        w = self.param(f"conv{k}", init, (kernel, kernel, x.shape[-1], features),
                       jnp.float32)
      b = (self.param(f"bias{k}", self.out_bias_init if last else nn.initializers.zeros_init(),
                      (features,), jnp.float32) if (self.out_bias or not last) else None)
      x, w, b = nn.dtypes.promote_dtype(x, w, b, dtype=self.dtype)
      if upsample:
        x = upsampling.upsample(x, w, b)
      else:
        if self.transpose:
          w = transposed_kernel_as_conv(w)
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
  transpose: bool = False
  peephole: bool = False
  dtype: Any = None

  def _transition(self, gates, name):
    return ConvStack(gates * self.units, self.kernel_size, self.convs, out_bias=False,
                     transpose=self.transpose,
                     out_init=nn.initializers.zeros_init(),
                     im2col=True, dtype=self.dtype, name=name)

  def _peephole(self, name, c):
    """W_c* o c: one weight per state position and channel (Shi et al. 2015)."""
    w = self.param(name, nn.initializers.zeros_init(), c.shape[1:], jnp.float32)
    return nn.dtypes.promote_dtype(w, dtype=c.dtype)[0] * c

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
    if self.peephole:
      i, f = i + self._peephole("peephole_i", c), f + self._peephole("peephole_f", c)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    if self.peephole:
      o = o + self._peephole("peephole_o", c)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


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
  peephole: bool = True  # LSTM only: ConvLSTM's W_c* o C terms (Shi et al. 2015)
  dtype: Any = None      # computation dtype of the transitions (parameters float32)
  scan_impl: str = "auto"  # mingru/minlstm: `linear_scan` impl

  @nn.compact
  def __call__(self, xs):
    self._check(xs)
    outs = [self._direction(xs, reverse=False, name="forward")]
    if self.bidirectional:
      outs.append(self._direction(xs, reverse=True, name="backward"))
    return jnp.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]

  def _direction(self, xs, reverse, name):
    t, n = xs.shape[:2]
    gates = cells.num_gates(self.kind)
    bias_init = nn.initializers.zeros_init()
    if self.kind in ("lstm", "minlstm"):  # forget gate starts at 1
      u = self.units
      forget = slice(u, 2 * u) if self.kind == "lstm" else slice(0, u)
      bias_init = lambda key, shape, dtype=jnp.float32: (
          jnp.zeros(shape, dtype).at[forget].set(1.0))
    gx = ConvStack(gates * self.units, self.kernel_size, self.input_convs, self.stride,
                   self.transpose, out_bias_init=bias_init, dtype=self.dtype,
                   name=f"{name}_input")(
                       xs.reshape((t * n,) + xs.shape[2:]))
    gx = gx.reshape((t, n) + gx.shape[1:])
    if self.kind in cells.PARALLEL_CELLS:
      if not self.recurrent:  # every frame from a zero state: h_t = b_t
        return cells.recurrence_coefficients(self.kind, gx)[1]
      return cells.parallel_recurrence(self.kind, gx, reverse, self.scan_impl)
    step = _Step
    if self.remat:
      step = nn.remat(step)
    scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=0, out_axes=0, reverse=reverse)
    h0 = jnp.zeros(gx.shape[1:-1] + (self.units,), gx.dtype)
    state = (h0, h0) if self.kind == "lstm" else h0
    _, hs = scan(self.kind, self.units, self.kernel_size, self.state_convs, self.recurrent,
                 self.transpose, self.peephole and self.kind == "lstm", self.dtype,
                 name=f"{name}_step")(state, gx)
    return hs

  def _check(self, xs):
    name = type(self).__name__
    if self.kind not in KINDS:
      raise ModelCheckError(f"{name}: unknown kind {self.kind!r}; choose one of {KINDS}.")
    if self.units < 1:
      raise ModelCheckError(f"{name}: units={self.units}; the state needs at least one channel.")
    if self.stride < 1 or self.kernel_size < 1:
      raise ModelCheckError(f"{name}: stride={self.stride} and kernel_size={self.kernel_size} "
                            "must be positive.")
    if xs.ndim != 5:
      raise ModelCheckError(f"{name} expects time-major clips (T, N, H, W, C), got shape "
                            f"{xs.shape}.")
    for field in ("input_convs", "state_convs"):
      spec = getattr(self, field)
      if not all(len(c) == 2 and all(isinstance(v, int) and v >= 1 for v in c)
                 for c in spec):
        raise ModelCheckError(f"{name}: {field}={spec!r} must be ((features, kernel), ...) "
                              "pairs of positive ints, e.g. ((16, 3),).")
