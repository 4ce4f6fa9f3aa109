"""ReSeg on Weizmann Horse (328 images, figure/ground; fixed 60/20/20 split), images
resized to 128x128 with their masks; horizontal flips.

  python -m experiments.segment --config=experiments/configs/weizmann_horse.py \
      --config.data.manual_dir=~/data/weizmann_horse --workdir=runs/horse
  options: vgg (with --config.model.vgg_weights=PATH), balanced, quick.
"""

from experiments.configs import segmentation


def get_config(arg=None):
  options = segmentation.parse_options(arg)
  c = segmentation.base_config()
  c.data.name = "weizmann_horse"
  c.data.image_size = (128, 128)
  c.data.flip = "horizontal"
  segmentation.apply_options(c, options)
  if "quick" in options:
    segmentation.shrink_for_quick(c)
  return c
