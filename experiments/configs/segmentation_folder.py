"""ReSeg on your own images and masks (`renet_jax.data.segmentation_datasets.
SegmentationFolder`): a folder with images/ and masks/ (matching file stems; split
10% / 10% for validation / test from a fixed permutation, `data.val_fraction`,
`data.test_fraction`) or train/, val/, test/ each holding images/ and masks/. Masks
are class-index PNGs, or RGB PNGs with classes.json / classes.txt mapping colours to
class names (an optional void class is ignored). Images of any size are resized to
128x128 (masks by nearest neighbour); class names, palette, statistics and class
weights come from the folder's training split.

  python -m experiments.segment --config=experiments/configs/segmentation_folder.py \
      --config.data.manual_dir=~/my_data --workdir=runs/mine
  options: vgg (with --config.model.vgg_weights=PATH), balanced, quick.
"""

from experiments.configs import segment_base


def get_config(arg=None):
  options = segment_base.parse_arg(arg)
  c = segment_base.base_config()
  c.data.name = "segmentation_folder"
  c.data.image_size = (128, 128)
  c.data.flip = "horizontal"
  c.data.val_fraction = 0.1   # of a folder without split folders
  c.data.test_fraction = 0.1
  c.train.patience = 10
  c.train.num_epochs = 200
  segment_base.apply_options(c, options)
  return segment_base.shrink_for_quick(c) if options.quick else c
