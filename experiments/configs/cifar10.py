"""ReNet on CIFAR-10, thesis Table 3.1: 3 ReNet layers (2x2 each, 320 units), 1 FC 4096;
ZCA then per-pixel standardisation; flips and shifts.

  python -m experiments.classify --config=experiments/configs/cifar10.py \
      --config.data.manual_dir=~/data/cifar10 --workdir=runs/cifar10
"""

from experiments.configs import classification


def get_config(arg=None):
  c = classification.base_config()
  c.data.name = "cifar10"
  c.data.zca = True
  c.data.standardize = True
  c.data.flip = "both"
  c.data.shift = 2
  c.model.units = (320, 320, 320)
  c.model.patch_sizes = ((2, 2), (2, 2), (2, 2))
  c.model.fc_units = (4096,)
  if arg == "quick":
    classification.shrink_for_quick(c)
  return c
