"""ReSeg on Weizmann Horse (328 images, figure/ground; fixed 60/20/20 split), images
resized to 128x128 with their masks; horizontal flips.

  python -m experiments.segment --config=experiments/configs/weizmann_horse.py \
      --config.data.manual_dir=~/data/weizmann_horse --workdir=runs/horse
  options: vgg (with --config.model.vgg_weights=PATH), balanced, quick.
"""

from experiments.configs import segment_base


def get_config(arg=None):
  return segment_base.figure_ground_config("weizmann_horse", arg)
