"""Closing the gap to the thesis on Weizmann Horse (ReSeg with the VGG-16 front end):
the L2 weight decay the thesis text names (0.001) against none (the released CamVid
script), crossed with the ReNet width (100 units, the thesis's, against 200), 4 runs
picked on validation mean IoU. The front end's features are computed once (the same
weights and image size for every run: data.cache_features) and shared by all four.

  python -m launch.sweep --sweep=launch/sweeps/weizmann_horse.py --workdir=runs/sweep_horse \
      --override=data.manual_dir=~/data/weizmann_horse \
      --override=model.vgg_weights=~/weights/vgg16-397923af.pth
  python -m launch.report --workdir=runs/sweep_horse

On two CPU cores each run takes 15-30 minutes to early stopping; add
--override=train.time_budget_s=S to cap them (RESULTS.md says what was run).
"""

from launch import spec


def get_sweep():
  return spec.Sweep(
      experiment="segment",
      config="experiments/configs/weizmann_horse.py:vgg",
      grid={
          "optimizer.weight_decay": [0.001, 0.0],
          "model.reseg.units": [(100, 100), (200, 200)],
      })
