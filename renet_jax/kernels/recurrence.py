"""Recurrences of the ReNet cells over a whole sequence, with a hand-written backward.

`hs = recurrence(kind, reverse, weights, xs)` runs a cell over time-major inputs `xs`
(L, B, F) and returns the hidden states `hs` (L, B, U), the state starting at zero.
`weights` holds `{"input_kernel": (F, G*U), "kernel": (U, G*U), "bias": (G*U,)}`, plus
`"recurrent_bias": (G*U,)` for the reset-after GRU. The input projections of all steps
are one matrix product before the loop; only the recurrent product is inside it. The
input bias is added inside the step, where it fuses into the elementwise work; added to
the projection outside, XLA:CPU made the loop ~1.6x slower.

Implementations (`impl`):
- `"auto"` (default): the fastest measured implementation of the backend the
  computation is lowered for (`AUTO`, chosen by `lax.platform_dependent`) and of the
  shape: custom_vjp everywhere, except on CUDA the Pallas kernels where they were
  measured faster (today GRU, 256 units, bf16; `auto_impl`, `PALLAS_MEASURED_FASTER`,
  `renet_jax.kernels.pallas_plan`);
- `"autodiff"`: a `lax.scan` differentiated by JAX;
- `"pallas"`: fused kernels, one launch per direction (`renet_jax.kernels.pallas_recurrence`;
  Pallas' interpret mode on CPU);
- `"custom_vjp"`: the `lax.scan` forward, and a hand-written reverse scan that
  per step does the elementwise step, the recurrent product of the state gradient, the
  input gradient (dgx_t @ W_in^T, the loop's only output), and adds the step's weight
  and bias gradients to running sums in the loop carry. Products over one step's batch
  stay in cache, and the gate gradients of all steps are never stored: forming the
  weight gradients after the loop as products over all steps made XLA:CPU
  zero-fill, stack and transpose (L, B, G*U) arrays, and measured slower on the
  MNIST/CIFAR-10 shapes (see `python -m experiments.bench` and the README).

`precision` fixes the float32 products' precision ("float32"; "tf32" allows TF32 on
GPUs; "tf32x3": three TF32 passes in the Pallas kernels, fp32 elsewhere) for every impl,
the backward passes included.

Gate layout in the last axis: rnn [a], gru [z, r, n], lstm [i, f, g, o].
GRU update follows the thesis: h' = (1 - z) * h + z * n.
"""

import contextlib
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from renet_jax.errors import ModelCheckError
from renet_jax.kernels.common import (GATES, KINDS, PRECISIONS, accumulation_dtype,
                                      lowering_platform, previous_states)

Array = jax.Array
IMPLS = ("auto", "custom_vjp", "autodiff", "pallas")
# impl="auto" per lowering platform, from measurements. CPU: custom_vjp, 1.1-1.2x
# autodiff on forward+backward (docs/benchmarks.md). NVIDIA H200 (jax 0.11.2):
# custom_vjp and autodiff within 3% of each other (../shared/PERF.md).
AUTO = {"cpu": "custom_vjp", "cuda": "custom_vjp", "rocm": "custom_vjp",
        "tpu": "custom_vjp"}
# Shapes at which the Pallas kernels were measured faster than AUTO["cuda"] on an
# H100/H200 by `python -m experiments.gpu_check` (the `auto_table` row of
# results/gpu/h200-2026-12-04/call1-gpu_check.jsonl: one H200, jax 0.11.2, commit
# 2d781a3): (kind, U', operand) -> the smallest forward+backward speed-up over
# custom_vjp across the layer shapes timed (there, MNIST layer 1 alone: 2.91 against
# 5.01 ms in bf16; no fp32 layout existed). auto picks "pallas" on CUDA only for these,
# and only where `pallas_plan.plan` finds a layout that fits (never a kernel that cannot
# compile); tests/test_recurrence.py checks this table against that file.
PALLAS_MEASURED_FASTER: dict[tuple[str, int, str], float] = {("gru", 256, "bfloat16"): 1.723}
# Platforms with a compiled Pallas kernel (CPU runs it in interpret mode, for tests).
PALLAS_PLATFORMS = ("cpu", "cuda")

_choices: list | None = None  # collects auto's decisions while `recording()` is active


def pallas_unavailable() -> str | None:
  """Why impl="pallas" cannot run on the default backend (None where it can)."""
  if lowering_platform() in PALLAS_PLATFORMS:
    return None
  return (f"has no kernel for platform {lowering_platform()!r} (the Pallas recurrence "
          "is written for NVIDIA GPUs, and runs interpreted on CPU): use impl='auto' or "
          "'custom_vjp'")


def auto_impl(platform: str, kind: str, units: int, sequences: int, dtype,
              precision: str = "float32") -> str:
  """What impl="auto" runs on `platform` (a lowering platform: cpu, cuda, rocm, tpu) for
  one direction of a sweep of `sequences` lines of `units` units in `dtype`: on CUDA the
  Pallas kernels where PALLAS_MEASURED_FASTER says they were faster, in the layout the
  measurement ran (impl="pallas"'s: the best fitting one, else the compiled one that
  spills least, as for GRU-256 in bf16), and AUTO's choice wherever they were not
  measured faster or no layout of theirs compiles."""
  from renet_jax.kernels import pallas_plan  # no Pallas import
  if platform == "cuda":
    key = (kind, pallas_plan.padded_units(units), pallas_plan.operand(dtype, precision))
    if (PALLAS_MEASURED_FASTER.get(key, 0) > 1 and pallas_plan.plan(
        kind, units, sequences, dtype, precision, allow_spills=True) is not None):
      return "pallas"
  return AUTO.get(platform, "custom_vjp")


@contextlib.contextmanager
def recording():
  """Collects, while tracing inside it, one record per recurrence: its shape and what
  impl="auto" chose on each platform (`auto_choices` summarises a model's)."""
  global _choices
  previous, _choices = _choices, []
  try:
    yield _choices
  finally:
    _choices = previous


def auto_choices(fn, *args) -> list[dict]:
  """The distinct recurrences `fn(*args)` runs (traced abstractly, nothing computed),
  each with what impl="auto" runs for it per platform."""
  with recording() as records:
    jax.eval_shape(fn, *args)
  unique = []
  for r in records:
    if r not in unique:
      unique.append(r)
  return unique


def recurrence(kind: str, reverse: bool, weights: dict, xs: Array, impl: str = "auto",
               precision: str = "float32") -> Array:
  """Hidden states (L, B, U) of cell `kind` run over `xs` (L, B, F): the one dispatch
  of the gated cells' recurrences. What runs, by the platform the computation is
  lowered for (`lax.platform_dependent`, so an exported model decides where it runs):

  | impl       | cpu                    | cuda                               | rocm, tpu  |
  |------------|------------------------|------------------------------------|------------|
  | auto       | custom_vjp             | pallas for (GRU, U' = 256, bf16)   | custom_vjp |
  |            |                        | where a layout of it compiles (the |            |
  |            |                        | least spilling), else custom_vjp   |            |
  | custom_vjp | lax.scan + hand-written reverse scan, every platform                     |
  | autodiff   | lax.scan differentiated by JAX, every platform                           |
  | pallas     | interpreted (tests)    | the fused kernels                  | refused    |

  (`AUTO`, `PALLAS_MEASURED_FASTER`, `pallas_plan.plan`; `auto_choices` records what
  auto took. The parallel cells' elementwise recurrence dispatches in
  `linear_scan.linear_scan`: the sequential scan everywhere, as measured on CPU.)"""
  if impl not in IMPLS:
    raise ModelCheckError(f"Unknown recurrence impl {impl!r}; choose one of {IMPLS}.")
  if precision not in PRECISIONS:
    raise ModelCheckError(f"Unknown matmul precision {precision!r}; choose one of "
                          f"{tuple(PRECISIONS)}.")
  length, sequences, _ = xs.shape
  units = weights["kernel"].shape[0]
  if impl == "auto":
    choice = {p: auto_impl(p, kind, units, sequences, xs.dtype, precision) for p in AUTO}
    if _choices is not None:
      _choices.append({"kind": kind, "units": int(units), "sequences": int(sequences),
                       "length": int(length), "dtype": jnp.dtype(xs.dtype).name,
                       "precision": precision, "impl": choice})
    names = set(choice.values())
    if len(names) == 1:  # one choice everywhere: nothing to stage per platform
      return _IMPL_FNS[names.pop()](kind, reverse, precision, weights, xs)
    # One function object per implementation, so that platforms sharing one share a
    # traced branch.
    fns = {n: functools.partial(_IMPL_FNS[n], kind, reverse, precision)
           for n in names | {"custom_vjp"}}
    return lax.platform_dependent(weights, xs, default=fns["custom_vjp"],
                                  **{p: fns[n] for p, n in choice.items()})
  if impl == "pallas" and (why := pallas_unavailable()):
    raise ModelCheckError(f"impl='pallas' {why}.")
  return _IMPL_FNS[impl](kind, reverse, precision, weights, xs)


def _with_precision(fn):
  """Traces `fn(kind, reverse, precision, ...)` under that matmul precision, so that every
  product in it (and in a backward pass traced later, at differentiation) is explicit."""
  @functools.wraps(fn)
  def wrapped(kind, reverse, precision, *args):
    with jax.default_matmul_precision(PRECISIONS[precision]):
      return fn(kind, reverse, precision, *args)
  return wrapped


@_with_precision
def _autodiff(kind, reverse, precision, weights, xs):
  return _forward(_cell(kind), reverse, weights, xs @ weights["input_kernel"], residuals=False)[0]


def _pallas(kind, reverse, precision, weights, xs):
  from renet_jax.kernels import pallas_recurrence  # imports Pallas only when used
  return pallas_recurrence.recurrence(kind, reverse, weights, xs, precision)


# ----------------------------------------------------------------------------
# Per-cell steps.
#   forward(weights, state, gx_t) -> (state, (h_t, residuals_t))
#   backward(rec_t, dstate, (dh_t, h_prev_t, residuals_t))
#     -> (dstate_prev, dgx_t, drec_t): drec_t is this step's gradient of the recurrent
#     parameters (summed over the batch), a dict the loop sums over the steps;
#   assemble(drec_sum) -> dweights in the layout of `weights` (e.g. gate blocks joined).
# rec_t holds the recurrent kernel pre-transposed (per gate block where the step needs
# it) so that the backward loop does no transposes. Residuals are kept as separate
# arrays rather than concatenated inside the forward step (each is a copy per step).
# ----------------------------------------------------------------------------


class _Cell(NamedTuple):
  gates: int
  init_state: Callable[[int, int, Any], Any]
  forward: Callable
  transpose: Callable
  backward: Callable
  assemble: Callable


def _zeros_h(batch, units, dtype):
  return jnp.zeros((batch, units), dtype)


def _kernel_t(weights):
  return {"kernel_t": weights["kernel"].T}


def _rnn_forward(weights, h, gx_t):
  h = jnp.tanh(gx_t + h @ weights["kernel"])
  # h is also its own residual (stored twice) so that the backward loop of the other
  # cells does not carry a per-step slice of hs that only this cell would use.
  return h, (h, h)


def _rnn_backward(rec_t, dh, xs):
  dh_t, h_prev, h_t = xs
  da = (dh + dh_t) * (1 - h_t * h_t)
  return da @ rec_t["kernel_t"], da, {"kernel": h_prev.T @ da}


def _as_is(dweights):
  return dweights


def _gru_forward(weights, h, gx_t):
  w = weights["kernel"]
  units = h.shape[-1]
  zr = jax.nn.sigmoid(gx_t[:, :2 * units] + h @ w[:, :2 * units])
  z, r = zr[:, :units], zr[:, units:]
  n = jnp.tanh(gx_t[:, 2 * units:] + (r * h) @ w[:, 2 * units:])
  h_new = h + z * (n - h)
  return h_new, (h_new, (zr, n))


def _gru_transpose(weights):
  w = weights["kernel"]
  units = w.shape[0]
  return {"zr_t": w[:, :2 * units].T, "n_t": w[:, 2 * units:].T}


def _gru_backward(rec_t, dh, xs):
  dh_t, h_prev, (zr, n) = xs
  units = h_prev.shape[-1]
  z, r = zr[:, :units], zr[:, units:]
  dh = dh + dh_t
  da_n = dh * z * (1 - n * n)
  dq = da_n @ rec_t["n_t"]  # gradient of r * h_prev
  da_zr = jnp.concatenate([dh * (n - h_prev) * z * (1 - z), dq * h_prev * r * (1 - r)],
                          axis=-1)
  dh_prev = dh * (1 - z) + dq * r + da_zr @ rec_t["zr_t"]
  return (dh_prev, jnp.concatenate([da_zr, da_n], axis=-1),
          {"kernel_zr": h_prev.T @ da_zr, "kernel_n": (r * h_prev).T @ da_n})


def _gru_assemble(dweights):
  return {"kernel": jnp.concatenate([dweights["kernel_zr"], dweights["kernel_n"]], axis=-1)}


def _gru_ra_forward(weights, h, gx_t):
  units = h.shape[-1]
  m = h @ weights["kernel"] + weights["recurrent_bias"]
  zr = jax.nn.sigmoid(gx_t[:, :2 * units] + m[:, :2 * units])
  z, r = zr[:, :units], zr[:, units:]
  m_n = m[:, 2 * units:]
  n = jnp.tanh(gx_t[:, 2 * units:] + r * m_n)
  h_new = h + z * (n - h)
  return h_new, (h_new, (zr, n, m_n))


def _gru_ra_backward(rec_t, dh, xs):
  dh_t, h_prev, (zr, n, m_n) = xs
  units = h_prev.shape[-1]
  z, r = zr[:, :units], zr[:, units:]
  dh = dh + dh_t
  da_n = dh * z * (1 - n * n)
  dm = jnp.concatenate([dh * (n - h_prev) * z * (1 - z), da_n * m_n * r * (1 - r),
                        da_n * r], axis=-1)
  dgx = jnp.concatenate([dm[:, :2 * units], da_n], axis=-1)
  return (dh * (1 - z) + dm @ rec_t["kernel_t"], dgx,
          {"kernel": h_prev.T @ dm, "recurrent_bias": dm.sum(axis=0)})


def _lstm_init(batch, units, dtype):
  return (_zeros_h(batch, units, dtype), _zeros_h(batch, units, dtype))


def _lstm_forward(weights, state, gx_t):
  h, c = state
  units = h.shape[-1]
  a = gx_t + h @ weights["kernel"]
  sig = jax.nn.sigmoid(a)  # i, f, o used; the g block's sigmoid is spare but saves a copy
  i, f, o = sig[:, :units], sig[:, units:2 * units], sig[:, 3 * units:]
  g = jnp.tanh(a[:, 2 * units:3 * units])
  c_new = f * c + i * g
  tanh_c = jnp.tanh(c_new)
  h_new = o * tanh_c
  return (h_new, c_new), (h_new, (sig, g, c, tanh_c))


def _lstm_backward(rec_t, dstate, xs):
  dh, dc = dstate
  dh_t, h_prev, (sig, g, c_prev, tanh_c) = xs
  units = dh.shape[-1]
  i, f, o = sig[:, :units], sig[:, units:2 * units], sig[:, 3 * units:]
  dh = dh + dh_t
  dc = dc + dh * o * (1 - tanh_c * tanh_c)
  da = jnp.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                        dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], -1)
  return (da @ rec_t["kernel_t"], dc * f), da, {"kernel": h_prev.T @ da}


_CELLS = {
    "rnn": _Cell(GATES["rnn"], _zeros_h, _rnn_forward, _kernel_t, _rnn_backward, _as_is),
    "gru": _Cell(GATES["gru"], _zeros_h, _gru_forward, _gru_transpose, _gru_backward,
                 _gru_assemble),
    "gru_reset_after": _Cell(GATES["gru_reset_after"], _zeros_h, _gru_ra_forward, _kernel_t,
                             _gru_ra_backward, _as_is),
    "lstm": _Cell(GATES["lstm"], _lstm_init, _lstm_forward, _kernel_t, _lstm_backward, _as_is),
}


def _cell(kind: str) -> _Cell:
  try:
    return _CELLS[kind]
  except KeyError:
    raise ModelCheckError(f"Unknown recurrence kind {kind!r}; choose one of {KINDS}.") from None


# ----------------------------------------------------------------------------
# Generic forward and backward loops.
# ----------------------------------------------------------------------------


def _forward(cell: _Cell, reverse: bool, weights: dict, gx: Array, residuals: bool = True):
  """(hs, residuals) of a forward scan; residuals=False keeps only hs (a primal pass
  that will not be differentiated then stores nothing else)."""
  units = weights["kernel"].shape[0]
  state = cell.init_state(gx.shape[1], units, gx.dtype)

  def step(state, gx_t):
    # Barriers on the step's inputs and outputs keep XLA from fusing the per-step
    # slicing and stacking of the sequences into the elementwise step, which makes that
    # step several times slower on CPU.
    gx_t = lax.optimization_barrier(gx_t) + weights["bias"]
    state, (h, res) = cell.forward(weights, state, gx_t)
    return state, lax.optimization_barrier((h, res if residuals else ()))

  _, (hs, res) = lax.scan(step, state, gx, reverse=reverse)
  return hs, res


# Input gradients inside the backward loop pay off for large per-step batches only:
# measured on CPU, layer forward+backward 1.08-1.26x faster at the MNIST/CIFAR-10 shapes
# (896 and 1024 lines per step) but 0.77-0.97x at the CamVid shape (225-300 lines), where
# the per-step products are too small; there the loop outputs dgx and two large
# products follow it. Only CPU was measured: elsewhere the large products are kept. The
# choice is made by `lax.platform_dependent` for the backend the computation is lowered
# for (not the default backend at trace time).
_IN_LOOP_MIN_BATCH = 512


def _recurrence_custom_vjp(kind, reverse, precision, weights, xs):
  return _custom_vjp(kind, reverse, precision, weights, xs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
@_with_precision
def _custom_vjp(kind, reverse, precision, weights, xs):
  return _forward(_cell(kind), reverse, weights, xs @ weights["input_kernel"], residuals=False)[0]


@_with_precision
def _custom_fwd(kind, reverse, precision, weights, xs):
  hs, res = _forward(_cell(kind), reverse, weights, xs @ weights["input_kernel"])
  return hs, (weights, xs, hs, res)


@_with_precision
def _custom_bwd(kind, reverse, precision, saved, dhs):
  after_loop = functools.partial(_backward, kind, reverse, False)
  if saved[1].shape[1] < _IN_LOOP_MIN_BATCH:
    return after_loop(saved, dhs)
  return lax.platform_dependent(saved, dhs, default=after_loop,
                                cpu=functools.partial(_backward, kind, reverse, True))


def _backward(kind, reverse, in_loop, saved, dhs):
  """(d weights, d xs); `in_loop`: input gradients inside the reverse loop, else after it."""
  cell = _cell(kind)
  weights, xs, hs, res = saved
  h_prev = previous_states(hs, reverse)
  rec_t = cell.transpose(weights)
  input_kernel_t = weights["input_kernel"].T
  dstate = jax.tree.map(jnp.zeros_like, cell.init_state(hs.shape[1], hs.shape[2], hs.dtype))

  def backward(dstate, step_inputs):
    """One step: (dstate_prev, dx_t or dgx_t, this step's parameter gradients)."""
    dh_t, h_prev_t, res_t, x_t = step_inputs
    dstate, dgx_t, drec_t = cell.backward(rec_t, dstate, (dh_t, h_prev_t, res_t))
    if not in_loop:
      return dstate, dgx_t, (drec_t, dgx_t.sum(axis=0))
    grads = (drec_t, dgx_t.sum(axis=0), x_t.T @ dgx_t)
    return dstate, dgx_t @ input_kernel_t, grads

  # After the loop the inputs are read as a whole: the loop gets nothing per step.
  step_inputs = (dhs, h_prev, res, xs if in_loop else jnp.zeros((xs.shape[0], 0)))
  sums = jax.tree.map(
      lambda a: jnp.zeros(a.shape, accumulation_dtype(a.dtype)),
      jax.eval_shape(lambda: backward(dstate, jax.tree.map(lambda a: a[0], step_inputs))[2]))

  def step(carry, step_inputs):
    dstate, sums = carry
    dstate, dx_t, grads = backward(dstate, lax.optimization_barrier(step_inputs))
    sums = jax.tree.map(lambda s, g: s + g.astype(s.dtype), sums, grads)
    return (dstate, sums), lax.optimization_barrier(dx_t)  # as in _forward

  # The backward loop runs against the direction of travel.
  (_, sums), out = lax.scan(step, (dstate, sums), step_inputs, reverse=not reverse)
  dweights, dbias = sums[:2]
  if in_loop:
    dxs, dinput_kernel = out, sums[2]
  else:  # out is dgx
    dxs = out @ input_kernel_t
    dinput_kernel = xs.reshape(-1, xs.shape[-1]).T @ out.reshape(-1, out.shape[-1])
  dweights = cell.assemble(dweights) | {"bias": dbias, "input_kernel": dinput_kernel}
  return {k: v.astype(weights[k].dtype) for k, v in dweights.items()}, dxs.astype(xs.dtype)


_custom_vjp.defvjp(_custom_fwd, _custom_bwd)

_IMPL_FNS = {"custom_vjp": _recurrence_custom_vjp, "autodiff": _autodiff,
             "pallas": _pallas}
