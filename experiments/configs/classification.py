"""Fields shared by every classification config (thesis ch. 3 recipe); not a config."""

import ml_collections

from experiments.configs import common


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"
  c.data.manual_dir = ""   # raw files; empty: download where public
  c.data.data_dir = ""     # prepared datasets; empty: the TFDS default
  c.data.zca = False
  c.data.zca_epsilon = 0.1
  c.data.standardize = False
  c.data.flip = "none"     # none | horizontal | both
  c.data.shift = 2         # pixels of the two-step shift; 0 = off
  c.data.worker_count = 0

  c.model = ml_collections.ConfigDict()
  c.model.name = "renet"   # renet | cnn
  c.model.cell = "gru"
  c.model.units = (256, 256)
  c.model.patch_sizes = ((2, 2), (2, 2))
  c.model.order = "vertical_first"
  c.model.fc_units = (4096, 4096)
  c.model.features = (32, 64)  # cnn only
  c.model.dropout_rate = 0.2
  c.model.input_mask_rate = 0.2
  c.model.impl = "custom_vjp"

  c.optimizer = common.optimizer()
  c.train = common.train()
  return c


def shrink_for_quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A few minutes on two CPU cores: same layers, few units, one epoch."""
  c.model.units = tuple(32 for _ in c.model.units)
  c.model.fc_units = (256,)
  c.train.num_epochs = 1
  c.train.log_every_steps = 20
  return c
