"""Recurrent cells (tanh RNN, GRU, LSTM, minGRU, minLSTM) as Flax linen modules.

A cell here runs over a whole time-major sequence, `cell(xs, reverse=False)` with xs of
shape (L, B, F) -> hidden states (L, B, U), because that is how ReNet uses it: the input
projections of every step are one matrix product before the scan and only the
recurrent product is inside it (see `renet_jax.kernels.recurrence`).

The parallel cells minGRU and minLSTM (Feng et al. 2024) have no recurrent kernel: their
gates come from the input alone, so the recurrence is elementwise, h_t = a_t h_{t-1} + b_t,
solved by `renet_jax.kernels.linear_scan` (their `impl`: "auto", "associative", "sequential"):
  mingru   z = sigma(k_z), h~ = k_h;                  h' = (1 - z) h + z h~
  minlstm  f = sigma(k_f), i = sigma(k_i), h~ = k_h;  f', i' = f, i / (f + i);
           h' = f' h + i' h~
with k = W x + b the input projection (no tanh on h~, as in the paper).

Parameters (G gates: rnn 1, gru 3 [z, r, n], lstm 4 [i, f, g, o], mingru 2 [z, h~],
minlstm 3 [f, i, h~]):
  input_kernel (F, G*U)      Glorot uniform, each gate block initialised on its own
  recurrent_kernel (U, G*U)  orthogonal, each gate block on its own (Saxe et al. 2014);
                             not in the parallel cells
  bias (G*U,)                zeros (LSTM and minLSTM forget gate: `forget_bias`, default 1)
  recurrent_bias (G*U,)      reset-after GRU only, zeros

Models take a cell *factory* (`CellDef`): a cell class, or a `functools.partial` of one
with its options bound, called as `factory(units=U, name=...)` by each sweep.
`cell_factory("gru", reset_after=True, impl="autodiff")` builds one; a name alone
(`cell="gru"`) is the shortcut the public modules accept wherever a factory is.
"""

import dataclasses
import difflib
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from renet_jax.errors import ModelCheckError
from renet_jax.kernels import common, linear_scan, recurrence

Dtype = Any
CellDef = Callable[..., nn.Module]  # called with units= and name=


def cell_names() -> tuple[str, ...]:
  return tuple(_CELLS)


def num_gates(cell: str) -> int:
  """Gate blocks G of the named cell (its input kernel is (F, G*U))."""
  if cell in PARALLEL_CELLS:
    return _CELLS[cell].gates
  return common.num_gates(cell)


def cell_impls(cell: str) -> tuple[str, ...]:
  """The `impl` values the named cell takes."""
  return linear_scan.IMPLS if cell in PARALLEL_CELLS else recurrence.IMPLS


def cell_factory(cell: "str | CellDef", **options) -> CellDef:
  """A cell factory: `cell` is a name (`cell_names()`) or already a factory;
  `options` (e.g. dtype, impl, reset_after, forget_bias) are bound to it. Options left
  None are not bound, so the cell's defaults hold."""
  options = {k: v for k, v in options.items() if v is not None}
  if not isinstance(cell, str):
    return functools.partial(cell, **options) if options else cell
  if cell not in _CELLS:
    raise ModelCheckError(f"Unknown cell {cell!r}; choose one of {cell_names()}.")
  cls = _CELLS[cell]
  fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name", "units"}
  unknown = sorted(set(options) - fields)
  if unknown:
    close = difflib.get_close_matches(unknown[0], fields, n=1)
    raise ModelCheckError(f"The {cell!r} cell has no option {unknown[0]!r}"
                          + (f" (did you mean {close[0]!r}?)" if close else "")
                          + f"; its options are {sorted(fields)}.")
  return functools.partial(cls, **options)


def per_gate(init: nn.initializers.Initializer, gates: int) -> nn.initializers.Initializer:
  """Initialises a (rows, gates*U) matrix as `gates` independent (rows, U) blocks."""

  def init_fn(key, shape, dtype=jnp.float32):
    rows, cols = shape
    keys = jax.random.split(key, gates)
    block = lambda k: init(k, (rows, cols // gates), dtype)
    if isinstance(keys, jax.core.Tracer):
      # Under jit: one loop over the gates' keys, so the initializer compiles once, not
      # once per gate (vmap would batch the orthogonal initializer's QR, which deadlocks
      # XLA:CPU on 2 cores: docs/benchmarks.md).
      blocks = jax.lax.map(block, keys)
    else:
      # Called eagerly, a `lax.map` would compile anew at every call (its body is a new
      # closure each time), while each block's own operations are compiled once per shape.
      blocks = jnp.stack([block(k) for k in keys])
    return blocks.transpose(1, 0, 2).reshape(rows, cols)

  return init_fn


class _Cell(nn.Module):
  """What every cell shares: its fields, zero biases, and the check of its input."""
  units: int
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  impl: str = "auto"
  precision: str = "float32"  # float32 products: float32 | tf32 | tf32x3 (recurrence.py)

  def bias_init(self, key, shape, dtype=jnp.float32):
    return jnp.zeros(shape, dtype)

  def _check(self, xs):
    if xs.ndim != 3:
      raise ModelCheckError(f"{type(self).__name__} expects a time-major sequence (L, B, F), "
                            f"got shape {xs.shape}.")
    if self.units < 1:
      raise ModelCheckError(f"{type(self).__name__}: units={self.units}; a cell needs at least "
                            "one unit.")


class _RecurrentCell(_Cell):
  """Shared body: parameters, one input projection, then the recurrence."""
  kind = "rnn"  # recurrence kind, overridden by subclasses

  @nn.compact
  def __call__(self, xs: jax.Array, reverse: bool = False) -> jax.Array:
    self._check(xs)
    gates = common.num_gates(self.kind)
    width = gates * self.units
    w_in = self.param("input_kernel", per_gate(nn.initializers.glorot_uniform(), gates),
                      (xs.shape[-1], width), self.param_dtype)
    w_rec = self.param("recurrent_kernel", per_gate(nn.initializers.orthogonal(), gates),
                       (self.units, width), self.param_dtype)
    bias = self.param("bias", self.bias_init, (width,), self.param_dtype)
    b_rec = (self.param("recurrent_bias", nn.initializers.zeros_init(), (width,),
                        self.param_dtype) if self.kind == "gru_reset_after" else None)
    xs, w_in, bias, w_rec, b_rec = nn.dtypes.promote_dtype(
        xs, w_in, bias, w_rec, b_rec, dtype=self.dtype)
    weights = {"input_kernel": w_in, "kernel": w_rec, "bias": bias}
    if b_rec is not None:
      weights["recurrent_bias"] = b_rec
    return recurrence.recurrence(self.kind, reverse, weights, xs, impl=self.impl,
                                 precision=self.precision)


class SimpleRNNCell(_RecurrentCell):
  """h' = tanh(W x + U h + b)."""
  kind = "rnn"


class GRUCell(_RecurrentCell):
  """GRU of the thesis (eq. 2.24): the reset gate multiplies h before the recurrent
  product. `reset_after=True` gives the cuDNN/PyTorch variant, r * (U_n h + b_hn), with
  its own recurrent bias; `gru_from_torch` converts nn.GRU weights to it."""
  reset_after: bool = False

  @property
  def kind(self):
    return "gru_reset_after" if self.reset_after else "gru"


class LSTMCell(_RecurrentCell):
  """LSTM without peepholes; the forget-gate bias starts at `forget_bias`."""
  forget_bias: float = 1.0
  kind = "lstm"

  def bias_init(self, key, shape, dtype=jnp.float32):
    units = shape[0] // 4
    return jnp.zeros(shape, dtype).at[units:2 * units].set(self.forget_bias)


class _ParallelCell(_Cell):
  """Shared body of the parallel cells: one input projection (G gate blocks), the
  coefficients (a, b) of h_t = a_t h_{t-1} + b_t from it (`recurrence_coefficients`),
  then `linear_scan` (`impl`: its impls; `precision`: the projection's). The same call
  as `_RecurrentCell`; subclasses set `kind` and `gates`."""

  @nn.compact
  def __call__(self, xs: jax.Array, reverse: bool = False) -> jax.Array:
    self._check(xs)
    width = self.gates * self.units
    w_in = self.param("input_kernel", per_gate(nn.initializers.glorot_uniform(), self.gates),
                      (xs.shape[-1], width), self.param_dtype)
    bias = self.param("bias", self.bias_init, (width,), self.param_dtype)
    xs, w_in, bias = nn.dtypes.promote_dtype(xs, w_in, bias, dtype=self.dtype)
    with jax.default_matmul_precision(recurrence.PRECISIONS[self.precision]):
      k = xs @ w_in + bias
    return parallel_recurrence(self.kind, k, reverse, self.impl)


class MinGRUCell(_ParallelCell):
  """minGRU: h' = (1 - z) h + z h~, z = sigma(W_z x + b_z), h~ = W_h x + b_h."""
  kind = "mingru"
  gates = 2


class MinLSTMCell(_ParallelCell):
  """minLSTM: h' = f' h + i' h~ with f', i' = f, i / (f + i) (f, i sigmoid gates of x);
  the forget-gate bias starts at `forget_bias`."""
  forget_bias: float = 1.0
  kind = "minlstm"
  gates = 3

  def bias_init(self, key, shape, dtype=jnp.float32):
    units = shape[0] // 3
    return jnp.zeros(shape, dtype).at[:units].set(self.forget_bias)


def recurrence_coefficients(kind: str, k: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(a, b) of h_t = a_t h_{t-1} + b_t from the gate pre-activations k (..., G*U) of a
  parallel cell (gate blocks in the last axis). minLSTM's normalised gates are formed
  without dividing: f / (f + i) = sigma(log f - log i), log sigma(x) = -softplus(-x)."""
  if kind == "mingru":
    k_z, k_h = jnp.split(k, 2, axis=-1)
    return jax.nn.sigmoid(-k_z), jax.nn.sigmoid(k_z) * k_h
  if kind == "minlstm":
    k_f, k_i, k_h = jnp.split(k, 3, axis=-1)
    log_ratio = jax.nn.softplus(-k_i) - jax.nn.softplus(-k_f)  # log f - log i
    return jax.nn.sigmoid(log_ratio), jax.nn.sigmoid(-log_ratio) * k_h
  raise ModelCheckError(f"Unknown parallel cell {kind!r}; choose one of {PARALLEL_CELLS}.")


def parallel_recurrence(kind: str, k: jax.Array, reverse: bool = False,
                        impl: str = "auto") -> jax.Array:
  """Hidden states of parallel cell `kind` from its gate pre-activations k (L, ..., G*U)
  over the leading (time) axis, the state starting at zero."""
  a, b = recurrence_coefficients(kind, k)
  return linear_scan.linear_scan(a, b, reverse=reverse, impl=impl)


_CELLS = {"rnn": SimpleRNNCell, "gru": GRUCell, "lstm": LSTMCell,
          "mingru": MinGRUCell, "minlstm": MinLSTMCell}
PARALLEL_CELLS = tuple(n for n, c in _CELLS.items() if issubclass(c, _ParallelCell))


def gru_from_torch(weight_ih, weight_hh, bias_ih, bias_hh) -> dict:
  """Parameters of a `GRUCell(reset_after=True)` equal to one direction of torch nn.GRU.

  torch stacks gates as [r, z, n] in rows and updates h' = (1 - z) n + z h; ours stacks
  [z, r, n] in columns with h' = (1 - z) h + z n, so z's weights and biases change sign
  (1 - sigmoid(a) = sigmoid(-a)). b_hr and b_hz only add to the input bias.
  """
  import numpy as np
  w_ih, w_hh = np.asarray(weight_ih), np.asarray(weight_hh)
  b_ih, b_hh = np.asarray(bias_ih), np.asarray(bias_hh)
  units = w_hh.shape[1]
  r, z, n = (slice(k * units, (k + 1) * units) for k in range(3))
  sign = np.concatenate([-np.ones(units), np.ones(2 * units)])
  order = lambda a: np.concatenate([a[z], a[r], a[n]], axis=0)
  zeros = np.zeros(units, b_hh.dtype)
  return {
      "input_kernel": order(w_ih).T * sign,
      "recurrent_kernel": order(w_hh).T * sign,
      "bias": (order(b_ih) + np.concatenate([b_hh[z], b_hh[r], zeros])) * sign,
      "recurrent_bias": np.concatenate([zeros, zeros, b_hh[n]]),
  }
