"""Training-time augmentations of the thesis (ch. 3), on single numpy examples.

Both take an `np.random.Generator`, so a grain `RandomMap` (which hands each example
its own seeded generator) makes them deterministic given the pipeline seed. For
segmentation, pass the label map too: it is moved exactly like the image, and pixels
shifted in get `label_fill` (the void class).
"""

import numpy as np

FLIPS = ("none", "horizontal", "both")  # what `data.flip` of a config may say


def random_flip(rng: np.random.Generator, image: np.ndarray, label: np.ndarray | None = None,
                vertical: bool = True):
  """Horizontal flip with p 0.25, vertical flip with p 0.25 (if `vertical`), else none.

  Images are (H, W, C); labels (H, W) or None. Digits must not be flipped vertically (a
  flipped 6 is a 9): pass vertical=False.
  """
  u = rng.random()
  if u < 0.25:
    axis = 1
  elif vertical and u < 0.5:
    axis = 0
  else:
    return image, label
  return np.flip(image, axis), None if label is None else np.flip(label, axis)


def random_shift(rng: np.random.Generator, image: np.ndarray, label: np.ndarray | None = None,
                 pixels: int = 2, label_fill: int = 0):
  """Shift by `pixels` left (p 0.25) or right (p 0.25) or not; then up (p 0.25) or down
  (p 0.25) or not. No padding beforehand: pixels shifted out are dropped, zeros (labels:
  `label_fill`) shifted in."""
  dx = _signed_step(rng.random(), pixels)
  dy = _signed_step(rng.random(), pixels)
  image = shift(image, dy, dx, fill=0)
  if label is not None:
    label = shift(label, dy, dx, fill=label_fill)
  return image, label


def shift(x: np.ndarray, dy: int, dx: int, fill=0) -> np.ndarray:
  """x moved by dy rows (down if > 0) and dx columns (right if > 0) on its first two
  axes, with `fill` shifted in."""
  out = np.full_like(x, fill)
  h, w = x.shape[:2]
  if abs(dy) >= h or abs(dx) >= w:
    return out
  src = x[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
  out[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
  return out


def _signed_step(u: float, pixels: int) -> int:
  if u < 0.25:
    return -pixels
  if u < 0.5:
    return pixels
  return 0
