"""Classifiers: shapes, input masking rate, train/eval behaviour, model selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import classification
from renet_jax import models


def test_mask_pixels_rate_and_channels():
  m = models.ReNetClassifier(10, units=(4,), patch_sizes=((2, 2),), fc_units=(8,))
  x = jnp.ones((64, 8, 8, 3))
  masked = m.apply({}, x, 0.2, True, method=lambda mod, x, r, t: models.mask_pixels(
      mod, x, r, t), rngs={"dropout": jax.random.key(0)})
  zero = np.asarray(masked == 0)
  assert np.all(zero.all(-1) == zero.any(-1))  # a pixel is masked in all its channels
  assert abs(zero[..., 0].mean() - 0.2) < 0.02
  assert set(np.unique(np.asarray(masked))) == {0.0, 1.0}  # no rescaling
  same = m.apply({}, x, 0.2, False, method=lambda mod, x, r, t: models.mask_pixels(
      mod, x, r, t))
  np.testing.assert_array_equal(same, x)


@pytest.mark.parametrize("name", models.MODELS)
def test_make_classifier_from_config(name):
  cfg = classification.base_config().model
  cfg.name = name
  cfg.units = (4, 4)
  cfg.fc_units = (8,)
  cfg.features = (4,)
  model = models.make_classifier(cfg, 10)
  x = jnp.ones((2, 8, 8, 1))
  params = model.init(jax.random.key(0), x)
  out_eval = model.apply(params, x)
  assert out_eval.shape == (2, 10)
  np.testing.assert_array_equal(out_eval, model.apply(params, x, train=False))
  out_train = model.apply(params, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(out_train, out_eval)  # dropout and masking act when training


def test_unknown_model():
  cfg = classification.base_config().model
  cfg.name = "vit"
  with pytest.raises(ValueError, match="Unknown model 'vit'"):
    models.make_classifier(cfg, 10)
