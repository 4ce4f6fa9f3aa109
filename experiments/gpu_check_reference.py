r"""The float64 reference of `experiments.gpu_check`'s accuracy rows: outputs and gradients
of the lax.scan recurrence (impl=autodiff) in float64 on the host CPU, saved as .npz.

  JAX_ENABLE_X64=1 JAX_PLATFORMS=cpu python -m experiments.gpu_check_reference KIND tiny|full OUT

x64 is a process-wide setting, hence a process of its own.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiments import gpu_check
from renet_jax.kernels import recurrence


def reference(kind: str, tiny: bool) -> dict:
  if not jax.config.jax_enable_x64:
    raise SystemExit("error: run with JAX_ENABLE_X64=1 (the reference is float64)")
  weights, xs, cot = gpu_check.accuracy_problem(kind, tiny)
  to64 = lambda a: jnp.asarray(a, jnp.float64)
  weights, xs, cot = jax.tree.map(to64, weights), to64(xs), to64(cot)

  def loss(weights, xs):
    hs = recurrence.recurrence(kind, False, weights, xs, impl="autodiff")
    return jnp.sum(hs * cot), hs

  (_, hs), (dweights, dxs) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(weights, xs)
  return {"hs": hs, "dxs": dxs, **{f"d_{k}": v for k, v in dweights.items()}}


def main(argv):
  if len(argv) != 4 or argv[2] not in ("tiny", "full"):
    raise SystemExit(f"usage: python -m experiments.gpu_check_reference KIND tiny|full OUT "
                     f"(got {argv[1:]})")
  arrays = reference(argv[1], argv[2] == "tiny")
  np.savez(argv[3], **{k: np.asarray(v) for k, v in arrays.items()})


if __name__ == "__main__":
  main(sys.argv)
