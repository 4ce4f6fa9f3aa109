"""Classifiers: ReNet (thesis ch. 3) and a LeNet-style CNN baseline; `make_classifier`."""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from renet_jax.renet import ReNet

MODELS = ("renet", "cnn")


class ReNetClassifier(nn.Module):
  """input -> masking noise (train) -> ReNet layers (dropout after every sub-layer) ->
  flatten -> FC ReLU layers (dropout after each) -> class logits."""
  num_classes: int
  units: Sequence[int] = (256, 256)
  patch_sizes: Sequence[Sequence[int]] = ((2, 2), (2, 2))
  fc_units: Sequence[int] = (4096, 4096)
  cell: str = "gru"
  order: str = "vertical_first"
  dropout_rate: float = 0.2
  input_mask_rate: float = 0.2
  impl: str = "custom_vjp"
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = mask_pixels(self, x, self.input_mask_rate, train)
    x = ReNet(tuple(self.units), tuple(tuple(p) for p in self.patch_sizes), cell=self.cell,
              order=self.order, dropout_rate=self.dropout_rate, impl=self.impl,
              dtype=self.dtype)(x, deterministic=not train)
    return _fc_head(self, x.reshape(x.shape[0], -1), train)


class CNNClassifier(nn.Module):
  """LeNet-style baseline: [conv 5x5 (same) + ReLU + 2x2 max-pool] per entry of
  `features`, then the same FC head, dropout and input masking as ReNetClassifier."""
  num_classes: int
  features: Sequence[int] = (32, 64)
  fc_units: Sequence[int] = (512,)
  dropout_rate: float = 0.2
  input_mask_rate: float = 0.2
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = mask_pixels(self, x, self.input_mask_rate, train)
    for f in self.features:
      x = nn.relu(nn.Conv(f, (5, 5), padding="SAME", dtype=self.dtype)(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
      x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    return _fc_head(self, x.reshape(x.shape[0], -1), train)


def _fc_head(module, x, train):
  for units in module.fc_units:
    x = nn.relu(nn.Dense(units, dtype=module.dtype)(x))
    x = nn.Dropout(module.dropout_rate)(x, deterministic=not train)
  return nn.Dense(module.num_classes, dtype=module.dtype)(x).astype(jnp.float32)


def mask_pixels(module: nn.Module, x: jax.Array, rate: float, train: bool) -> jax.Array:
  """Zeroes each pixel (all its channels) with probability `rate` when training; no
  rescaling (masking noise, not dropout). Uses the "dropout" RNG stream."""
  if not train or rate == 0:
    return x
  keep = jax.random.bernoulli(module.make_rng("dropout"), 1 - rate, x.shape[:-1] + (1,))
  return jnp.where(keep, x, 0).astype(x.dtype)


def make_classifier(model_config, num_classes: int) -> nn.Module:
  """The classifier named by `model_config.name` with the config's fields."""
  cfg = dict(model_config)
  name = cfg.pop("name")
  if name == "renet":
    cfg.pop("features", None)
    return ReNetClassifier(num_classes=num_classes, **cfg)
  if name == "cnn":
    for key in ("units", "patch_sizes", "cell", "order", "impl"):
      cfg.pop(key, None)
    return CNNClassifier(num_classes=num_classes, **cfg)
  raise ValueError(f"Unknown model {name!r}; choose one of {MODELS}.")
