"""Transposed convolutions whose stride equals their kernel: ReSeg's upsampling and the
deconvolutional RNN's first input convolution.

With stride = kernel = (kh, kw) the output blocks do not overlap: input pixel (i, j)
becomes the block at (kh*i + a, kw*j + b), a < kh, b < kw, holding x[i, j] @ B[a, b]
(B the "block kernel", (kh, kw, C, O)). That is one per-pixel matrix product
(C -> kh*kw*O) followed by a depth-to-space reshape, exactly; XLA:CPU runs it 3-7x
faster than its transposed convolution, an lhs-dilated convolution (2x2 stride-2 with
50 filters + classifier, forward+backward, batch 5, 2 vCPU: 286 ms -> 86 ms at 128x128
and 6.2 s -> 0.94 s at 360x480, ../shared/PERF.md; the whole ReSeg training step:
`python -m experiments.bench --model=experiments/configs/camvid.py:vgg
--ab=model.reseg.upsample_impl=conv_transpose,depth_to_space`, RESULTS.md).

  upsample(x, block_kernel, bias, impl="auto")
  BlockUpsample(features, (2, 2))  # drop-in for nn.ConvTranspose(features, (2, 2),
                                   # strides=(2, 2), padding="VALID"): same parameters

`impl`: "depth_to_space" (the product and reshape), "conv_transpose" (XLA's transposed
convolution, cuDNN's on NVIDIA GPUs), or "auto": per lowering platform from `AUTO`.
Both compute the same numbers (tests/test_upsampling.py).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from renet_jax.errors import ModelCheckError

IMPLS = ("auto", "depth_to_space", "conv_transpose")
# impl="auto" per lowering platform. CPU: measured (module docstring). GPUs and TPUs:
# not measured yet, so their own transposed convolution stays (cuDNN's on NVIDIA).
AUTO = {"cpu": "depth_to_space", "cuda": "conv_transpose", "rocm": "conv_transpose",
        "tpu": "conv_transpose"}


def upsample(x: jax.Array, block_kernel: jax.Array, bias: jax.Array | None = None,
             impl: str = "auto") -> jax.Array:
  """x (N, H, W, C) -> (N, kh*H, kw*W, O): pixel (i, j) becomes the block
  x[i, j] @ block_kernel[a, b] (+ bias) at (kh*i + a, kw*j + b)."""
  if impl == "auto":
    y = lax.platform_dependent(x, block_kernel, default=_conv_transpose,
                               **{p: _IMPL_FNS[n] for p, n in AUTO.items()})
  elif impl in _IMPL_FNS:
    y = _IMPL_FNS[impl](x, block_kernel)
  else:
    raise ModelCheckError(f"Unknown upsampling impl {impl!r}; choose one of {IMPLS}.")
  return y if bias is None else y + bias


def _depth_to_space(x, block_kernel):
  n, h, w, c = x.shape
  kh, kw, _, o = block_kernel.shape
  y = x.reshape(n * h * w, c) @ block_kernel.transpose(2, 0, 1, 3).reshape(c, kh * kw * o)
  return y.reshape(n, h, w, kh, kw, o).transpose(0, 1, 3, 2, 4, 5).reshape(
      n, h * kh, w * kw, o)


def _conv_transpose(x, block_kernel):
  # lax.conv_transpose (transpose_kernel=False) puts kernel[kh-1-a, kw-1-b] at block
  # offset (a, b), hence the flip.
  return lax.conv_transpose(x, block_kernel[::-1, ::-1], block_kernel.shape[:2], "VALID",
                            dimension_numbers=("NHWC", "HWIO", "NHWC"))


_IMPL_FNS = {"depth_to_space": _depth_to_space, "conv_transpose": _conv_transpose}


class BlockUpsample(nn.Module):
  """`nn.ConvTranspose(features, kernel_size, strides=kernel_size, padding="VALID")`
  computed by `upsample`: the same parameters ("kernel" (kh, kw, C, O) in flax's
  layout, "bias" (O,)), initialised from the same keys, so checkpoints written with
  nn.ConvTranspose load and give the same outputs."""
  features: int
  kernel_size: Sequence[int]
  impl: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = (int(k) for k in self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features),
                        self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    # flax's ConvTranspose applies lax.conv_transpose to `kernel`: block kernel flipped.
    return upsample(x, kernel[::-1, ::-1], bias, self.impl)
