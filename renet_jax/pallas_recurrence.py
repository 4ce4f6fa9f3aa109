"""The ReNet recurrences as fused Pallas kernels (Triton lowering on GPUs).

`recurrence(kind, reverse, rec, xs)` computes what `renet_jax.recurrence.recurrence`
computes (same `rec` layout, same equations, the lax.scan form stays the reference),
but each direction of a sweep is one kernel launch: a program takes a block of
`BLOCK_BATCH` sequences and runs the whole sequence in a loop inside the kernel, the
hidden state held on chip, instead of one XLA while-loop iteration (a few kernel
launches) per step. The backward pass is a second kernel running the reverse loop; it
emits the gate gradients (the input projections' gradients are then two large XLA
products) and per-block sums of the recurrent-weight gradients.

Layout inside the kernels: every gate block is its own (U', U') matrix and every
per-step gate input its own (B', U') tile, U' and B' padded to powers of two of at
least 16 (what Triton's loads and dot products need). The padding is zeros, and zero
units stay zero in every cell (tanh(0) = 0, and padded rows of the recurrent matrices
are zero), so it never reaches the real units. Precision: inputs and weights are used
in their dtype (bf16 allowed), products accumulate in fp32, the state is fp32.

On CPU the kernels run in Pallas' interpret mode (slow; for tests). Under vmap
(`directions="stacked"`) both directions of a sweep become one launch with a leading
grid axis.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

Array = jax.Array
BLOCK_BATCH = 16  # sequences per program: the M of every per-step product
NUM_WARPS = 4
# Residuals the backward kernel reads, per kind (besides the states): gate activations,
# and the recurrent pre-activation of n for the reset-after GRU, the cell for the LSTM.
_RESIDUALS = {"rnn": 0, "gru": 3, "gru_reset_after": 4, "lstm": 5}
_GATES = {"rnn": 1, "gru": 3, "gru_reset_after": 3, "lstm": 4}


def recurrence(kind: str, reverse: bool, rec: dict, xs: Array,
               block_batch: int = BLOCK_BATCH) -> Array:
  """Hidden states (L, B, U) of cell `kind` run over `xs` (L, B, F); see the module."""
  return _recurrence(kind, reverse, block_batch, rec, xs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _recurrence(kind, reverse, block_batch, rec, xs):
  return _forward(kind, reverse, block_batch, rec, xs, residuals=False)[0]


def _recurrence_fwd(kind, reverse, block_batch, rec, xs):
  hs, res = _forward(kind, reverse, block_batch, rec, xs, residuals=True)
  return hs, (rec, xs, hs, res)


def _recurrence_bwd(kind, reverse, block_batch, saved, dhs):
  rec, xs, hs, res = saved
  length, batch, units = hs.shape
  gates = _GATES[kind]
  up, bp = _padded(units), _round_up(batch, block_batch)
  w = _gate_blocks(rec["kernel"], gates, up)
  w_t = jnp.swapaxes(w, 1, 2)
  hs_p = _pad_tiles(hs, bp, up)
  dhs_p = _pad_tiles(dhs.astype(jnp.float32), bp, up)
  programs = bp // block_batch
  inputs = [(w_t, _FULL), (hs_p, _TILED), (dhs_p, _TILED)]
  if res is not None:
    inputs.append((res, _TILED))
  dgx, dw, drb = _call(
      _backward_kernel(kind, reverse, length, gates), block_batch, inputs,
      outputs=[((gates, length, bp, up), _TILED), ((programs, gates, up, up), _PER_PROGRAM),
               ((programs, gates, up), _PER_PROGRAM)],
      out_dtypes=(jnp.float32,) * 3)
  dgx = _join_gates(dgx, length, batch, units)  # (L, B, G*U)
  drec = {"kernel": _from_gate_blocks(dw.sum(0), units).astype(rec["kernel"].dtype),
          "bias": dgx.sum((0, 1)).astype(rec["bias"].dtype)}
  if kind == "gru_reset_after":
    drec["recurrent_bias"] = drb.sum(0)[:, :units].reshape(-1).astype(rec["bias"].dtype)
  dgx_in = dgx.astype(xs.dtype)
  drec["input_kernel"] = (xs.reshape(-1, xs.shape[-1]).T @ dgx_in.reshape(-1, dgx.shape[-1])
                          ).astype(rec["input_kernel"].dtype)
  dxs = dgx_in @ rec["input_kernel"].T.astype(xs.dtype)
  return drec, dxs.astype(xs.dtype)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _forward(kind, reverse, block_batch, rec, xs, residuals):
  length, batch, _ = xs.shape
  gates = _GATES[kind]
  units = rec["kernel"].shape[0]
  up, bp = _padded(units), _round_up(batch, block_batch)
  gx = xs @ rec["input_kernel"] + rec["bias"]  # one large product for all steps
  gx = _split_gates(gx, gates, bp, up)  # (G, L, B', U')
  w = _gate_blocks(rec["kernel"], gates, up)  # (G, U', U')
  inputs = [(gx, _TILED), (w, _FULL)]
  if kind == "gru_reset_after":
    bias = _pad_last(rec["recurrent_bias"].reshape(gates, units), up).astype(jnp.float32)
    inputs.append((bias, _FULL))
  n_res = _RESIDUALS[kind] if residuals else 0
  outputs = [((length, bp, up), _TILED)]
  if n_res:
    outputs.append(((n_res, length, bp, up), _TILED))
  out = _call(_forward_kernel(kind, reverse, length, gates, n_res), block_batch, inputs,
              outputs, out_dtypes=(xs.dtype,) + (jnp.float32,) * (len(outputs) - 1))
  hs = out[0][:, :batch, :units]
  return hs, (out[1] if n_res else None)


# ----------------------------------------------------------------------------
# pallas_call plumbing: every array is tiled over its batch axis only.
# ----------------------------------------------------------------------------


_TILED, _FULL, _PER_PROGRAM = "tiled", "full", "per_program"


def _call(kernel, block_batch, inputs, outputs, out_dtypes):
  """The kernel over a grid of one program per block of `block_batch` sequences.
  `inputs` are (array, layout) and `outputs` (shape, layout), layout _TILED (the batch
  is the second-to-last axis: each program gets its block), _FULL (every program reads
  it whole) or _PER_PROGRAM (leading axis: one slice per program)."""
  arrays = [a for a, _ in inputs]
  in_specs = [_spec(a.shape, layout, block_batch) for a, layout in inputs]
  out_specs = [_spec(shape, layout, block_batch) for shape, layout in outputs]
  out_shape = [jax.ShapeDtypeStruct(shape, dtype)
               for (shape, _), dtype in zip(outputs, out_dtypes)]
  programs = next(a.shape[-2] for a, layout in inputs if layout == _TILED) // block_batch
  call = functools.partial(
      pl.pallas_call, kernel, out_shape=out_shape, grid=(programs,), in_specs=in_specs,
      out_specs=out_specs, compiler_params=plgpu.CompilerParams(num_warps=NUM_WARPS))
  interpreted = lambda *args: call(interpret=True)(*args)
  compiled = lambda *args: call()(*args)
  return lax.platform_dependent(*arrays, cpu=interpreted, default=compiled)


def _spec(shape, layout, block_batch):
  rank = len(shape)
  if layout == _TILED:
    return pl.BlockSpec(tuple(shape[:-2]) + (block_batch, shape[-1]),
                        lambda b: (0,) * (rank - 2) + (b, 0))
  if layout == _PER_PROGRAM:
    return pl.BlockSpec((None,) + tuple(shape[1:]), lambda b: (b,) + (0,) * (rank - 1))
  return pl.BlockSpec(tuple(shape), lambda b: (0,) * rank)


# ----------------------------------------------------------------------------
# Kernels. Refs: gx (G, L, Bb, U'), w (G, U', U'); outputs hs (L, Bb, U') and the
# residuals (R, L, Bb, U'). Loops run over time in the direction of travel.
# ----------------------------------------------------------------------------


def _dot(a, b, trans_b=False):
  """a @ b (or a @ b^T) accumulated in fp32, operands in b's dtype."""
  b_t = b.T if trans_b else b
  return jnp.dot(a.astype(b.dtype), b_t, preferred_element_type=jnp.float32)


def _dot_t(a, b):
  """a^T @ b accumulated in fp32 (weight gradients: (Bb, U')^T (Bb, U'))."""
  return jnp.dot(a.T, b, preferred_element_type=jnp.float32)


def _time(i, length, reverse):
  return length - 1 - i if reverse else i


def _forward_kernel(kind, reverse, length, gates, n_res):
  def kernel(*refs):
    gx_ref, w_ref = refs[:2]
    rb_ref = refs[2] if kind == "gru_reset_after" else None
    outs = refs[2 + (rb_ref is not None):]
    hs_ref = outs[0]
    res_ref = outs[1] if n_res else None
    shape = hs_ref.shape[1:]
    gx = lambda g, t: gx_ref[g, t].astype(jnp.float32)
    w = lambda g: w_ref[g]

    def save(k, t, value):
      if res_ref is not None:
        res_ref[k, t] = value

    def step(i, carry):
      t = _time(i, length, reverse)
      if kind == "rnn":
        h = jnp.tanh(gx(0, t) + _dot(carry, w(0)))
        new = h
      elif kind == "gru":
        h = carry
        z = jax.nn.sigmoid(gx(0, t) + _dot(h, w(0)))
        r = jax.nn.sigmoid(gx(1, t) + _dot(h, w(1)))
        n = jnp.tanh(gx(2, t) + _dot(r * h, w(2)))
        for k, v in enumerate((z, r, n)):
          save(k, t, v)
        h = h + z * (n - h)
        new = h
      elif kind == "gru_reset_after":
        h = carry
        m = [_dot(h, w(g)) + rb_ref[g][None, :] for g in range(3)]
        z = jax.nn.sigmoid(gx(0, t) + m[0])
        r = jax.nn.sigmoid(gx(1, t) + m[1])
        n = jnp.tanh(gx(2, t) + r * m[2])
        for k, v in enumerate((z, r, n, m[2])):
          save(k, t, v)
        h = h + z * (n - h)
        new = h
      else:  # lstm
        h, c = carry
        i_, f, o = (jax.nn.sigmoid(gx(g, t) + _dot(h, w(g))) for g in (0, 1, 3))
        g_ = jnp.tanh(gx(2, t) + _dot(h, w(2)))
        c = f * c + i_ * g_
        for k, v in enumerate((i_, f, g_, o, c)):
          save(k, t, v)
        h = o * jnp.tanh(c)
        new = (h, c)
      hs_ref[t] = h.astype(hs_ref.dtype)
      return new

    zeros = jnp.zeros(shape, jnp.float32)
    lax.fori_loop(0, length, step, (zeros, zeros) if kind == "lstm" else zeros)

  return kernel


def _backward_kernel(kind, reverse, length, gates):
  def kernel(*refs):
    w_t_ref, hs_ref, dhs_ref = refs[:3]
    res_ref = refs[3] if kind != "rnn" else None
    dgx_ref, dw_ref, drb_ref = refs[-3:]
    shape = hs_ref.shape[1:]
    zeros = jnp.zeros(shape, jnp.float32)
    w_t = lambda g: w_t_ref[g]
    res = lambda k, t: res_ref[k, t]

    def h_prev(t):
      """The state before step t in the direction of travel (zeros at the start)."""
      prev = t + 1 if reverse else t - 1
      first = t == (length - 1 if reverse else 0)
      return jnp.where(first, zeros, hs_ref[jnp.clip(prev, 0, length - 1)].astype(jnp.float32))

    def step(i, carry):
      # Runs against the direction of travel.
      t = _time(length - 1 - i, length, reverse)
      dstate, dw, drb = carry
      hp = h_prev(t)
      dh = (dstate[0] if kind == "lstm" else dstate) + dhs_ref[t]
      if kind == "rnn":
        h = hs_ref[t].astype(jnp.float32)
        da = (dh * (1 - h * h),)
        dh_prev = _dot(da[0], w_t(0))
        lhs = (hp,)
      elif kind == "gru":
        z, r, n = res(0, t), res(1, t), res(2, t)
        da_n = dh * z * (1 - n * n)
        dq = _dot(da_n, w_t(2))
        da_z = dh * (n - hp) * z * (1 - z)
        da_r = dq * hp * r * (1 - r)
        da = (da_z, da_r, da_n)
        dh_prev = dh * (1 - z) + dq * r + _dot(da_z, w_t(0)) + _dot(da_r, w_t(1))
        lhs = (hp, hp, r * hp)
      elif kind == "gru_reset_after":
        z, r, n, m_n = res(0, t), res(1, t), res(2, t), res(3, t)
        da_n = dh * z * (1 - n * n)
        dm = (dh * (n - hp) * z * (1 - z), da_n * m_n * r * (1 - r), da_n * r)
        da = (dm[0], dm[1], da_n)
        dh_prev = dh * (1 - z) + sum(_dot(dm[g], w_t(g)) for g in range(3))
        lhs = (hp, hp, hp)
        drb = tuple(drb[g] + jnp.sum(dm[g], axis=0) for g in range(3))
        da_w = dm
      else:  # lstm
        dc = dstate[1]
        i_, f, g_, o, c = (res(k, t) for k in range(5))
        prev = t + 1 if reverse else t - 1
        first = t == (length - 1 if reverse else 0)
        c_prev = jnp.where(first, zeros, res_ref[4, jnp.clip(prev, 0, length - 1)])
        tanh_c = jnp.tanh(c)
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        da = (dc * g_ * i_ * (1 - i_), dc * c_prev * f * (1 - f),
              dc * i_ * (1 - g_ * g_), dh * tanh_c * o * (1 - o))
        dh_prev = sum(_dot(da[g], w_t(g)) for g in range(4))
        lhs = (hp,) * 4
        dc_prev = dc * f
      if kind != "gru_reset_after":
        da_w = da
      for g in range(gates):
        dgx_ref[g, t] = da[g]
      dw = tuple(dw[g] + _dot_t(lhs[g], da_w[g]) for g in range(gates))
      new_state = (dh_prev, dc_prev) if kind == "lstm" else dh_prev
      return new_state, dw, drb

    up = shape[-1]
    dw0 = tuple(jnp.zeros((up, up), jnp.float32) for _ in range(gates))
    drb0 = tuple(jnp.zeros((up,), jnp.float32) for _ in range(gates))
    dstate0 = (zeros, zeros) if kind == "lstm" else zeros
    _, dw, drb = lax.fori_loop(0, length, step, (dstate0, dw0, drb0))
    for g in range(gates):
      dw_ref[g] = dw[g]
      drb_ref[g] = drb[g]

  return kernel


# ----------------------------------------------------------------------------
# Layout helpers.
# ----------------------------------------------------------------------------


def _padded(units: int) -> int:
  return max(16, pl.next_power_of_2(units))


def _round_up(n: int, multiple: int) -> int:
  return math.ceil(n / multiple) * multiple


def _pad_last(x, size):
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - x.shape[-1])])


def _pad_tiles(x, bp, up):
  """(L, B, U) -> (L, B', U') zero-padded."""
  return jnp.pad(x, ((0, 0), (0, bp - x.shape[1]), (0, up - x.shape[2])))


def _split_gates(gx, gates, bp, up):
  """(L, B, G*U) -> (G, L, B', U'), each gate's tile zero-padded."""
  length, batch, width = gx.shape
  gx = gx.reshape(length, batch, gates, width // gates).transpose(2, 0, 1, 3)
  return jnp.pad(gx, ((0, 0), (0, 0), (0, bp - batch), (0, up - width // gates)))


def _join_gates(dgx, length, batch, units):
  """(G, L, B', U') -> (L, B, G*U)."""
  gates = dgx.shape[0]
  return dgx[:, :, :batch, :units].transpose(1, 2, 0, 3).reshape(length, batch,
                                                                 gates * units)


def _gate_blocks(kernel, gates, up):
  """(U, G*U) -> (G, U', U') zero-padded."""
  units = kernel.shape[0]
  blocks = kernel.reshape(units, gates, units).transpose(1, 0, 2)
  return jnp.pad(blocks, ((0, 0), (0, up - units), (0, up - units)))


def _from_gate_blocks(blocks, units):
  """(G, U', U') -> (U, G*U)."""
  gates = blocks.shape[0]
  return blocks[:, :units, :units].transpose(1, 0, 2).reshape(units, gates * units)
