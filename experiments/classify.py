r"""Trains and evaluates a classifier (ReNet or the CNN baseline).

  python -m experiments.classify --config=experiments/configs/digits.py --workdir=runs/d
  python -m experiments.classify --config=experiments/configs/mnist.py:quick \
      --config.data.manual_dir=~/data/mnist --config.model.name=cnn --workdir=runs/m

Re-running the same command resumes from the workdir's last checkpoint.
"""

from renet_jax import cli

from experiments import entry
from renet_jax.training.tasks import ClassificationTask


def main(argv):
  entry.main(argv, ClassificationTask, ("test_error", "test_accuracy", "best_step",
                                        "wall_time_s", "train_images_per_s",
                                        "fraction_outside_step"))


if __name__ == "__main__":
  cli.run(main)
