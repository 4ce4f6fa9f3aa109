"""The embedded video default: the convolutional-deconvolutional RNN on moving_digits_seg
(clips of 10 frames of 32x32, 2-3 moving digits, one hidden under noise for 3 frames;
no download). Compare with the per-frame baseline (`:baseline`) on the occluded pixels
(results.json `test_occluded_*`).

  python -m experiments.segment_video --config=experiments/configs/moving_digits_seg.py \
      --workdir=runs/moving_digits
  python -m experiments.segment_video \
      --config=experiments/configs/moving_digits_seg.py:baseline --workdir=runs/md_base
"""

from experiments.configs import video_base


def get_config(arg=None):
  options = video_base.parse_arg(arg)
  c = video_base.base_config()
  c.data.name = "moving_digits_seg"
  # Background is ~90% of the pixels: balancing makes the digits learnt early.
  c.loss.class_balancing = True
  video_base.apply_options(c, options)
  if options.quick:
    c.train.num_epochs = 2
  return c
