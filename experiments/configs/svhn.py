"""ReNet on SVHN (format 2), thesis Table 3.1: 3 ReNet layers (2x2 each, 256 units),
2 FC 4096; per-pixel standardisation; shifts, no flips.

  python -m experiments.classify --config=experiments/configs/svhn.py \
      --config.data.manual_dir=~/data/svhn --workdir=runs/svhn
"""

from experiments.configs import classification


def get_config(arg=None):
  c = classification.base_config()
  c.data.name = "svhn_cropped"
  c.data.standardize = True
  c.data.flip = "none"
  c.data.shift = 2
  c.model.units = (256, 256, 256)
  c.model.patch_sizes = ((2, 2), (2, 2), (2, 2))
  c.model.fc_units = (4096, 4096)
  if arg == "quick":
    classification.shrink_for_quick(c)
  return c
