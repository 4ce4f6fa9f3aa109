"""The ReNet layer: patchify, then bidirectional RNN sweeps down columns and along rows.

Shapes are (N, H, W, C) throughout. A layer with patch (ph, pw) and U units per RNN
maps (N, H, W, C) -> (N, H/ph, W/pw, 2U); every output position sees the whole input.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from renet_jax.errors import ModelCheckError
from renet_jax.nn import cells
from renet_jax.nn.cells import CellDef

ORDERS = ("vertical_first", "horizontal_first")
AXES = ("vertical", "horizontal")
DIRECTIONS = ("separate", "stacked")
PADS = ("none", "zero")


def patchify(x: jax.Array, patch_size: tuple[int, int]) -> jax.Array:
  """(N, H, W, C) -> (N, H/ph, W/pw, ph*pw*C), each patch flattened row-major (y, x, c)."""
  n, h, w, c = x.shape
  ph, pw = patch_size
  x = x.reshape(n, h // ph, ph, w // pw, pw, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // ph, w // pw, ph * pw * c)


def pad_to_multiple(x: jax.Array, patch_size: tuple[int, int]) -> jax.Array:
  """Zero-pads H and W (bottom, right) up to the next multiples of the patch size."""
  _, h, w, _ = x.shape
  ph, pw = patch_size
  return jnp.pad(x, ((0, 0), (0, -h % ph), (0, -w % pw), (0, 0)))


class BidirectionalSweep(nn.Module):
  """Two RNNs with their own weights sweep every column (`axis="vertical"`, top-down and
  bottom-up) or every row (`"horizontal"`, left-right and right-left) of a (N, I, J, F)
  grid; their states are concatenated per position: (N, I, J, 2U), forward first.

  `cell` is a cell name or factory (`renet_jax.nn.cells.cell_factory`). Each sweep is one
  `lax.scan` along the swept axis with all N*J (or N*I) lines batched.
  `directions="separate"` runs the two directions as two scans (params "forward" and
  "backward"); `"stacked"` runs them as one scan over stacked weights (params "both",
  leading axis 2, the reverse direction reading time-flipped lines).
  """
  units: int
  axis: str = "vertical"
  cell: str | CellDef = "gru"
  directions: str = "separate"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.axis not in AXES:
      raise ModelCheckError(f"Unknown sweep axis {self.axis!r}; choose one of {AXES}.")
    if self.directions not in DIRECTIONS:
      raise ModelCheckError(f"Unknown directions {self.directions!r}; choose one of "
                            f"{DIRECTIONS}.")
    cell = cells.cell_factory(self.cell)
    n, i, j, f = x.shape
    # Time-major lines: the swept axis leads, the other grid axis and N are the batch.
    perm = (1, 0, 2, 3) if self.axis == "vertical" else (2, 0, 1, 3)
    lines = x.transpose(perm).reshape(x.shape[perm[0]], -1, f)
    if self.directions == "separate":
      outs = [cell(units=self.units, name=name)(lines, reverse=reverse)
              for name, reverse in (("forward", False), ("backward", True))]
    else:
      both = nn.vmap(lambda cell, xs: cell(xs), variable_axes={"params": 0},
                     split_rngs={"params": True}, in_axes=0, out_axes=0)
      outs = both(cell(units=self.units, name="both"), jnp.stack([lines, lines[::-1]]))
      outs = (outs[0], outs[1, ::-1])
    out = jnp.concatenate(outs, axis=-1)
    out = out.reshape(x.shape[perm[0]], n, x.shape[perm[2]], out.shape[-1])
    return out.transpose(1, 0, 2, 3) if self.axis == "vertical" else out.transpose(1, 2, 0, 3)


class ReNetLayer(nn.Module):
  """One ReNet layer (thesis ch. 3): (N, H, W, C) -> (N, H/ph, W/pw, 2*units).

  Attributes:
    units: hidden units U of each of the four RNNs.
    patch_size: (ph, pw) of the non-overlapping patches.
    cell: "rnn", "gru", "lstm", or a cell factory with its options (dtype, impl,
      reset_after, ...) bound: `renet_jax.nn.cells.cell_factory`.
    order: "vertical_first" (thesis) or "horizontal_first".
    dropout_rate: dropout after each sub-layer's output (off when deterministic).
    pad: "none" (H and W must be multiples of the patch size) or "zero" (pad them).
    directions: "separate" or "stacked" scans for the two directions of a sweep.
  """
  units: int
  patch_size: tuple[int, int] = (2, 2)
  cell: str | CellDef = "gru"
  order: str = "vertical_first"
  dropout_rate: float = 0.0
  pad: str = "none"
  directions: str = "separate"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    self._check(x)
    patch = tuple(self.patch_size)
    if self.pad == "zero":
      x = pad_to_multiple(x, patch)
    x = patchify(x, patch)
    axes = AXES if self.order == "vertical_first" else AXES[::-1]
    for axis in axes:
      x = BidirectionalSweep(self.units, axis=axis, cell=self.cell,
                             directions=self.directions, name=axis)(x)
      x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    return x

  def _check(self, x):
    name = type(self).__name__
    if isinstance(self.cell, str) and self.cell not in cells.cell_names():
      raise ModelCheckError(f"{name}: unknown cell {self.cell!r}; choose one of "
                            f"{cells.cell_names()}.")
    if self.units < 1:
      raise ModelCheckError(f"{name}: units={self.units}; every RNN needs at least one unit.")
    if self.order not in ORDERS:
      raise ModelCheckError(f"{name}: unknown order {self.order!r}; choose one of {ORDERS}.")
    if self.pad not in PADS:
      raise ModelCheckError(f"{name}: unknown pad {self.pad!r}; choose one of {PADS}.")
    if len(self.patch_size) != 2 or min(self.patch_size) < 1:
      raise ModelCheckError(f"{name}: patch_size must be two positive ints (ph, pw), got "
                            f"{self.patch_size}.")
    if x.ndim != 4:
      raise ModelCheckError(
          f"{name} expects input of rank 4 (N, H, W, C), got shape {x.shape}: add a "
          "batch axis with x[None] or a channel axis with x[..., None].")
    if 0 in x.shape:
      raise ModelCheckError(f"{name} got an empty input of shape {x.shape} (N, H, W, C): "
                            "every dimension must be at least 1.")
    if self.pad == "none":
      for dim, size, p in (("height", x.shape[1], self.patch_size[0]),
                           ("width", x.shape[2], self.patch_size[1])):
        if size % p:
          divisors = [d for d in range(1, size + 1) if size % d == 0]
          raise ModelCheckError(
              f"{name}: image {dim} {size} is not divisible by patch {dim} {p}. Pad the "
              f"input to {size + (-size % p)} (or pass pad='zero'), or use a patch {dim} "
              f"that divides {size}: one of {divisors}.")


class ReNet(nn.Module):
  """A stack of ReNet layers; layer k has `units[k]` units and patch `patch_sizes[k]`;
  the other attributes are those of `ReNetLayer`, shared by all layers."""
  units: Sequence[int]
  patch_sizes: Sequence[tuple[int, int]]
  cell: str | CellDef = "gru"
  order: str = "vertical_first"
  dropout_rate: float = 0.0
  pad: str = "none"
  directions: str = "separate"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    if len(self.units) != len(self.patch_sizes):
      raise ModelCheckError(f"ReNet: {len(self.units)} entries in units but "
                            f"{len(self.patch_sizes)} in patch_sizes; give one of each per layer.")
    for k, (units, patch) in enumerate(zip(self.units, self.patch_sizes)):
      x = ReNetLayer(units, tuple(patch), cell=self.cell, order=self.order,
                     dropout_rate=self.dropout_rate, pad=self.pad,
                     directions=self.directions, name=f"layer{k}")(x, deterministic)
    return x
