"""CamVid clips: recurrent model against the per-frame baseline, with and without the
VGG front end, two state widths.

  python -m launch.sweep --sweep=launch/sweeps/camvid_video.py --workdir=runs/sweep_cv \
      --override=data.manual_dir=~/data/CamVid --override=model.vgg_weights=~/vgg16.pth
"""

from launch import spec


def get_sweep():
  return spec.Sweep(
      experiment="segment_video",
      config="experiments/configs/camvid_video.py",
      grid={"model.conv_deconv_rnn.recurrent": [True, False],
            "model.conv_deconv_rnn.encoder_units": [(64, 64), (128, 128)]},
      fixed={"train.num_epochs": 100})
