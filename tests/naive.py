"""Independent float64 references: per-position Python loops written from the equations."""

import numpy as np


def random_like(tree, seed, scale):
  """Normal values of `scale` in place of every array of `tree` (a model's parameters,
  biases included, so every one is exercised), of each array's dtype, from numpy."""
  import jax
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: (scale * rng.standard_normal(a.shape)).astype(a.dtype), tree)


def random_recurrence(kind, length, batch, units, features, seed=0, dtype=None):
  """A recurrence problem for `renet_jax.kernels.recurrence` (imported here to keep the float64
  loops below free of JAX): (weights, xs (L, B, F), cotangent (L, B, U))."""
  import jax
  from renet_jax.kernels import common
  gates = common.num_gates(kind)
  k = jax.random.split(jax.random.key(seed), 6)
  weights = {"input_kernel": 0.8 * jax.random.normal(k[0], (features, gates * units)),
             "kernel": 0.6 * jax.random.normal(k[1], (units, gates * units)),
             "bias": jax.random.normal(k[2], (gates * units,))}
  if kind == "gru_reset_after":
    weights["recurrent_bias"] = jax.random.normal(k[3], (gates * units,))
  xs = jax.random.normal(k[4], (length, batch, features))
  if dtype is not None:
    weights, xs = jax.tree.map(lambda a: a.astype(dtype), (weights, xs))
  return weights, xs, jax.random.normal(k[5], (length, batch, units))


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


def linear_recurrence(a, b, reverse=False):
  """h_t = a_t h_{t-1} + b_t along axis 0, h_{-1} = 0, step by step."""
  h = np.zeros(a.shape[1:])
  out = np.zeros(a.shape)
  for t in (range(len(a) - 1, -1, -1) if reverse else range(len(a))):
    h = a[t] * h + b[t]
    out[t] = h
  return out


def parallel_cell_line(kind, p, xs, reverse=False):
  """Hidden states of minGRU / minLSTM (Feng et al. 2024, their sequential form) over
  one sequence xs (L, F)."""
  gates = {"mingru": 2, "minlstm": 3}[kind]
  u = p["bias"].shape[0] // gates
  k = xs @ p["input_kernel"] + p["bias"]
  blk = lambda g: k[:, g * u:(g + 1) * u]
  h, out = np.zeros(u), np.zeros((len(xs), u))
  for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
    if kind == "mingru":
      z = sigmoid(blk(0)[t])
      h = (1 - z) * h + z * blk(1)[t]
    else:
      f, i = sigmoid(blk(0)[t]), sigmoid(blk(1)[t])
      h = f / (f + i) * h + i / (f + i) * blk(2)[t]
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


def conv_same(x, kernel, bias=None, stride=1):
  """SAME cross-correlation of one image x (H, W, C) with kernel (kh, kw, C, O), written
  out per output pixel; TensorFlow's SAME padding (the extra pixel at the end)."""
  h, w, _ = x.shape
  kh, kw, _, o = kernel.shape
  oh, ow = -(-h // stride), -(-w // stride)
  pad_h = max((oh - 1) * stride + kh - h, 0)
  pad_w = max((ow - 1) * stride + kw - w, 0)
  top, left = pad_h // 2, pad_w // 2
  out = np.zeros((oh, ow, o))
  for i in range(oh):
    for j in range(ow):
      for a in range(kh):
        for b in range(kw):
          y, xx = i * stride + a - top, j * stride + b - left
          if 0 <= y < h and 0 <= xx < w:
            out[i, j] += x[y, xx] @ kernel[a, b]
  return out if bias is None else out + bias


def upsample_conv(x, kernel, bias=None):
  """Transposed convolution, kernel = stride = s: input pixel (y, x) writes
  x[y, x] @ kernel[a, b] to output pixel (s*y + a, s*x + b)."""
  h, w, _ = x.shape
  s, _, _, o = kernel.shape
  out = np.zeros((h * s, w * s, o))
  for y in range(h):
    for xx in range(w):
      for a in range(s):
        for b in range(s):
          out[s * y + a, s * xx + b] = x[y, xx] @ kernel[a, b]
  return out if bias is None else out + bias


def conv_transpose_same(y, kernel, bias=None):
  """Stride-1 SAME transposed convolution of one map y (H, W, F) with kernel
  (kh, kw, C, F), by its definition: the adjoint of `conv_same` with that kernel (which
  maps C channels to F); input pixel (i, j) writes kernel[a, b] @ y[i, j] to output
  pixel (i + a - top, j + b - left)."""
  h, w, _ = y.shape
  kh, kw, c, _ = kernel.shape
  top, left = (kh - 1) // 2, (kw - 1) // 2
  out = np.zeros((h, w, c))
  for i in range(h):
    for j in range(w):
      for a in range(kh):
        for b in range(kw):
          yy, xx = i + a - top, j + b - left
          if 0 <= yy < h and 0 <= xx < w:
            out[yy, xx] += kernel[a, b] @ y[i, j]
  return out if bias is None else out + bias


def conv_stack(x, p, stride=1, transpose=False):
  """The convolutions conv0.. of a ConvStack's params `p` (biases bias0.. where given),
  ReLU between them; the first has `stride`. `transpose`: all transposed (the first
  an upsampling one when stride > 1)."""
  count = len([k for k in p if k.startswith("conv")])
  for k in range(count):
    kernel, bias = p[f"conv{k}"], p.get(f"bias{k}")
    if k == 0 and transpose and stride > 1:
      x = upsample_conv(x, kernel, bias)
    elif transpose:
      x = conv_transpose_same(x, kernel, bias)
    else:
      x = conv_same(x, kernel, bias, stride if k == 0 else 1)
    if k < count - 1:
      x = np.maximum(x, 0)
  return x


def conv_rnn_clip(kind, p_input, p_step, frames, units, stride=1, transpose=False,
                  recurrent=True, reverse=False):
  """Hidden states (T, H', W', U) of one convolutional RNN direction over one clip."""
  gx = [conv_stack(f, p_input, stride, transpose) for f in frames]
  h = np.zeros(gx[0].shape[:2] + (units,))
  c = np.zeros_like(h)
  out = [None] * len(gx)
  order = range(len(gx) - 1, -1, -1) if reverse else range(len(gx))
  u = units
  for t in order:
    if not recurrent:
      h, c = np.zeros_like(h), np.zeros_like(c)
    g = gx[t]
    if kind in ("mingru", "minlstm"):  # gates from the input transition alone
      blk = lambda k: g[..., k * u:(k + 1) * u]
      if kind == "mingru":
        z = sigmoid(blk(0))
        h = (1 - z) * h + z * blk(1)
      else:
        f, i = sigmoid(blk(0)), sigmoid(blk(1))
        h = f / (f + i) * h + i / (f + i) * blk(2)
      out[t] = h
      continue
    state = lambda name, v: conv_stack(v, p_step[name], transpose=transpose) if recurrent else 0
    if kind == "rnn":
      h = np.tanh(g + state("state", h))
    elif kind == "gru":
      zr = g[..., :2 * u] + state("state_zr", h)
      z, r = sigmoid(zr[..., :u]), sigmoid(zr[..., u:])
      n = np.tanh(g[..., 2 * u:] + state("state_n", r * h))
      h = (1 - z) * h + z * n
    else:
      a = g + state("state", h)
      i, f, gg, o = (a[..., k * u:(k + 1) * u] for k in range(4))
      peep = lambda name, v: p_step[name] * v if name in p_step else 0  # (Shi et al.)
      i, f = i + peep("peephole_i", c), f + peep("peephole_f", c)
      c = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
      h = sigmoid(o + peep("peephole_o", c)) * np.tanh(c)
    out[t] = h
  return np.stack(out)
