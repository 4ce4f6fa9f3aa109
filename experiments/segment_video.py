r"""Trains and evaluates the convolutional-deconvolutional RNN on video segmentation.

  python -m experiments.segment_video --config=experiments/configs/moving_digits_seg.py \
      --workdir=runs/moving_digits
  python -m experiments.segment_video --config=experiments/configs/camvid_video.py:vgg \
      --config.data.manual_dir=~/data/CamVid --config.model.vgg_weights=PATH --workdir=DIR

The workdir holds what experiments.segment writes (metrics over every frame of a split,
panels as frame strips), plus temporal_flicker and, on moving_digits_seg, the metrics
on occluded pixels (occluded_*). Re-running the same command resumes.
"""

from experiments import entry
from renet_jax import cli
from renet_jax.training.tasks import VideoSegmentationTask


def main(argv):
  entry.main(argv, VideoSegmentationTask, (
      "test_accuracy", "test_mean_iou", "test_occluded_accuracy", "test_occluded_mean_iou",
      "test_temporal_flicker", "best_step", "wall_time_s", "train_images_per_s"))


if __name__ == "__main__":
  cli.run(main)
