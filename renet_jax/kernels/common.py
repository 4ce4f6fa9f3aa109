"""What every recurrence implementation shares: the cell kinds and their gate counts,
the float32 product precisions, the accumulation dtype, the platform a computation is
lowered for, and the shift to the previous state. Imports nothing else of the package's
kernels, so the dispatch (`recurrence`) and the kernels it dispatches to import it, not
each other."""

import jax
import jax.extend
import jax.numpy as jnp

from renet_jax.errors import ModelCheckError

# Gate blocks in the last axis of the projections: rnn [a], gru [z, r, n], lstm
# [i, f, g, o]; gru_reset_after is the cuDNN/PyTorch GRU.
GATES = {"rnn": 1, "gru": 3, "gru_reset_after": 3, "lstm": 4}
KINDS = tuple(GATES)
# Matrix-product precision of float32 computations, as XLA's default_matmul_precision
# names it: "float32" computes in fp32 (on an NVIDIA GPU XLA and Triton would otherwise
# use TF32), "tf32" allows TF32, "tf32x3" is the Pallas kernels' three-pass TF32
# (fp32-grade, on tensor cores) and fp32 on the XLA paths (XLA:CPU has no such
# algorithm). bf16 inputs are unaffected (their products accumulate in fp32).
PRECISIONS = {"float32": "float32", "tf32": "tensorfloat32", "tf32x3": "float32"}


def accumulation_dtype(dtype):
  """What sums over time and gradients accumulate in: float32 for bf16 and float32
  values, float64 for float64 ones (a fixed float32 rounded float64 gradients)."""
  return jnp.promote_types(dtype, jnp.float32)


def num_gates(kind: str) -> int:
  try:
    return GATES[kind]
  except KeyError:
    raise ModelCheckError(f"Unknown recurrence kind {kind!r}; choose one of {KINDS}.") from None


def lowering_platform() -> str:
  """The platform computations are lowered for by default, as `lax.platform_dependent`
  names it: cpu, cuda, rocm or tpu (the one way the kernels ask)."""
  backend = jax.default_backend()
  if backend == "gpu":
    version = jax.extend.backend.get_backend().platform_version.lower()
    return "rocm" if "rocm" in version else "cuda"
  return backend


def previous_states(hs: jax.Array, reverse: bool) -> jax.Array:
  """h_{t-1} in the direction of travel for every step (zeros before the first)."""
  zero = jnp.zeros_like(hs[:1])
  if reverse:
    return jnp.concatenate([hs[1:], zero], axis=0)
  return jnp.concatenate([zero, hs[:-1]], axis=0)
