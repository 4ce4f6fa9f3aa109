"""Shared fixtures, the `slow` marker, and compilation settings for the tests.

- `shared_tfds`: where tests prepare the real datasets of ../shared/data, once.
- `slow`: end-to-end runs (training, subprocesses) are skipped unless pytest gets
  --slow, which the README's test command and CI pass.
- Compilation is most of a test's time on CPU (the programs are tiny), so compiled
  programs go to a persistent cache in `.cache/jax` of the checkout: the same program
  compiles once per session, and reruns reuse it. Subprocesses inherit it through the
  environment. (Skipping XLA's optimisations would halve compile times, but made the
  digits_seg training run several times slower: it is not used.)
"""

import os

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "jax")
# Where the tests prepare the real datasets (tests/fixtures.py SHARED_DATA): once per
# checkout, shared by every test and test process (`registry.prepare` holds a file lock
# while it prepares).
SHARED_TFDS = os.path.join(ROOT, ".cache", "tfds")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

from experiments.configs import digits_seg as digits_seg_config  # noqa: E402
from renet_jax import tasks, train  # noqa: E402


def pytest_addoption(parser):
  parser.addoption("--slow", action="store_true",
                   help="also run the end-to-end runs marked slow (CI does)")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: an end-to-end run (training or a subprocess); needs --slow")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--slow"):
    return
  skip = pytest.mark.skip(reason="end-to-end run: pass --slow to run it (CI does)")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)


@pytest.fixture(scope="session")
def digits_seg_run(tmp_path_factory):
  """The embedded segmentation default, trained for 6 of its 20 epochs (validation mean
  IoU 0.59 then, 0.78 at 20; all-background < 0.1): (tmp folder, results)."""
  workdir = tmp_path_factory.mktemp("digits_seg")
  c = digits_seg_config.get_config()
  c.data.data_dir = str(workdir / "tfds")
  c.train.num_epochs = 6
  return workdir, train.train_and_evaluate(c, str(workdir / "run"), tasks.SegmentationTask)


@pytest.fixture(scope="session")
def moving_digits_small_run(tmp_path_factory):
  """`moving_digits_seg.py:small` trained for one epoch: (workdir, its TFDS data_dir,
  config), for the tests that serve a trained video run."""
  from experiments.configs import moving_digits_seg as moving_digits_seg_config
  root = tmp_path_factory.mktemp("moving_digits_small")
  c = moving_digits_seg_config.get_config("small")
  c.data.data_dir = str(root / "tfds")
  c.train.num_epochs = 1
  train.train_and_evaluate(c, str(root / "run"), tasks.VideoSegmentationTask)
  return str(root / "run"), c.data.data_dir, c


@pytest.fixture(scope="session")
def shared_tfds():
  """The prepared real datasets' folder (SHARED_TFDS)."""
  os.makedirs(SHARED_TFDS, exist_ok=True)
  return SHARED_TFDS
