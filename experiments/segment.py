r"""Trains and evaluates ReSeg on a segmentation dataset.

  python -m experiments.segment --config=experiments/configs/digits_seg.py --workdir=runs/ds
  python -m experiments.segment --config=experiments/configs/camvid.py:vgg \
      --config.data.manual_dir=~/data/CamVid \
      --config.model.vgg_weights=~/weights/vgg16-397923af.pth --workdir=runs/camvid

Re-running the same command resumes from the workdir's last checkpoint. Besides the
classification outputs, the workdir gets panels/{validation,test}.png (input | ground
truth | prediction), refreshed at every evaluation.
"""

from renet_jax import cli

from experiments import entry
from renet_jax.training.tasks import SegmentationTask


def main(argv):
  entry.main(argv, SegmentationTask, ("test_accuracy", "test_mean_class_accuracy",
                                      "test_mean_iou", "best_step", "wall_time_s",
                                      "train_images_per_s", "fraction_outside_step"))


if __name__ == "__main__":
  cli.run(main)
