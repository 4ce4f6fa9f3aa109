"""Preprocessing fitted on the training split, cached beside the prepared dataset.

- classification: scale to [0, 1]; optional ZCA whitening; optional per-pixel
  standardisation (zero mean, unit variance per pixel and channel over the training set).
- segmentation: class frequencies and median-frequency weights (Eigen and Fergus 2014);
  nearest-neighbour label resizing.
Cached files are written atomically (`renet_jax.files`); call the dataset_* functions
inside `parallel.process_zero_first` in multi-process runs.
"""

import dataclasses
import math
import os
from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from renet_jax import files


def scale(image):
  """uint8 0..255 -> float32 0..1; numpy arrays stay numpy, jax arrays jax."""
  return image.astype(np.float32) / 255.0


@dataclasses.dataclass
class ImageStats:
  """What classification preprocessing needs; fields left None are not applied."""
  zca_mean: np.ndarray | None = None     # (D,)
  zca_matrix: np.ndarray | None = None   # (D, D)
  pixel_mean: np.ndarray | None = None   # (H, W, C), after ZCA when both are used
  pixel_std: np.ndarray | None = None

  def arrays(self) -> dict[str, np.ndarray]:
    """The fields that are set, for `apply_image_stats` (e.g. inside a jitted step)."""
    return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

  def apply(self, images) -> np.ndarray:
    """Scaled float images (..., H, W, C) -> preprocessed, same shape (numpy)."""
    return np.asarray(apply_image_stats(self.arrays(), images))

  def save(self, path: str):
    np.savez(path, **self.arrays())

  @classmethod
  def load(cls, path: str) -> "ImageStats":
    with np.load(path) as f:
      return cls(**{k: f[k] for k in f.files})


def apply_image_stats(stats: dict, images: jax.Array) -> jax.Array:
  """ZCA (if stats has "zca_matrix") then per-pixel standardisation (if "pixel_mean")
  of scaled float images (..., H, W, C); traceable, so it runs inside jitted steps. The
  whitening product is in full fp32 precision on every backend."""
  x = jnp.asarray(images, jnp.float32)
  if "zca_matrix" in stats:
    shape = x.shape
    flat = x.reshape(-1, math.prod(shape[-3:])) - stats["zca_mean"]
    x = jnp.matmul(flat, stats["zca_matrix"], precision="highest").reshape(shape)
  if "pixel_mean" in stats:
    x = (x - stats["pixel_mean"]) / stats["pixel_std"]
  return x


def fit_image_stats(train_images: np.ndarray, zca: bool, standardize: bool,
                    zca_epsilon: float = 0.1) -> ImageStats:
  """Fits the preprocessing on scaled training images (N, H, W, C) in [0, 1]."""
  stats = ImageStats()
  x = np.asarray(train_images, np.float32)
  if zca:
    stats.zca_mean, stats.zca_matrix = fit_zca(x.reshape(len(x), -1), zca_epsilon)
    x = stats.apply(x)
  if standardize:
    stats.pixel_mean = x.mean(axis=0)
    stats.pixel_std = np.maximum(x.std(axis=0), 1e-6)  # constant pixels (e.g. borders)
  return stats


def fit_zca(x: np.ndarray, epsilon: float):
  """ZCA of rows of x (N, D): mean (D,) and W (D, D) with cov((x - mean) W) ~ I.

  W = U diag(1 / sqrt(s + epsilon)) U^T from the eigendecomposition of the covariance;
  epsilon (0.1 as in pylearn2's CIFAR-10 preprocessing) damps the smallest directions.
  """
  x = np.asarray(x, np.float64)
  mean = x.mean(axis=0)
  cov = np.cov(x - mean, rowvar=False, bias=True)
  s, u = np.linalg.eigh(cov)
  w = (u * (1.0 / np.sqrt(np.maximum(s, 0) + epsilon))) @ u.T
  return mean.astype(np.float32), w.astype(np.float32)


def dataset_image_stats(directory: str, train: Sequence, zca: bool, standardize: bool,
                        zca_epsilon: float = 0.1) -> ImageStats:
  """`fit_image_stats` on a prepared training split, cached in its folder."""
  name = f"image_stats_zca{int(zca)}_eps{zca_epsilon:g}_std{int(standardize)}.npz"
  return cached(os.path.join(directory, name), lambda: fit_image_stats(
      scale(np.stack([ex["image"] for ex in train])), zca, standardize, zca_epsilon))


def cached(path: str, compute: Callable[[], ImageStats]) -> ImageStats:
  """ImageStats loaded from `path` (.npz) or computed and saved there."""
  if os.path.exists(path):
    return ImageStats.load(path)
  stats = compute()
  files.write_atomic(path, stats.save)
  return stats


def class_frequencies(labels: Iterable[np.ndarray], num_classes: int,
                      void: int | None) -> dict:
  """Pixel counts per class and, per class, pixels of the images where it occurs."""
  counts = np.zeros(num_classes, np.int64)
  present_pixels = np.zeros(num_classes, np.int64)
  for label in labels:
    label = np.asarray(label)
    valid = label != void if void is not None else np.ones(label.shape, bool)
    c = np.bincount(label[valid].ravel(), minlength=num_classes)[:num_classes]
    counts += c
    present_pixels[c > 0] += int(valid.sum())
  return {"counts": counts.tolist(), "present_pixels": present_pixels.tolist()}


def median_frequency_weights(freqs: dict, power: float = 1.0) -> np.ndarray:
  """weight_c = (median_k(freq_k) / freq_c) ** power with freq_c = pixels of c / pixels
  of the images where c is present (Eigen and Fergus 2014: power 1). Absent classes get
  weight 0."""
  counts = np.asarray(freqs["counts"], np.float64)
  present = np.asarray(freqs["present_pixels"], np.float64)
  freq = np.divide(counts, present, out=np.zeros_like(counts), where=present > 0)
  median = np.median(freq[freq > 0])
  weights = np.divide(median, freq, out=np.zeros_like(freq), where=freq > 0)
  return np.where(freq > 0, weights ** power, 0.0).astype(np.float32)


def dataset_class_frequencies(directory: str, train: Sequence, num_classes: int,
                              void: int | None) -> dict:
  """`class_frequencies` of a prepared training split, cached in its folder as JSON."""
  path = os.path.join(directory, "class_frequencies.json")
  if os.path.exists(path):
    return files.read_json(path)
  freqs = class_frequencies((ex["label"] for ex in train), num_classes, void)
  files.write_json(path, freqs)
  return freqs


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
  """A uint8 (H', W', C) image, bilinear, to (H, W)."""
  from PIL import Image
  h, w = size
  if image.shape[:2] == (h, w):
    return image
  squeeze = image.ndim == 3 and image.shape[-1] == 1
  im = Image.fromarray(image[..., 0] if squeeze else image).resize((w, h), Image.BILINEAR)
  return np.asarray(im)[..., None] if squeeze else np.asarray(im)


def resize_label(label: np.ndarray, size: Sequence[int]) -> np.ndarray:
  """A label map, nearest-neighbour (never interpolate class ids), to (H, W)."""
  from PIL import Image
  h, w = size
  if label.shape[:2] == (h, w):
    return label
  return np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))


def resize_pair(image: np.ndarray, label: np.ndarray, size: Sequence[int]):
  """Image bilinear, label nearest-neighbour, to (H, W)."""
  return resize_image(image, size), resize_label(label, size)


# Resizing inside the predict function (`predictor.Predictor`): the same integer
# arithmetic in NumPy (host, any size, no compilation) and in JAX (jit and `jax.export`,
# where sizes may be symbolic), so training's original-size metrics, experiments.predict
# and an exported model see one input and give one output.
_PILLOW_BITS = 22  # Pillow's fixed-point fraction bits for 8-bit images (Resample.c)


def _pillow_bilinear_weights(in_size, out_size, xp) -> np.ndarray | jax.Array:
  """Pillow's BILINEAR weights for `in_size` -> `out_size` samples as an integer
  (out, in) matrix in its 22-bit fixed point: the triangle filter (stretched by the
  reduction factor when shrinking) at each output centre, normalised per output, then
  rounded half up to 2**-22. Computed in exact integer arithmetic: with D = max(in,
  out), weight(o, j) is proportional to max(0, 2D - |(2j+1) out - (2o+1) in|), and
  Pillow's double-precision values round the same way (they lie at least 1/S from a
  rounding boundary unless they sit on one exactly, where both agree)."""
  j = xp.arange(in_size, dtype=xp.int32)[None, :]
  o = xp.arange(out_size, dtype=xp.int32)[:, None]
  d = xp.maximum(xp.int32(in_size), xp.int32(out_size))
  n = xp.maximum(0, 2 * d - xp.abs((2 * j + 1) * out_size - (2 * o + 1) * in_size))
  s = n.sum(1, keepdims=True)
  # round(n * 2**22 / s) by long division, two bits at a time (int32 while s < 2**29)
  q, r = xp.zeros_like(n), n
  for _ in range(_PILLOW_BITS // 2):
    r = r * 4
    q = q * 4 + r // s
    r = r % s
  return q + (2 * r >= s).astype(xp.int32)


def _pillow_pass(image, weights, axis: int, xp):
  """One separable pass of Pillow's 8-bit resampling along `axis`: the fixed-point
  sum, rounded half up, clipped to 0..255. NumPy sums in float64 (BLAS; exact, as every
  partial sum is an integer below 2**31), JAX in int32."""
  moved = xp.moveaxis(image, axis, -1)
  if xp is np:
    summed = (moved.astype(np.float64) @ weights.T.astype(np.float64)).astype(np.int64)
  else:
    summed = jnp.einsum("...i,oi->...o", moved, weights, preferred_element_type=jnp.int32)
  out = xp.clip((summed + (1 << (_PILLOW_BITS - 1))) >> _PILLOW_BITS, 0, 255)
  return xp.moveaxis(out, -1, axis)


def resize_images_exactly(images, size: Sequence[int], xp=jnp):
  """uint8 images (..., H, W, C) -> (..., h, w, C) by Pillow's BILINEAR passes, the
  horizontal one then the vertical one, each rounded to 8 bits: bit-equal to Pillow's
  `image.resize((w, H)).resize((w, h))`, in NumPy (`xp=np`) or JAX (H and W may be
  symbolic). Pillow 13's single `resize` runs the vertical pass first for some size
  pairs, so `resize_image` may then differ from this by one grey level on some pixels.
  An unchanged axis passes through exactly."""
  h, w = size
  x = images.astype(xp.int32)
  x = _pillow_pass(x, _pillow_bilinear_weights(x.shape[-2], w, xp), x.ndim - 2, xp)
  x = _pillow_pass(x, _pillow_bilinear_weights(x.shape[-3], h, xp), x.ndim - 3, xp)
  return x.astype(xp.uint8)


def nearest_indices(in_size, out_size, xp=jnp):
  """The source sample of each of `out_size` outputs for nearest-neighbour resizing of
  `in_size` samples: floor((o + 1/2) in / out), in exact integer arithmetic."""
  o = xp.arange(out_size, dtype=xp.int32)
  return ((2 * o + 1) * in_size) // (2 * out_size)


def resize_nearest(x, size: Sequence, axis: int, xp=jnp):
  """`x` with its axes `axis`, `axis` + 1 resized to `size` by nearest neighbour
  (labels, or per-pixel class scores), in NumPy or JAX (sizes may be symbolic)."""
  h, w = size
  x = xp.take(x, nearest_indices(x.shape[axis], h, xp), axis=axis)
  return xp.take(x, nearest_indices(x.shape[axis + 1], w, xp), axis=axis + 1)
