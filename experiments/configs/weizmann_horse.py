"""ReSeg on Weizmann Horse (328 images, figure/ground), images resized to 128x128 with
their masks; horizontal flips; thesis recipe (Adadelta, batch 5, L2 0.001).

Split: the ReSeg authors' own data converter (file-name order, 144 / 72 / 112; see
`renet_jax.data.segmentation_datasets.WeizmannHorse`). The thesis gives no image size:
128x128 keeps the VGG features at 32x32 (the CamVid run's features are 90x120) and
fits a CPU; results.json reports the test metrics at 128x128 and, with predictions
resized back, at each image's own resolution (`test_original_size_*`).

  python -m experiments.segment --config=experiments/configs/weizmann_horse.py \
      --config.data.manual_dir=~/data/weizmann_horse --workdir=runs/horse
  options: vgg (with --config.model.vgg_weights=PATH), balanced, quick.
"""

from experiments.configs import segment_base


def get_config(arg=None):
  return segment_base.figure_ground_config("weizmann_horse", arg)
