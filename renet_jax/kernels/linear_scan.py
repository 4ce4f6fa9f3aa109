"""The elementwise linear recurrence h_t = a_t * h_{t-1} + b_t of the parallel cells.

minGRU and minLSTM (Feng et al., "Were RNNs All We Needed?", 2024) compute their gates
from the input alone, so a whole sweep's matrix products are one product before the
recurrence, and the recurrence left is elementwise. `linear_scan(a, b)` solves it over
the leading (time) axis, the state starting at zero:

- `"associative"`: `lax.associative_scan` over the affine maps h -> a h + b (composing
  (a1, b1) then (a2, b2) gives (a1 a2, a2 b1 + b2)): log2(L) parallel levels. The
  coefficients are gates in (0, 1), so the running products only shrink and no log-space
  form is needed (the paper's log-space version exists for its cumsum-and-divide
  formulation, which this is not);
- `"sequential"`: one `lax.scan` of elementwise steps;
- `"auto"`: the faster of the two where it was measured (`AUTO_ASSOCIATIVE_MIN_LENGTH`,
  per platform and length), the sequential scan where the length is symbolic (an
  exported model's image size: an associative scan needs it concrete).

The backward pass is the same recurrence run the other way (`jax.custom_vjp`):
g_t = dh_t + a_{t+1} g_{t+1}, then db_t = g_t and da_t = g_t h_{t-1}; so it is as
parallel as the forward and stores only h. The scan runs in float32 for bf16 and float32
inputs (bf16 sums over ~100 steps would lose the state's low bits), in float64 for
float64 ones; h returns in the inputs' dtype.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from renet_jax.errors import ModelCheckError
from renet_jax.kernels import common

IMPLS = ("auto", "associative", "sequential")
# impl="auto": the associative scan from this length on, per lowering platform (None:
# never). CPU (2-core EPYC, `python -m experiments.bench --cells=mingru
# --impls=associative,sequential`, docs/benchmarks.md): the sequential scan's
# forward+backward was 1.16x as fast at CamVid's 45-60 steps and 1.13x at CIFAR-10's
# 16, a tie at MNIST's 14. GPUs and TPUs are not measured yet: sequential until they
# are (`experiments.gpu_check` times both).
AUTO_ASSOCIATIVE_MIN_LENGTH: dict[str, int | None] = {
    "cpu": None, "cuda": None, "rocm": None, "tpu": None}


def auto_impl(platform: str, length) -> str:
  """What impl="auto" runs for a recurrence of `length` steps lowered for `platform`."""
  if not isinstance(length, int):  # symbolic (jax.export)
    return "sequential"
  threshold = AUTO_ASSOCIATIVE_MIN_LENGTH.get(platform)
  return "associative" if threshold is not None and length >= threshold else "sequential"


def linear_scan(a: jax.Array, b: jax.Array, reverse: bool = False,
                impl: str = "auto") -> jax.Array:
  """h with h_t = a_t * h_{t-1} + b_t along axis 0 (from the end when `reverse`),
  h_{-1} = 0; `a` and `b` of one shape, h of that shape and their dtype."""
  if impl not in IMPLS:
    raise ModelCheckError(f"Unknown linear-scan impl {impl!r}; choose one of {IMPLS}.")
  if a.shape != b.shape:
    raise ModelCheckError(f"linear_scan: coefficients {a.shape} and inputs {b.shape} "
                          "must have one shape.")
  if impl == "auto":
    choice = {p: auto_impl(p, a.shape[0]) for p in AUTO_ASSOCIATIVE_MIN_LENGTH}
    names = set(choice.values())
    if len(names) == 1:
      return _scan(names.pop(), reverse, a, b)
    fns = {n: functools.partial(_scan, n, reverse) for n in names}
    return lax.platform_dependent(a, b, default=fns["sequential"],
                                  **{p: fns[n] for p, n in choice.items()})
  return _scan(impl, reverse, a, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _scan(impl, reverse, a, b):
  return _scan_fwd(impl, reverse, a, b)[0]


def _solve(impl, reverse, a, b):
  if impl == "associative":
    def compose(first, then):
      (a1, b1), (a2, b2) = first, then
      return a1 * a2, a2 * b1 + b2
    return lax.associative_scan(compose, (a, b), reverse=reverse, axis=0)[1]

  def step(h, ab):
    h = ab[0] * h + ab[1]
    return h, h
  return lax.scan(step, jnp.zeros_like(b[0]), (a, b), reverse=reverse)[1]


def _scan_fwd(impl, reverse, a, b):
  acc = common.accumulation_dtype(b.dtype)
  h = _solve(impl, reverse, a.astype(acc), b.astype(acc))
  return h.astype(b.dtype), (a, h)


def _scan_bwd(impl, reverse, saved, dh):
  a, h = saved
  # The adjoint runs against the direction of travel: g_t = dh_t + a_{t+1} g_{t+1}
  # (a_{t+1} being the coefficient of the step after t in the direction of travel).
  a_next = common.previous_states(a.astype(h.dtype), not reverse)
  g = _solve(impl, not reverse, a_next, dh.astype(h.dtype))
  h_prev = common.previous_states(h, reverse)
  return (g * h_prev).astype(a.dtype), g.astype(dh.dtype)


_scan.defvjp(_scan_fwd, _scan_bwd)
