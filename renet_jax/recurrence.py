"""Recurrences of the ReNet cells over a whole sequence, with a hand-written backward.

Every function here takes the input projections of all steps already computed
(`gx`, shape (L, B, G*U): one matrix product done by the caller) and runs only the
recurrent part: `hs = recurrence(kind, reverse, rec, gx)` with `hs` of shape (L, B, U),
the hidden state starting at zero, and `rec` the recurrent parameters
(`{"kernel": (U, G*U)}`, plus `"bias": (G*U,)` for the reset-after GRU).

Two implementations share one forward step per cell:
- `impl="autodiff"`: a `lax.scan` differentiated by JAX;
- `impl="custom_vjp"` (default): the same forward scan, and a backward whose reverse
  scan does only the elementwise step and the recurrent products of the state
  gradient; the recurrent weight gradient is formed after the loop as one large
  matrix product over all steps and sequences. Measured faster on CPU (see
  `python -m experiments.bench`).

Gate layout in the last axis: rnn [a], gru [z, r, n], lstm [i, f, g, o].
GRU update follows the thesis: h' = (1 - z) * h + z * n.
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
KINDS = ("rnn", "gru", "gru_reset_after", "lstm")
IMPLS = ("custom_vjp", "autodiff")


def num_gates(kind: str) -> int:
  return _cell(kind).gates


def recurrence(kind: str, reverse: bool, rec: dict, gx: Array,
               impl: str = "custom_vjp") -> Array:
  """Hidden states (L, B, U) of cell `kind` run over `gx` (L, B, G*U)."""
  if impl == "custom_vjp":
    return _recurrence_custom_vjp(kind, reverse, rec, gx)
  if impl == "autodiff":
    return _forward(_cell(kind), reverse, rec, gx)[0]
  raise ValueError(f"Unknown recurrence impl {impl!r}; choose one of {IMPLS}.")


# ----------------------------------------------------------------------------
# Per-cell steps. forward: (rec, state, gx_t) -> (state, (h_t, residuals_t)).
# backward: (rec, dstate, (dh_t, h_prev_t, h_t, res_t)) -> (dstate_prev, (dgx_t, dm_t))
# where dm_t is the gradient of the recurrent product's output (None when it equals
# dgx_t). weight_grads turns the stacked per-step quantities into d rec.
# ----------------------------------------------------------------------------


class _Cell(NamedTuple):
  gates: int
  init_state: Callable[[int, int, Any], Any]
  forward: Callable
  backward: Callable
  weight_grads: Callable


def _zeros_h(batch, units, dtype):
  return jnp.zeros((batch, units), dtype)


def _rnn_forward(rec, h, gx_t):
  h = jnp.tanh(gx_t + h @ rec["kernel"])
  return h, (h, ())


def _rnn_backward(rec, dh, xs):
  dh_t, _, h_t, _ = xs
  da = (dh + dh_t) * (1 - h_t * h_t)
  return da @ rec["kernel"].T, (da, None)


def _gru_forward(rec, h, gx_t):
  w = rec["kernel"]
  units = h.shape[-1]
  gx_zr, gx_n = gx_t[:, :2 * units], gx_t[:, 2 * units:]
  zr = jax.nn.sigmoid(gx_zr + h @ w[:, :2 * units])
  z, r = zr[:, :units], zr[:, units:]
  n = jnp.tanh(gx_n + (r * h) @ w[:, 2 * units:])
  h_new = h + z * (n - h)
  return h_new, (h_new, jnp.concatenate([zr, n], axis=-1))


def _gru_backward(rec, dh, xs):
  dh_t, h_prev, _, zrn = xs
  w = rec["kernel"]
  units = h_prev.shape[-1]
  z, r, n = zrn[:, :units], zrn[:, units:2 * units], zrn[:, 2 * units:]
  dh = dh + dh_t
  da_n = dh * z * (1 - n * n)
  dz = dh * (n - h_prev)
  dq = da_n @ w[:, 2 * units:].T  # gradient of r * h_prev
  da_zr = jnp.concatenate([dz * z * (1 - z), dq * h_prev * r * (1 - r)], axis=-1)
  dh_prev = dh * (1 - z) + dq * r + da_zr @ w[:, :2 * units].T
  return dh_prev, (jnp.concatenate([da_zr, da_n], axis=-1), None)


def _gru_weight_grads(h_prev, h, zrn, dgx, dm):
  del h, dm
  units = h_prev.shape[-1]
  r = zrn[..., units:2 * units]
  return {"kernel": jnp.concatenate(
      [_outer_sum(h_prev, dgx[..., :2 * units]),
       _outer_sum(r * h_prev, dgx[..., 2 * units:])], axis=-1)}


def _gru_ra_forward(rec, h, gx_t):
  units = h.shape[-1]
  m = h @ rec["kernel"] + rec["bias"]
  zr = jax.nn.sigmoid(gx_t[:, :2 * units] + m[:, :2 * units])
  z, r = zr[:, :units], zr[:, units:]
  m_n = m[:, 2 * units:]
  n = jnp.tanh(gx_t[:, 2 * units:] + r * m_n)
  h_new = h + z * (n - h)
  return h_new, (h_new, jnp.concatenate([zr, n, m_n], axis=-1))


def _gru_ra_backward(rec, dh, xs):
  dh_t, h_prev, _, res = xs
  units = h_prev.shape[-1]
  z, r = res[:, :units], res[:, units:2 * units]
  n, m_n = res[:, 2 * units:3 * units], res[:, 3 * units:]
  dh = dh + dh_t
  da_n = dh * z * (1 - n * n)
  da_zr = jnp.concatenate([dh * (n - h_prev) * z * (1 - z),
                           da_n * m_n * r * (1 - r)], axis=-1)
  dm = jnp.concatenate([da_zr, da_n * r], axis=-1)
  dh_prev = dh * (1 - z) + dm @ rec["kernel"].T
  return dh_prev, (jnp.concatenate([da_zr, da_n], axis=-1), dm)


def _gru_ra_weight_grads(h_prev, h, res, dgx, dm):
  del h, res, dgx
  return {"kernel": _outer_sum(h_prev, dm),
          "bias": dm.sum(axis=tuple(range(dm.ndim - 1)))}


def _lstm_init(batch, units, dtype):
  return (_zeros_h(batch, units, dtype), _zeros_h(batch, units, dtype))


def _lstm_forward(rec, state, gx_t):
  h, c = state
  units = h.shape[-1]
  a = gx_t + h @ rec["kernel"]
  ifo = jax.nn.sigmoid(jnp.concatenate([a[:, :2 * units], a[:, 3 * units:]], -1))
  i, f, o = ifo[:, :units], ifo[:, units:2 * units], ifo[:, 2 * units:]
  g = jnp.tanh(a[:, 2 * units:3 * units])
  c_new = f * c + i * g
  tanh_c = jnp.tanh(c_new)
  h_new = o * tanh_c
  return (h_new, c_new), (h_new, jnp.concatenate([i, f, g, o, c, tanh_c], -1))


def _lstm_backward(rec, dstate, xs):
  dh, dc = dstate
  dh_t, _, _, res = xs
  units = dh.shape[-1]
  i, f, g, o, c_prev, tanh_c = (res[:, k * units:(k + 1) * units] for k in range(6))
  dh = dh + dh_t
  dc = dc + dh * o * (1 - tanh_c * tanh_c)
  da = jnp.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                        dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], -1)
  return (da @ rec["kernel"].T, dc * f), (da, None)


def _plain_weight_grads(h_prev, h, res, dgx, dm):
  del h, res, dm
  return {"kernel": _outer_sum(h_prev, dgx)}


def _outer_sum(a, b):
  """sum over all steps and sequences of a^T b: one (U, L*B) x (L*B, K) product."""
  return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


_CELLS = {
    "rnn": _Cell(1, _zeros_h, _rnn_forward, _rnn_backward, _plain_weight_grads),
    "gru": _Cell(3, _zeros_h, _gru_forward, _gru_backward, _gru_weight_grads),
    "gru_reset_after": _Cell(3, _zeros_h, _gru_ra_forward, _gru_ra_backward,
                             _gru_ra_weight_grads),
    "lstm": _Cell(4, _lstm_init, _lstm_forward, _lstm_backward, _plain_weight_grads),
}


def _cell(kind: str) -> _Cell:
  try:
    return _CELLS[kind]
  except KeyError:
    raise ValueError(f"Unknown recurrence kind {kind!r}; choose one of {KINDS}.") from None


# ----------------------------------------------------------------------------
# Generic forward and backward loops.
# ----------------------------------------------------------------------------


def _forward(cell: _Cell, reverse: bool, rec: dict, gx: Array):
  units = rec["kernel"].shape[0]
  state = cell.init_state(gx.shape[1], units, gx.dtype)
  _, (hs, res) = lax.scan(functools.partial(cell.forward, rec), state, gx,
                          reverse=reverse)
  return hs, res


def _previous_states(hs: Array, reverse: bool) -> Array:
  """h_{t-1} in the direction of travel for every step (zeros before the first)."""
  zero = jnp.zeros_like(hs[:1])
  if reverse:
    return jnp.concatenate([hs[1:], zero], axis=0)
  return jnp.concatenate([zero, hs[:-1]], axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _recurrence_custom_vjp(kind, reverse, rec, gx):
  return _forward(_cell(kind), reverse, rec, gx)[0]


def _custom_fwd(kind, reverse, rec, gx):
  hs, res = _forward(_cell(kind), reverse, rec, gx)
  return hs, (rec, hs, res)


def _custom_bwd(kind, reverse, saved, dhs):
  cell = _cell(kind)
  rec, hs, res = saved
  h_prev = _previous_states(hs, reverse)
  dstate = jax.tree.map(jnp.zeros_like, cell.init_state(hs.shape[1], hs.shape[2], hs.dtype))
  # The backward loop runs against the direction of travel.
  _, (dgx, dm) = lax.scan(functools.partial(cell.backward, rec), dstate,
                          (dhs, h_prev, hs, res), reverse=not reverse)
  drec = cell.weight_grads(h_prev, hs, res, dgx, dm)
  drec = {k: v.astype(rec[k].dtype) for k, v in drec.items()}
  return drec, dgx


_recurrence_custom_vjp.defvjp(_custom_fwd, _custom_bwd)
