"""On-device augmentation against a numpy reference: the same decisions move the same
pixels (images and label maps together, fill values shifted in), at the thesis's
frequencies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from renet_jax.data import augment


def reference_shift(x, dy, dx, fill=0):
  """x moved by dy rows (down if > 0) and dx columns (right if > 0), `fill` shifted in:
  a plain loop over output pixels."""
  out = np.full_like(x, fill)
  h, w = x.shape[:2]
  for i in range(h):
    for j in range(w):
      if 0 <= i - dy < h and 0 <= j - dx < w:
        out[i, j] = x[i - dy, j - dx]
  return out


def reference_flip(x, decision):
  return {augment.NO_FLIP: x, augment.HORIZONTAL: x[:, ::-1],
          augment.VERTICAL: x[::-1]}[int(decision)]


def test_shifts_match_the_reference_for_every_offset():
  x = np.arange(1, 1 + 3 * 5 * 6).reshape(3, 5, 6).astype(np.float32)
  for dy in (-2, 0, 2, 5):
    for dx in (-2, 0, 3):
      out = augment.apply_shifts(jnp.asarray(x), jnp.full(3, dy), jnp.full(3, dx), fill=-1)
      for k in range(3):
        np.testing.assert_array_equal(out[k], reference_shift(x[k], dy, dx, fill=-1))


@pytest.mark.parametrize("flip,shift", [("both", 2), ("horizontal", 0), ("none", 1)])
def test_augment_equals_the_reference_with_the_same_decisions(flip, shift):
  rng = np.random.default_rng(0)
  images = rng.integers(1, 255, (64, 6, 7, 3)).astype(np.float32)
  labels = rng.integers(0, 5, (64, 6, 7)).astype(np.int32)
  key = jax.random.key(3)
  out, out_labels = jax.jit(lambda k, x, y: augment.augment(
      k, x, y, flip=flip, shift=shift, label_fill=11))(key, images, labels)
  flip_key, shift_key = jax.random.split(key)  # as augment() draws its decisions
  flips = (augment.flip_decisions(flip_key, 64, vertical=flip == "both")
           if flip != "none" else np.zeros(64, int))
  dy, dx = augment.shift_decisions(shift_key, 64, shift) if shift else (np.zeros(64, int),) * 2
  for k in range(64):
    image, label = reference_flip(images[k], flips[k]), reference_flip(labels[k], flips[k])
    np.testing.assert_array_equal(out[k], reference_shift(image, dy[k], dx[k]))
    np.testing.assert_array_equal(out_labels[k],
                                  reference_shift(label, dy[k], dx[k], fill=11))
  assert out.dtype == images.dtype and out_labels.dtype == labels.dtype


@pytest.mark.parametrize("vertical", [True, False])
def test_flip_frequencies(vertical):
  n = 20000
  flips = np.asarray(augment.flip_decisions(jax.random.key(0), n, vertical))
  share = lambda d: np.mean(flips == d)
  # Binomial standard error at n=20000 is about 0.003; allow 4 of them.
  assert abs(share(augment.HORIZONTAL) - 0.25) < 0.012
  if vertical:
    assert abs(share(augment.VERTICAL) - 0.25) < 0.012
    assert abs(share(augment.NO_FLIP) - 0.5) < 0.012
  else:
    assert share(augment.VERTICAL) == 0 and abs(share(augment.NO_FLIP) - 0.75) < 0.012


def test_shift_frequencies_are_independent_per_axis():
  n = 20000
  dy, dx = map(np.asarray, augment.shift_decisions(jax.random.key(1), n, 2))
  for d in (dy, dx):
    assert set(np.unique(d)) == {-2, 0, 2}
    assert abs(np.mean(d == -2) - 0.25) < 0.012 and abs(np.mean(d == 2) - 0.25) < 0.012
  assert abs(np.mean((dy == 2) & (dx == -2)) - 1 / 16) < 0.008  # independent axes


def test_unknown_flip_is_rejected():
  with pytest.raises(ValueError, match=r"Unknown flip 'diagonal'"):
    augment.augment(jax.random.key(0), jnp.zeros((1, 2, 2, 1)), flip="diagonal")
