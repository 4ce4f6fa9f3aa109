"""`experiments/configs/mnist.py:quick` end to end on the real MNIST (../shared/data):
one epoch of the small ReNet reaches 97% test accuracy. Its own file, so that the
two test processes (`--dist loadfile`) share the suite's longest runs evenly."""

import os

import pytest

from experiments.configs import mnist as mnist_config
from renet_jax.training import train
from renet_jax.training.tasks import ClassificationTask

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


@pytest.mark.slow
@pytest.mark.nightly
@pytest.mark.skipif(not os.path.isdir(SHARED_MNIST),
                    reason="../shared/data/mnist is absent on this machine")
def test_mnist_quick_config_reaches_97_percent(tmp_path, shared_tfds):
  c = mnist_config.get_config("quick")  # 32 units per RNN, one FC of 256, one epoch
  c.data.manual_dir = SHARED_MNIST
  c.data.data_dir = shared_tfds
  results = train.train_and_evaluate(c, str(tmp_path / "run"), ClassificationTask)
  assert results["test_accuracy"] >= 0.97, results
