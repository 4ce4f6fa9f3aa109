"""ReNet on your own labelled images (`renet_jax.data.classification_datasets.
ImageFolder`): a folder with one subfolder of images per class (split 10% / 10% for
validation / test from a fixed permutation, `data.val_fraction`, `data.test_fraction`),
or train/, val/, test/ each holding the class folders. Images of any size are stored
at data.image_size (32x32 RGB; bilinear); class names are the folder names;
per-pixel standardisation is fitted on the training split. Two ReNet layers of 2x2
patches, 128 units, one FC layer of 512; horizontal flips.

  python -m experiments.classify --config=experiments/configs/image_folder.py \
      --config.data.manual_dir=~/my_images --workdir=runs/mine
  options: quick.
"""

from experiments.configs import classify_base


def get_config(arg=None):
  options = classify_base.parse_arg(arg)
  c = classify_base.base_config()
  c.data.name = "image_folder"
  c.data.image_size = (32, 32)  # every image is stored at this size
  c.data.val_fraction = 0.1     # of a folder without split folders
  c.data.test_fraction = 0.1
  c.data.standardize = True
  c.data.flip = "horizontal"
  c.model.renet.units = (128, 128)
  c.model.renet.patch_sizes = ((2, 2), (2, 2))
  classify_base.set_head(c, fc_units=(512,))
  c.train.num_epochs = 50
  return classify_base.apply_options(c, options)
