"""Closing the gap to the thesis on Weizmann Horse (ReSeg with the VGG-16 front end):
the L2 weight decay the thesis text names (0.001) against none (the released CamVid
script), the ReNet width, and the training resolution, a grid of 8 runs picked on
validation mean IoU. The front end's features are computed once per image size and
shared by every run of it (data.cache_features).

  python -m launch.sweep --sweep=launch/sweeps/weizmann_horse.py --workdir=runs/sweep_horse \
      --override=data.manual_dir=~/data/weizmann_horse --override=model.reseg.vgg=True \
      --override=model.reseg.patch_sizes="((1,1),(1,1))" \
      --override=model.vgg_weights=~/weights/vgg16-397923af.pth

(the overrides give the `:vgg` option's model; without them the sweep runs ReSeg
without VGG.)
  python -m launch.report --workdir=runs/sweep_horse
"""

from launch import spec


def get_sweep():
  return spec.Sweep(
      experiment="segment",
      config="experiments/configs/weizmann_horse.py",
      grid={
          "optimizer.weight_decay": [0.001, 0.0],
          "model.reseg.units": [(100, 100), (200, 200)],
          "data.image_size": [(128, 128), (192, 192)],
      })
