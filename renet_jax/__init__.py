"""renet_jax: ReNet and ReSeg (Visin et al.) in JAX."""

from renet_jax.cells import GRUCell, LSTMCell, SimpleRNNCell, cell_names, make_cell
from renet_jax.renet import BidirectionalSweep, ReNet, ReNetLayer, patchify

__all__ = ["GRUCell", "LSTMCell", "SimpleRNNCell", "cell_names", "make_cell",
           "BidirectionalSweep", "ReNet", "ReNetLayer", "patchify"]
