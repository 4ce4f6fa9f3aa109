"""The embedded default: a small ReNet on scikit-learn's 8x8 digits (no download).

  python -m experiments.classify --config=experiments/configs/digits.py --workdir=runs/digits
"""

from experiments.configs import classify_base


def get_config(arg=None):
  options = classify_base.parse_arg(arg)
  c = classify_base.base_config()
  c.data.name = "digits"
  c.data.shift = 0  # 2-pixel shifts of an 8x8 digit lose a quarter of it
  c.model.renet.units = (32, 32)
  c.model.renet.patch_sizes = ((2, 2), (2, 2))
  classify_base.set_head(c, fc_units=(128,), dropout_rate=0.1, input_mask_rate=0.1)
  c.optimizer.learning_rate = 3e-3
  c.train.batch_size = 32
  c.train.num_epochs = 40
  c.train.log_every_steps = 20
  if options.quick:
    c.train.num_epochs = 5
  return c
