"""Independent float64 references: per-position Python loops written from the equations."""

import numpy as np


def sigmoid(a):
  return 1 / (1 + np.exp(-a))


def cell_step(kind, p, h, c, x):
  """One step of cell `kind` on single vectors; p holds the cell's parameters (numpy)."""
  wi, wr, b = p["input_kernel"], p["recurrent_kernel"], p["bias"]
  u = wr.shape[0]
  blk = lambda w, k: w[..., k * u:(k + 1) * u]
  if kind == "rnn":
    h = np.tanh(x @ wi + b + h @ wr)
  elif kind == "gru":  # thesis eq. 2.24
    z = sigmoid(x @ blk(wi, 0) + blk(b, 0) + h @ blk(wr, 0))
    r = sigmoid(x @ blk(wi, 1) + blk(b, 1) + h @ blk(wr, 1))
    n = np.tanh(x @ blk(wi, 2) + blk(b, 2) + (r * h) @ blk(wr, 2))
    h = (1 - z) * h + z * n
  elif kind == "gru_reset_after":
    br = p["recurrent_bias"]
    z = sigmoid(x @ blk(wi, 0) + blk(b, 0) + h @ blk(wr, 0) + blk(br, 0))
    r = sigmoid(x @ blk(wi, 1) + blk(b, 1) + h @ blk(wr, 1) + blk(br, 1))
    n = np.tanh(x @ blk(wi, 2) + blk(b, 2) + r * (h @ blk(wr, 2) + blk(br, 2)))
    h = (1 - z) * h + z * n
  elif kind == "lstm":
    a = lambda k: x @ blk(wi, k) + blk(b, k) + h @ blk(wr, k)
    i, f, g, o = sigmoid(a(0)), sigmoid(a(1)), np.tanh(a(2)), sigmoid(a(3))
    c = f * c + i * g
    h = o * np.tanh(c)
  else:
    raise ValueError(kind)
  return h, c


def run_line(kind, p, xs, reverse=False):
  """Hidden states of one sequence xs (L, F), stepping forward or backward in time."""
  u = p["recurrent_kernel"].shape[0]
  h, c = np.zeros(u), np.zeros(u)
  out = np.zeros((len(xs), u))
  steps = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
  for t in steps:
    h, c = cell_step(kind, p, h, c, xs[t])
    out[t] = h
  return out


def patchify(x, ph, pw):
  n, hh, ww, cc = x.shape
  out = np.zeros((n, hh // ph, ww // pw, ph * pw * cc))
  for b in range(n):
    for i in range(hh // ph):
      for j in range(ww // pw):
        k = 0
        for dy in range(ph):
          for dx in range(pw):
            for ch in range(cc):
              out[b, i, j, k] = x[b, i * ph + dy, j * pw + dx, ch]
              k += 1
  return out


def sweep(kind, p_fwd, p_bwd, grid, axis):
  """Bidirectional sweep of a (N, I, J, F) grid down columns or along rows."""
  n, ni, nj, _ = grid.shape
  u = p_fwd["recurrent_kernel"].shape[0]
  out = np.zeros((n, ni, nj, 2 * u))
  for b in range(n):
    if axis == "vertical":
      for j in range(nj):
        out[b, :, j, :u] = run_line(kind, p_fwd, grid[b, :, j])
        out[b, :, j, u:] = run_line(kind, p_bwd, grid[b, :, j], reverse=True)
    else:
      for i in range(ni):
        out[b, i, :, :u] = run_line(kind, p_fwd, grid[b, i, :])
        out[b, i, :, u:] = run_line(kind, p_bwd, grid[b, i, :], reverse=True)
  return out


def renet_layer(kind, params, x, patch, order="vertical_first"):
  """A ReNet layer from its flax params dict ({"vertical": {...}, "horizontal": {...}})."""
  grid = patchify(np.asarray(x, np.float64), *patch)
  axes = ("vertical", "horizontal") if order == "vertical_first" else ("horizontal",
                                                                        "vertical")
  for axis in axes:
    p = {d: {k: np.asarray(v, np.float64) for k, v in params[axis][d].items()}
         for d in ("forward", "backward")}
    grid = sweep(kind, p["forward"], p["backward"], grid, axis)
  return grid
