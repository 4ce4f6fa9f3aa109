"""Losses: the void-ignoring, class-weighted segmentation cross-entropy by hand."""

import jax.numpy as jnp
import numpy as np

from renet_jax import losses


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
