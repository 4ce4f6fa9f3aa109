"""ReSeg on Oxford Flowers 17 (848 segmented images; trimap class 38 = flower vs rest;
fixed 60/20/20 split), images resized to 128x128 with their masks; horizontal flips.

  python -m experiments.segment --config=experiments/configs/oxford_flowers17.py \
      --config.data.manual_dir=~/data/flowers17 --workdir=runs/flowers
  (without manual_dir the images and trimaps are downloaded from robots.ox.ac.uk)
  options: vgg (with --config.model.vgg_weights=PATH), balanced, quick.
"""

from experiments.configs import segment_base


def get_config(arg=None):
  return segment_base.figure_ground_config("oxford_flowers17_seg", arg)
