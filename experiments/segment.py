r"""Trains and evaluates ReSeg on a segmentation dataset.

  python -m experiments.segment --config=experiments/configs/digits_seg.py --workdir=runs/ds
  python -m experiments.segment --config=experiments/configs/camvid.py:vgg \
      --config.data.manual_dir=~/data/CamVid \
      --config.model.vgg_weights=~/weights/vgg16-397923af.pth --workdir=runs/camvid

Re-running the same command resumes from the workdir's last checkpoint. Besides the
classification outputs, the workdir gets panels/{validation,test}.png (input | ground
truth | prediction), refreshed at every evaluation.
"""

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from renet_jax import host, train
from renet_jax.segmentation import SegmentationTask
from renet_jax.training_utils import maybe_initialize_distributed

config_flags.DEFINE_config_file("config", None, "Experiment config file (see "
                                "experiments/configs/).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the run writes everything.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  maybe_initialize_distributed()
  if jax.default_backend() == "cpu":
    host.keep_freed_memory()
  results = train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value, SegmentationTask)
  print({k: results[k] for k in ("test_accuracy", "test_mean_class_accuracy",
                                 "test_mean_iou", "best_step", "wall_time_s")
         if k in results} or results)


if __name__ == "__main__":
  app.run(main)
