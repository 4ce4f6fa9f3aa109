"""ReNet on MNIST, thesis Table 3.1: 2 ReNet layers (2x2, 2x2, 256 units), 2 FC 4096.

  python -m experiments.classify --config=experiments/configs/mnist.py \
      --config.data.manual_dir=~/data/mnist --workdir=runs/mnist
  --config=experiments/configs/mnist.py:quick  for a smoke run.
"""

from experiments.configs import classify_base


def get_config(arg=None):
  options = classify_base.parse_arg(arg)
  c = classify_base.base_config()
  c.data.name = "mnist"
  c.data.flip = "none"
  c.data.shift = 2
  c.model.renet.units = (256, 256)
  c.model.renet.patch_sizes = ((2, 2), (2, 2))
  classify_base.set_head(c, fc_units=(4096, 4096))
  return classify_base.apply_options(c, options)
