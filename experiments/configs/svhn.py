"""ReNet on SVHN (format 2), thesis Table 3.1: 3 ReNet layers (2x2 each, 256 units),
2 FC 4096; per-pixel standardisation; shifts, no flips.

  python -m experiments.classify --config=experiments/configs/svhn.py \
      --config.data.manual_dir=~/data/svhn --workdir=runs/svhn
"""

from experiments.configs import classify_base


def get_config(arg=None):
  options = classify_base.parse_arg(arg)
  c = classify_base.base_config()
  c.data.name = "svhn_cropped"
  c.data.standardize = True
  c.data.flip = "none"
  c.data.shift = 2
  c.model.renet.units = (256, 256, 256)
  c.model.renet.patch_sizes = ((2, 2), (2, 2), (2, 2))
  classify_base.set_head(c, fc_units=(4096, 4096))
  return classify_base.apply_options(c, options)
