"""Fields shared by every classification config (thesis ch. 3 recipe); not a config.

Options after the colon: `quick` (a few minutes on two CPU cores: the same layers with
few units, one epoch), e.g. `mnist.py:quick`.
"""

import ml_collections

from experiments.configs import common


def parse_arg(arg) -> ml_collections.ConfigDict:
  return common.parse_arg(arg, quick=False)


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = common.data("digits", zca=False, zca_epsilon=0.1, standardize=False,
                       shift=2)  # shift: pixels of the two-step shift; 0 = off

  c.model = common.model("renet")  # which block below: renet | cnn
  c.model.renet = ml_collections.ConfigDict()
  c.model.renet.cell = "gru"      # rnn | gru | lstm | mingru | minlstm (parallel)
  c.model.renet.impl = "auto"     # recurrence: auto | custom_vjp | autodiff | pallas;
  # mingru/minlstm: auto | associative | sequential (renet_jax.kernels.linear_scan)
  c.model.renet.units = (256, 256)
  c.model.renet.patch_sizes = ((2, 2), (2, 2))
  c.model.renet.order = "vertical_first"
  # "stacked": both directions of a sweep as one scan over stacked weights (one Pallas
  # launch for both); checkpoints of the two layouts differ.
  c.model.renet.directions = "separate"
  c.model.renet.pad = "none"      # "zero": pad images the patches do not divide
  c.model.cnn = ml_collections.ConfigDict()  # the LeNet-style baseline
  c.model.cnn.features = (32, 64)
  set_head(c, fc_units=(4096, 4096), dropout_rate=0.2, input_mask_rate=0.2)

  c.optimizer = common.optimizer()
  c.train = common.train()
  return c


def set_head(c: ml_collections.ConfigDict, **fields):
  """Sets fields the classifiers share (fc_units, dropout_rate, input_mask_rate) in
  every model block, so the CNN baseline gets the ReNet's head and regularisation."""
  for model in ("renet", "cnn"):
    c.model[model].update(fields)


def apply_options(c: ml_collections.ConfigDict, options) -> ml_collections.ConfigDict:
  if options.quick:
    c.model.renet.units = tuple(32 for _ in c.model.renet.units)
    set_head(c, fc_units=(256,))
    c.train.num_epochs = 1
    c.train.log_every_steps = 20
  return c
