"""CamVid clips: recurrent model against the per-frame baseline, at two state widths,
on raw frames. (The VGG front end also changes the decoder's strides, so it is a config
option, not a grid field: copy this sweep with config="experiments/configs/camvid_video.py:vgg"
and --override=model.vgg_weights=PATH for it.)

  python -m launch.sweep --sweep=launch/sweeps/camvid_video.py --workdir=runs/sweep_cv \
      --override=data.manual_dir=~/data/CamVid
"""

from launch import spec


def get_sweep():
  return spec.Sweep(
      experiment="segment_video",
      config="experiments/configs/camvid_video.py",
      grid={"model.conv_deconv_rnn.recurrent": [True, False],
            "model.conv_deconv_rnn.encoder_units": [(64, 64), (128, 128)]},
      fixed={"train.num_epochs": 100})
