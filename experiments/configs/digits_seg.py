"""The embedded segmentation default: ReSeg (no VGG) on digits_seg, 32x32 canvases of
three scikit-learn digits, 11 classes (digits 0-9 and background). No download; a few
minutes on two CPU cores.

  python -m experiments.segment --config=experiments/configs/digits_seg.py \
      --workdir=runs/digits_seg
"""

from experiments.configs import common, segment_base


def get_config(arg=None):
  options = segment_base.parse_arg(arg)
  c = segment_base.base_config()
  c.data.name = "digits_seg"
  c.model.reseg.units = (32, 32)
  c.model.reseg.patch_sizes = ((2, 2), (2, 2))
  c.model.reseg.upsample_filters = (32, 32)
  c.model.reseg.upsample_kernels = ((2, 2), (2, 2))
  # Background is 93% of the pixels: without class balancing the digits are learnt
  # far more slowly (measured: mean IoU 0.16 vs 0.72 after 15 epochs).
  c.loss.class_balancing = True
  # Adam is all but blind to the loss's scale: the mean over pixels, as measured.
  c.loss.normalization = "pixels"
  c.optimizer = common.optimizer(name="adam", learning_rate=3e-3)
  c.train.batch_size = 16
  c.train.eval_batch_size = 40
  c.train.num_epochs = 20
  c.train.patience = 0
  segment_base.apply_options(c, options)
  if options.quick:  # the same model, three epochs
    c.train.num_epochs = 3
  return c
