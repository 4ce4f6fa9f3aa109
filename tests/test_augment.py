"""Augmentations: exact pixel movement, zero fill, flip frequencies."""

import numpy as np
import pytest

from renet_jax.data import augment


def test_shift_keeps_the_right_pixels_and_fills_zeros():
  x = np.arange(1, 1 + 5 * 6).reshape(5, 6)
  for dy in (-2, 0, 2):
    for dx in (-2, 0, 2):
      out = augment.shift(x, dy, dx)
      for i in range(5):
        for j in range(6):
          si, sj = i - dy, j - dx  # the source pixel of out[i, j]
          want = x[si, sj] if 0 <= si < 5 and 0 <= sj < 6 else 0
          assert out[i, j] == want, (dy, dx, i, j)


def test_random_shift_moves_image_and_label_together():
  rng = np.random.default_rng(0)
  image = np.random.default_rng(1).integers(1, 255, (6, 7, 3)).astype(np.uint8)
  label = np.random.default_rng(2).integers(0, 5, (6, 7))
  seen = set()
  for _ in range(200):
    out, lab = augment.random_shift(rng, image, label, label_fill=11)
    # Recover the shift from the zero border of the image, then check the label moved
    # the same way with void shifted in.
    pairs = [(dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2)
             if np.array_equal(augment.shift(image, dy, dx), out)]
    assert len(pairs) == 1
    dy, dx = pairs[0]
    np.testing.assert_array_equal(lab, augment.shift(label, dy, dx, fill=11))
    seen.add((dy, dx))
  assert len(seen) == 9


def test_shift_frequencies():
  rng = np.random.default_rng(0)
  image = np.ones((4, 4, 1))
  n = 4000
  counts = {}
  for _ in range(n):
    out, _ = augment.random_shift(rng, image)
    key = (out[0].sum() == 0, out[-1].sum() == 0)  # (moved down, moved up)
    counts[key] = counts.get(key, 0) + 1
  # Vertical step: up 25%, down 25%, none 50%.
  assert abs(counts.get((True, False), 0) / n - 0.25) < 0.03
  assert abs(counts.get((False, True), 0) / n - 0.25) < 0.03


@pytest.mark.parametrize("vertical", [True, False])
def test_flip_frequencies(vertical):
  rng = np.random.default_rng(0)
  image = np.arange(9).reshape(3, 3, 1)
  label = np.arange(9).reshape(3, 3)
  n = 8000
  counts = {"h": 0, "v": 0, "none": 0}
  for _ in range(n):
    out, lab = augment.random_flip(rng, image, label, vertical=vertical)
    np.testing.assert_array_equal(out[..., 0], lab)
    if np.array_equal(out, image[:, ::-1]):
      counts["h"] += 1
    elif np.array_equal(out, image[::-1]):
      counts["v"] += 1
    else:
      np.testing.assert_array_equal(out, image)
      counts["none"] += 1
  # Binomial standard error at n=8000 is about 0.005; allow 4 of them.
  assert abs(counts["h"] / n - 0.25) < 0.02
  if vertical:
    assert abs(counts["v"] / n - 0.25) < 0.02 and abs(counts["none"] / n - 0.5) < 0.02
  else:
    assert counts["v"] == 0 and abs(counts["none"] / n - 0.75) < 0.02
