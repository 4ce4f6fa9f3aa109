"""Losses: the void-ignoring, class-weighted segmentation cross-entropy by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from renet_jax.nn import losses


def test_weighted_loss_ignores_void_by_hand():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 4, 3))
  labels = rng.integers(0, 4, (2, 3, 4))  # 3 = void
  weights = np.array([0.5, 2.0, 1.5])
  total, count = losses.segmentation_loss(jnp.asarray(logits), jnp.asarray(labels),
                                          void=3, class_weights=weights)
  expect, n = 0.0, 0
  for idx in np.ndindex(labels.shape):
    c = labels[idx]
    if c == 3:
      continue
    z = logits[idx]
    expect += weights[c] * -(z[c] - np.log(np.exp(z).sum()))
    n += 1
  assert int(count) == n
  np.testing.assert_allclose(float(total), expect, rtol=1e-5)
  # Changing the logits of void pixels changes nothing.
  moved = np.where((labels == 3)[..., None], logits + 10 * rng.normal(size=logits.shape),
                   logits)
  again, _ = losses.segmentation_loss(jnp.asarray(moved), jnp.asarray(labels), void=3,
                                      class_weights=weights)
  np.testing.assert_allclose(float(again), float(total), rtol=1e-6)


def _by_hand(logits, labels, void, weights):
  """Per-image (weighted sum of pixel cross-entropies, labelled pixels), a naive loop."""
  sums, counts = [], []
  for n in range(labels.shape[0]):
    total, count = 0.0, 0
    for idx in np.ndindex(labels.shape[1:]):
      c = labels[n][idx]
      if c == void:
        continue
      z = logits[n][idx].astype(np.float64)
      total += weights[c] * -(z[c] - np.log(np.exp(z).sum()))
      count += 1
    sums.append(total)
    counts.append(count)
  return np.array(sums), np.array(counts)


@pytest.mark.parametrize("weighted", [False, True])
def test_loss_normalizations_by_hand(weighted):
  """pixels: the mean over the batch's labelled pixels; images: each image's sum, averaged
  over the images (void ignored and class weights applied the same way in both)."""
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 5, 4, 3)).astype(np.float32)
  labels = rng.integers(0, 4, (3, 5, 4))  # 3 = void
  labels[2, :3] = 3  # images with different labelled-pixel counts
  weights = np.array([0.5, 2.0, 1.5]) if weighted else np.ones(3)
  sums, counts = _by_hand(logits, labels, 3, weights)
  expect = {"pixels": sums.sum() / counts.sum(), "images": sums.mean()}
  for normalization, value in expect.items():
    got = losses.normalized_segmentation_loss(
        jnp.asarray(logits), jnp.asarray(labels), void=3,
        class_weights=weights if weighted else None, normalization=normalization)
    np.testing.assert_allclose(float(got), value, rtol=1e-5)
  # They differ by the mean labelled pixels per image, here not a round number.
  assert abs(expect["images"] / expect["pixels"] - counts.mean()) < 1e-9 * counts.mean()
  with pytest.raises(ValueError, match="normalization='image'"):
    losses.normalized_segmentation_loss(jnp.asarray(logits), jnp.asarray(labels),
                                        normalization="image")


def test_image_normalized_gradient_is_pixels_times_larger():
  """The gradients of the two normalisations differ by exactly the labelled pixels per
  image (what the authors' choice changes under Adadelta)."""
  rng = np.random.default_rng(2)
  logits = jnp.asarray(rng.normal(size=(2, 4, 4, 3)).astype(np.float32))
  labels = jnp.asarray(rng.integers(0, 3, (2, 4, 4)))  # no void: 16 pixels an image
  grad = {n: jax.grad(lambda z, n=n: losses.normalized_segmentation_loss(
      z, labels, normalization=n))(logits) for n in losses.NORMALIZATIONS}
  np.testing.assert_allclose(np.asarray(grad["images"]), 16 * np.asarray(grad["pixels"]),
                             rtol=1e-5, atol=1e-7)
