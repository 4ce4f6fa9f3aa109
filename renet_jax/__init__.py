"""renet_jax: ReNet and ReSeg (Visin et al.) in JAX.

The names below are imported on first use, so that a light module of the package
(`renet_jax.files`) does not pull in JAX.
"""

import importlib

_EXPORTS = {
    "GRUCell": "nn.cells", "LSTMCell": "nn.cells", "SimpleRNNCell": "nn.cells",
    "cell_factory": "nn.cells", "cell_names": "nn.cells",
    "BidirectionalSweep": "nn.renet", "ReNet": "nn.renet", "ReNetLayer": "nn.renet",
    "patchify": "nn.renet",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f"module 'renet_jax' has no attribute {name!r}")
  return getattr(importlib.import_module(f"renet_jax.{_EXPORTS[name]}"), name)
