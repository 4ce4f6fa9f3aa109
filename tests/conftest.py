"""Shared fixtures, the `slow` marker, and compilation settings for the tests.

- `shared_tfds`: where tests prepare datasets once (the embedded and the real ones).
- `slow`: end-to-end runs (training, subprocesses) are skipped unless pytest gets
  --slow, which the README's test command and CI pass.
- Compilation is most of a test's time on CPU (the programs are tiny), so compiled
  programs go to a persistent cache in `.cache/jax` of the checkout: the same program
  compiles once per session, and reruns reuse it. Subprocesses inherit it through the
  environment.
- Tests compile with most of XLA's optimisations off (`jax_disable_most_optimizations`,
  and JAX_DISABLE_MOST_OPTIMIZATIONS for the processes they start): their programs run
  a few steps, and compiling is most of their time (tests/test_renet.py: 79 -> 53 s;
  the short end-to-end runs 992 -> 895 s in all, from an empty compilation cache).
  Tests marked `optimized` and the session fixtures' trainings keep the optimisations:
  they train for hundreds of steps, which ran up to 1.5x slower without them, or run
  convolutions over many images (re-evaluating the committed Horse VGG run, its features
  already cached: 34 -> 4.6 s). What compiles without them also uses XLA:CPU's older
  loop emitters, which compile faster (`fixtures.quicken_unoptimized_compilation`).
"""

import gc
import os

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "jax")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

from experiments.configs import digits_seg as digits_seg_config  # noqa: E402
import fixtures  # noqa: E402
fixtures.quicken_unoptimized_compilation()
from fixtures import TFDS, xla_optimizations  # noqa: E402
from renet_jax.training import tasks, train  # noqa: E402

# JAX's tracing makes garbage collections frequent: the libraries' objects, imported
# above and kept for the session, are left out of them, and the youngest generation is
# collected every 20,000 allocations, not 700 (the collector's share of
# tests/test_conv_rnn.py's CPU, by perf: 5.6% -> 1.3%; 40-42 -> 37-40 CPU-s).
gc.freeze()
gc.set_threshold(20000, 10, 10)


def pytest_addoption(parser):
  parser.addoption("--slow", action="store_true",
                   help="also run the end-to-end runs marked slow (CI does)")
  parser.addoption("--nightly", action="store_true",
                   help="also run the research margins marked nightly (CI does not)")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: an end-to-end run (training or a subprocess); needs --slow")
  config.addinivalue_line(
      "markers", "nightly: a research margin (a model beating a baseline or reaching a "
      "number at a budget, minutes of training), each with a cheap deterministic "
      "counterpart in CI; needs --nightly")
  config.addinivalue_line(
      "markers", "optimized: trains hundreds of steps or runs convolutions over many "
      "images, so compiles with XLA's optimisations (the other tests compile without)")


# The files that take longest (pytest --durations in a fresh-clone CI, 2026-12-06),
# started first: each file runs in one worker (--dist loadfile), and with
# --no-loadscope-reorder xdist hands the files out in this collection order, so no
# worker is left with a long file at the end.
LONGEST_FIRST = ("test_train.py", "test_tasks.py", "test_export.py", "test_workdir.py",
                 "test_released.py", "test_slurm.py", "test_feature_cache.py",
                 "test_pallas_recurrence.py", "test_conv_rnn.py", "test_sweep.py",
                 "test_gpu_check.py", "test_renet.py", "test_real_data.py", "test_video.py",
                 "test_models.py", "test_bad_inputs.py", "test_inference.py")


def pytest_collection_modifyitems(config, items):
  rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-file order
  skips = {"slow": (config.getoption("--slow"),
                    "end-to-end run: pass --slow to run it (CI does)"),
           "nightly": (config.getoption("--nightly"),
                       "research margin: pass --nightly to run it (CI does not)")}
  for item in items:
    for marker, (wanted, reason) in skips.items():
      if marker in item.keywords and not wanted:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _quick_compilation(request):
  with xla_optimizations("optimized" in request.keywords):
    yield


def _trained_once(tmp_path_factory, name, train_fn, optimized=True):
  """`train_fn(folder)`'s results, trained once per test session: under pytest-xdist
  the workers share the folder (the session's common temporary root; the first to come
  trains under a file lock, the others wait and read its results). `optimized`: with
  XLA's optimisations (hundreds of steps), else compiled as the tests compile (for a
  run that tests compare bit for bit with their own)."""
  import fcntl
  from renet_jax import files
  if os.environ.get("PYTEST_XDIST_WORKER"):
    folder = tmp_path_factory.getbasetemp().parent / name
  else:
    folder = tmp_path_factory.getbasetemp() / name
  folder.mkdir(exist_ok=True)
  done = folder / "fixture_results.json"
  with open(folder.parent / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      with xla_optimizations(optimized):
        files.write_json(str(done), train_fn(folder))
  return folder, files.read_json(str(done))


@pytest.fixture(scope="session")
def digits_seg_run(tmp_path_factory):
  """The embedded segmentation default, trained for 6 of its 20 epochs (validation mean
  IoU 0.59 then, 0.78 at 20; all-background < 0.1): (folder, results)."""

  def train_fn(folder):
    c = digits_seg_config.get_config()
    c.data.data_dir = str(folder / "tfds")
    c.train.num_epochs = 6
    return train.train_and_evaluate(c, str(folder / "run"), tasks.SegmentationTask)

  return _trained_once(tmp_path_factory, "digits_seg", train_fn)


@pytest.fixture(scope="session")
def digits_standardized_run(tmp_path_factory):
  """A tiny ReNet on the embedded digits, one epoch, with standardisation (so that
  preprocessing.npz, and the statistics an export carries, matter): (workdir, config)."""
  from experiments.configs import digits as digits_config
  c = digits_config.get_config()
  c.data.data_dir = TFDS
  c.data.standardize = True
  c.model.renet.units, c.model.renet.fc_units = (8, 8), (32,)
  c.train.num_epochs, c.train.patience = 1, 0

  def train_fn(folder):
    return train.train_and_evaluate(c, str(folder / "run"), tasks.ClassificationTask)

  folder, _ = _trained_once(tmp_path_factory, "digits_standardized", train_fn, optimized=False)
  return str(folder / "run"), c


@pytest.fixture(scope="session")
def tiny_digits_whole(tmp_path_factory):
  """The uninterrupted run of `fixtures.tiny_digits_args` (+ TINY_DIGITS_LOGGING) that
  the resume tests compare theirs with, bit for bit: (workdir, its seconds)."""
  import cli_runner

  def train_fn(folder):
    command = {"module": "experiments.classify", "cwd": ROOT, "args": fixtures.tiny_digits_args(
        folder / "run", *fixtures.TINY_DIGITS_LOGGING)}
    (result,) = cli_runner.run_commands([command], str(folder))
    assert result["status"] == 0, result["output"][-3000:]
    return {"seconds": result["seconds"]}

  folder, results = _trained_once(tmp_path_factory, "tiny_digits_whole", train_fn,
                                  optimized=False)
  return str(folder / "run"), results["seconds"]


@pytest.fixture(scope="session")
def moving_digits_small_run(tmp_path_factory):
  """`moving_digits_seg.py:small` with 4 channels a layer, trained for one epoch:
  (workdir, its TFDS data_dir, config), for the tests that serve a trained video run
  (they compare its labels from several paths: these are varied already, test mean IoU
  0.14, seven of ten digits found; 4 channels keep the two strides and train in half
  the time of 16)."""
  from experiments.configs import moving_digits_seg as moving_digits_seg_config
  c = moving_digits_seg_config.get_config("small")
  c.model.conv_deconv_rnn.encoder_units = c.model.conv_deconv_rnn.decoder_units = (4, 4)
  c.train.num_epochs = 1

  def train_fn(folder):
    c.data.data_dir = str(folder / "tfds")
    return train.train_and_evaluate(c, str(folder / "run"), tasks.VideoSegmentationTask)

  folder, _ = _trained_once(tmp_path_factory, "moving_digits_small", train_fn)
  c.data.data_dir = str(folder / "tfds")
  return str(folder / "run"), c.data.data_dir, c


@pytest.fixture(scope="session")
def shared_tfds():
  """The folder where the tests prepare datasets once (tests/fixtures.py TFDS)."""
  os.makedirs(TFDS, exist_ok=True)
  return TFDS
