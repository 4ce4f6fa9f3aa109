r"""Trains and evaluates a classifier (ReNet or the CNN baseline).

  python -m experiments.classify --config=experiments/configs/digits.py --workdir=runs/d
  python -m experiments.classify --config=experiments/configs/mnist.py:quick \
      --config.data.manual_dir=~/data/mnist --config.model.name=cnn --workdir=runs/m

Re-running the same command resumes from the workdir's last checkpoint.
"""

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from renet_jax import host, train
from renet_jax.classification import ClassificationTask
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
  logging.info("devices: %s", jax.devices())
  results = train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value,
                                     ClassificationTask)
  print({k: results[k] for k in ("test_error", "test_accuracy", "best_step", "wall_time_s")
         if k in results} or results)


if __name__ == "__main__":
  app.run(main)
