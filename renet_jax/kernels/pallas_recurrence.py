"""The ReNet recurrences as fused Pallas kernels (Triton lowering on NVIDIA GPUs).

`recurrence(kind, reverse, weights, xs)` computes what `renet_jax.kernels.recurrence.recurrence`
computes (same `weights` layout, same equations, the lax.scan form stays the reference),
but each direction of a sweep is one kernel launch: a program takes a block of
sequences and runs the whole sequence in a loop inside the kernel, the hidden state
held on chip, instead of one XLA while-loop iteration (a few kernel launches) per step.
The backward pass is a second kernel running the reverse loop; it writes out the gate
gradients only, so that every weight gradient is one large XLA product over all steps
outside the kernel (FlashRNN's layout), and no (U', U') sums ride in its loop state.

The layout of a shape (`renet_jax.kernels.pallas_plan.plan`: batch tile, warps, whether the
recurrent weights are loaded once before the time loop or read from L2 each step) is
chosen from real sm_90 compilations (`renet_jax/kernels/pallas_sm90.json`) to fit an H100/H200
SM; where none fits, an explicit impl="pallas" takes the compiled layout that spills
fewest registers, and a shape with no compiled layout at all is refused on a GPU
(`impl="auto"` uses the lax.scan path for both). Inside the kernels every gate block is
its own (U', U') matrix and every per-step gate input its own (B', U') tile, U' and B'
padded (powers of two of at least 16, what Triton's loads and dot products need). The
padding is zeros, and zero units stay zero in every cell (tanh(0) = 0, and padded rows
of the recurrent matrices are zero), so it never reaches the real units.

Precision is explicit: `precision="float32"` computes fp32 products in fp32 (Triton's
IEEE input precision, FMA loops; its default would be TF32), `"tf32x3"` in three TF32
tensor-core passes (fp32-grade error, a few 1e-7 relative), `"tf32"` in one. Inputs and
weights are used in their dtype (bf16 allowed), products accumulate in fp32, the state
is fp32. On CPU the kernels run in Pallas' interpret mode (slow; for tests). Under vmap
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

from renet_jax.errors import ModelCheckError
from renet_jax.kernels import pallas_plan
from renet_jax.kernels.common import PRECISIONS, lowering_platform, num_gates, previous_states

Array = jax.Array
# The kernels' products per model.precision (`common.PRECISIONS` names the choices).
_KERNEL_PRECISION = {"float32": lax.Precision.HIGHEST, "tf32": lax.Precision.DEFAULT,
                     "tf32x3": lax.DotAlgorithmPreset.TF32_TF32_F32_X3}
# Where the three-pass TF32 algorithm does not exist (XLA's products outside the kernels,
# the interpreted kernels on CPU), tf32x3 computes in fp32.
_XLA_PRECISION = {"float32": "float32", "tf32": "tf32", "tf32x3": "float32"}
# Residuals the backward kernel reads, per kind (besides the states): gate activations,
# and the recurrent pre-activation of n for the reset-after GRU, the cell for the LSTM.
_RESIDUALS = {"rnn": 0, "gru": 3, "gru_reset_after": 4, "lstm": 5}


def recurrence(kind: str, reverse: bool, weights: dict, xs: Array, precision: str = "float32",
               plan: pallas_plan.KernelPlan | None = None) -> Array:
  """Hidden states (L, B, U) of cell `kind` run over `xs` (L, B, F); see the module.
  `plan` overrides the layout `pallas_plan.plan` picks (tests, benchmarks)."""
  if precision not in PRECISIONS:
    raise ModelCheckError(f"Unknown precision {precision!r}; choose one of "
                          f"{tuple(PRECISIONS)}.")
  units = weights["kernel"].shape[0]
  if plan is None:
    plan = pallas_plan.plan(kind, units, xs.shape[1], xs.dtype, precision, allow_spills=True)
    if plan is None:
      if _lowers_for_gpu():
        raise ModelCheckError(
            f"impl='pallas': no kernel layout of a {kind} with {units} units "
            f"({pallas_plan.operand(xs.dtype, precision)} products) is known to compile "
            "within an H100/H200 SM's shared memory "
            "(renet_jax/kernels/pallas_sm90.json); use impl='auto', which runs the lax.scan path "
            "for it, or another model.precision / model.dtype.")
      plan = pallas_plan.KernelPlan(16, 4, False)  # interpret mode: any size runs
  return _recurrence(kind, reverse, precision, plan, weights, xs)


def _lowers_for_gpu() -> bool:
  return lowering_platform() == "cuda"


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _recurrence(kind, reverse, precision, plan, weights, xs):
  return _forward(kind, reverse, precision, plan, weights, xs, residuals=False)[0]


def _recurrence_fwd(kind, reverse, precision, plan, weights, xs):
  hs, res = _forward(kind, reverse, precision, plan, weights, xs, residuals=True)
  return hs, (weights, xs, hs, res)


def _recurrence_bwd(kind, reverse, precision, plan, saved, dhs):
  weights, xs, hs, res = saved
  length, batch, units = hs.shape
  gates = num_gates(kind)
  units_padded, batch_padded = pallas_plan.padded_units(units), _round_up(batch, plan.block_batch)
  w_t = jnp.swapaxes(_gate_blocks(weights["kernel"], gates, units_padded), 1, 2)
  inputs = [(w_t, _FULL), (_pad_tiles(hs, batch_padded, units_padded), _TILED),
            (_pad_tiles(dhs.astype(jnp.float32), batch_padded, units_padded), _TILED)]
  if res is not None:
    inputs.append((res, _TILED))
  (dgx_p,) = _call(functools.partial(_backward_kernel, kind, reverse, length,
                                     resident=plan.resident), precision, plan,
                   inputs, outputs=[((gates, length, batch_padded, units_padded), _TILED)],
                   out_dtypes=(jnp.float32,))
  dot = functools.partial(jnp.matmul,
                          precision=_KERNEL_PRECISION[_XLA_PRECISION[precision]])
  # Weight gradients outside the kernel: per gate, sum over all steps and lines of
  # lhs^T da, one (U, L*B) x (L*B, U) product each.
  dgx = dgx_p[:, :, :batch, :units]  # (G, L, B, U)
  h_prev = previous_states(hs.astype(jnp.float32), reverse)
  lhs = [h_prev] * gates
  da_w = [dgx[g] for g in range(gates)]
  if kind == "gru":  # n's product is with r * h_prev
    lhs[2] = res[1, :, :batch, :units] * h_prev
  elif kind == "gru_reset_after":  # d(W_n h + b_n) = r * d a_n
    da_w[2] = dgx[2] * res[1, :, :batch, :units]
  flat = lambda a: a.reshape(-1, units)
  dkernel = jnp.concatenate([dot(flat(lhs[g]).T, flat(da_w[g])) for g in range(gates)], 1)
  dgx = dgx.transpose(1, 2, 0, 3).reshape(length, batch, gates * units)  # (L, B, G*U)
  dweights = {"kernel": dkernel.astype(weights["kernel"].dtype),
              "bias": dgx.sum((0, 1)).astype(weights["bias"].dtype)}
  if kind == "gru_reset_after":
    db = [dgx[..., :2 * units].sum((0, 1)), da_w[2].sum((0, 1))]
    dweights["recurrent_bias"] = jnp.concatenate(db).astype(weights["bias"].dtype)
  dgx_in = dgx.astype(xs.dtype)
  dweights["input_kernel"] = dot(xs.reshape(-1, xs.shape[-1]).T, dgx_in.reshape(
      -1, dgx.shape[-1])).astype(weights["input_kernel"].dtype)
  dxs = dot(dgx_in, weights["input_kernel"].T.astype(xs.dtype))
  return dweights, dxs.astype(xs.dtype)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _forward(kind, reverse, precision, plan, weights, xs, residuals):
  length, batch, _ = xs.shape
  gates = num_gates(kind)
  units = weights["kernel"].shape[0]
  units_padded, batch_padded = pallas_plan.padded_units(units), _round_up(batch, plan.block_batch)
  # One large product for all steps.
  gx = jnp.matmul(xs, weights["input_kernel"],
                  precision=_KERNEL_PRECISION[_XLA_PRECISION[precision]]) + weights["bias"]
  gx = _split_gates(gx, gates, batch_padded, units_padded)  # (G, L, B', U')
  w = _gate_blocks(weights["kernel"], gates, units_padded)  # (G, U', U')
  inputs = [(gx, _TILED), (w, _FULL)]
  if kind == "gru_reset_after":
    bias = _pad_last(weights["recurrent_bias"].reshape(gates, units),
                     units_padded).astype(jnp.float32)
    inputs.append((bias, _FULL))
  n_res = _RESIDUALS[kind] if residuals else 0
  outputs = [((length, batch_padded, units_padded), _TILED)]
  if n_res:
    outputs.append(((n_res, length, batch_padded, units_padded), _TILED))
  out = _call(functools.partial(_forward_kernel, kind, reverse, length, n_res,
                                resident=plan.resident), precision, plan,
              inputs, outputs, out_dtypes=(xs.dtype,) + (jnp.float32,) * (len(outputs) - 1))
  hs = out[0][:, :batch, :units]
  return hs, (out[1] if n_res else None)


# ----------------------------------------------------------------------------
# pallas_call plumbing: every array is tiled over its batch axis only.
# ----------------------------------------------------------------------------


_TILED, _FULL = "tiled", "full"


def _call(make_kernel, precision, plan, inputs, outputs, out_dtypes):
  """The kernel `make_kernel(precision=...)` over a grid of one program per block of
  `plan.block_batch` sequences.
  `inputs` are (array, layout) and `outputs` (shape, layout), layout _TILED (the batch
  is the second-to-last axis: each program gets its block) or _FULL (every program
  reads it whole)."""
  block_batch = plan.block_batch
  arrays = [a for a, _ in inputs]
  in_specs = [_spec(a.shape, layout, block_batch) for a, layout in inputs]
  out_specs = [_spec(shape, layout, block_batch) for shape, layout in outputs]
  out_shape = [jax.ShapeDtypeStruct(shape, dtype)
               for (shape, _), dtype in zip(outputs, out_dtypes)]
  programs = next(a.shape[-2] for a, layout in inputs if layout == _TILED) // block_batch
  call = lambda kernel, **kw: pl.pallas_call(
      kernel, out_shape=out_shape, grid=(programs,), in_specs=in_specs,
      out_specs=out_specs, compiler_params=plgpu.CompilerParams(
          num_warps=plan.num_warps, num_stages=plan.num_stages), **kw)
  interpreted = lambda *args: call(make_kernel(precision=_XLA_PRECISION[precision]),
                                   interpret=True)(*args)
  compiled = lambda *args: call(make_kernel(precision=precision))(*args)
  return lax.platform_dependent(*arrays, cpu=interpreted, default=compiled)


def _spec(shape, layout, block_batch):
  rank = len(shape)
  if layout == _TILED:
    return pl.BlockSpec(tuple(shape[:-2]) + (block_batch, shape[-1]),
                        lambda b: (0,) * (rank - 2) + (b, 0))
  return pl.BlockSpec(tuple(shape), lambda b: (0,) * rank)


# ----------------------------------------------------------------------------
# Kernels. Refs: gx (G, L, Bb, U'), w (G, U', U'); outputs hs (L, Bb, U') and the
# residuals (R, L, Bb, U'). Loops run over time in the direction of travel.
# ----------------------------------------------------------------------------


def _dot(a, b, precision):
  """a @ b accumulated in fp32, operands in b's dtype (fp32 products: `precision`)."""
  return jnp.dot(a.astype(b.dtype), b, preferred_element_type=jnp.float32,
                 precision=_KERNEL_PRECISION[precision])


def _time(i, length, reverse):
  return length - 1 - i if reverse else i


def _weights(w_ref, resident):
  """Gate block g of the recurrent weights: loaded once here, before the time loop, when
  `resident` (kept on chip for the whole sequence), else read in the step (from L2)."""
  gates = w_ref.shape[0]
  if resident:
    blocks = [w_ref[g] for g in range(gates)]
    return lambda g: blocks[g]
  return lambda g: w_ref[g]


def _forward_kernel(kind, reverse, length, n_res, resident, precision):
  def kernel(*refs):
    gx_ref, w_ref = refs[:2]
    rb_ref = refs[2] if kind == "gru_reset_after" else None
    outs = refs[2 + (rb_ref is not None):]
    hs_ref = outs[0]
    res_ref = outs[1] if n_res else None
    shape = hs_ref.shape[1:]
    gx = lambda g, t: gx_ref[g, t].astype(jnp.float32)
    w = _weights(w_ref, resident)
    dot = lambda a, g: _dot(a, w(g), precision)

    def save(k, t, value):
      if res_ref is not None:
        res_ref[k, t] = value

    def step(i, carry):
      t = _time(i, length, reverse)
      if kind == "rnn":
        h = jnp.tanh(gx(0, t) + dot(carry, 0))
        new = h
      elif kind == "gru":
        h = carry
        z = jax.nn.sigmoid(gx(0, t) + dot(h, 0))
        r = jax.nn.sigmoid(gx(1, t) + dot(h, 1))
        n = jnp.tanh(gx(2, t) + dot(r * h, 2))
        for k, v in enumerate((z, r, n)):
          save(k, t, v)
        h = h + z * (n - h)
        new = h
      elif kind == "gru_reset_after":
        h = carry
        m = [dot(h, g) + rb_ref[g][None, :] for g in range(3)]
        z = jax.nn.sigmoid(gx(0, t) + m[0])
        r = jax.nn.sigmoid(gx(1, t) + m[1])
        n = jnp.tanh(gx(2, t) + r * m[2])
        for k, v in enumerate((z, r, n, m[2])):
          save(k, t, v)
        h = h + z * (n - h)
        new = h
      else:  # lstm
        h, c = carry
        i_, f, o = (jax.nn.sigmoid(gx(g, t) + dot(h, g)) for g in (0, 1, 3))
        g_ = jnp.tanh(gx(2, t) + dot(h, 2))
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


def _backward_kernel(kind, reverse, length, resident, precision):
  """The reverse loop: writes the gate gradients dgx (G, L, Bb, U') and nothing else
  (the weight gradients are products over all steps outside the kernel)."""
  def kernel(*refs):
    w_t_ref, hs_ref, dhs_ref = refs[:3]
    res_ref = refs[3] if kind != "rnn" else None
    dgx_ref = refs[-1]
    shape = hs_ref.shape[1:]
    zeros = jnp.zeros(shape, jnp.float32)
    w_t = _weights(w_t_ref, resident)
    dot = lambda a, g: _dot(a, w_t(g), precision)
    res = lambda k, t: res_ref[k, t]

    def step(i, dstate):
      # Runs against the direction of travel.
      t = _time(length - 1 - i, length, reverse)
      dh = (dstate[0] if kind == "lstm" else dstate) + dhs_ref[t]
      if kind == "rnn":
        h = hs_ref[t].astype(jnp.float32)
        da = (dh * (1 - h * h),)
        dh_prev = dot(da[0], 0)
      elif kind == "gru":
        prev = t + 1 if reverse else t - 1
        first = t == (length - 1 if reverse else 0)
        hp = jnp.where(first, zeros,
                       hs_ref[jnp.clip(prev, 0, length - 1)].astype(jnp.float32))
        z, r, n = res(0, t), res(1, t), res(2, t)
        da_n = dh * z * (1 - n * n)
        dq = dot(da_n, 2)
        da_z = dh * (n - hp) * z * (1 - z)
        da_r = dq * hp * r * (1 - r)
        da = (da_z, da_r, da_n)
        dh_prev = dh * (1 - z) + dq * r + dot(da_z, 0) + dot(da_r, 1)
      elif kind == "gru_reset_after":
        prev = t + 1 if reverse else t - 1
        first = t == (length - 1 if reverse else 0)
        hp = jnp.where(first, zeros,
                       hs_ref[jnp.clip(prev, 0, length - 1)].astype(jnp.float32))
        z, r, n, m_n = res(0, t), res(1, t), res(2, t), res(3, t)
        da_n = dh * z * (1 - n * n)
        dm = (dh * (n - hp) * z * (1 - z), da_n * m_n * r * (1 - r), da_n * r)
        da = (dm[0], dm[1], da_n)
        dh_prev = dh * (1 - z) + sum(dot(dm[g], g) for g in range(3))
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
        dh_prev = sum(dot(da[g], g) for g in range(4))
      for g, da_g in enumerate(da):
        dgx_ref[g, t] = da_g
      return (dh_prev, dc * f) if kind == "lstm" else dh_prev

    lax.fori_loop(0, length, step, (zeros, zeros) if kind == "lstm" else zeros)

  return kernel


# ----------------------------------------------------------------------------
# Layout helpers.
# ----------------------------------------------------------------------------


def _round_up(n: int, multiple: int) -> int:
  return math.ceil(n / multiple) * multiple


def _pad_last(x, size):
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - x.shape[-1])])


def _pad_tiles(x, batch_padded, units_padded):
  """(L, B, U) -> (L, B', U') zero-padded."""
  return jnp.pad(x, ((0, 0), (0, batch_padded - x.shape[1]), (0, units_padded - x.shape[2])))


def _split_gates(gx, gates, batch_padded, units_padded):
  """(L, B, G*U) -> (G, L, B', U'), each gate's tile zero-padded."""
  length, batch, width = gx.shape
  gx = gx.reshape(length, batch, gates, width // gates).transpose(2, 0, 1, 3)
  return jnp.pad(gx, ((0, 0), (0, 0), (0, batch_padded - batch),
                      (0, units_padded - width // gates)))


def _gate_blocks(kernel, gates, units_padded):
  """(U, G*U) -> (G, U', U') zero-padded."""
  units = kernel.shape[0]
  blocks = kernel.reshape(units, gates, units).transpose(1, 0, 2)
  return jnp.pad(blocks, ((0, 0), (0, units_padded - units), (0, units_padded - units)))


