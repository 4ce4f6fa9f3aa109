"""ReNet on CIFAR-10, thesis Table 3.1: 3 ReNet layers (2x2 each, 320 units), 1 FC 4096;
ZCA then per-pixel standardisation; flips and shifts.

  python -m experiments.classify --config=experiments/configs/cifar10.py \
      --config.data.manual_dir=~/data/cifar10 --workdir=runs/cifar10
"""

from experiments.configs import classify_base


def get_config(arg=None):
  options = classify_base.parse_arg(arg)
  c = classify_base.base_config()
  c.data.name = "cifar10"
  c.data.zca = True
  c.data.standardize = True
  c.data.flip = "both"
  c.data.shift = 2
  c.model.renet.units = (320, 320, 320)
  c.model.renet.patch_sizes = ((2, 2), (2, 2), (2, 2))
  classify_base.set_head(c, fc_units=(4096,))
  return classify_base.apply_options(c, options)
