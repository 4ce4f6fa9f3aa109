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
