"""Released parameters (checkpoints.save_released, best_params.npz): what a committed run
folder holds instead of checkpoints. They are the best checkpoint's trained parameters
without the frozen VGG front end; predict, export and `experiments.evaluate` work from
them alone (plus the VGG file) and reproduce results.json; the committed paper runs are
evaluated on the real test splits where ../shared/data holds them."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import weizmann_horse as horse_config
from renet_jax import files
from renet_jax.data import preprocess
from renet_jax.errors import WorkdirError
from renet_jax.nn import vgg
from renet_jax.serving import exporting, inference, released
from renet_jax.training import checkpoints, tasks, train
from tests import fixtures
from tests.test_vgg import random_weights

from tests.fixtures import ROOT, SHARED_DATA as SHARED

VGG_FILE = os.path.join(SHARED, "vgg16", "vgg16-397923af-conv1_1-conv3_3.pth")


@pytest.fixture(scope="module")
def vgg_run(tmp_path_factory):
  """A finished tiny ReSeg+VGG run (random VGG weights, cached features, per-image loss)."""
  root = tmp_path_factory.mktemp("released")
  fixtures.weizmann_horse(str(root / "raw"), n=15)
  weights = str(root / "vgg.npz")
  vgg.save_npz(weights, vgg.VggWeights(random_weights(), "caffe"))
  c = horse_config.get_config("vgg")
  c.model.vgg_weights = weights
  c.data.manual_dir = str(root / "raw")
  c.data.data_dir = str(root / "tfds")
  c.data.image_size = (16, 16)
  c.model.reseg.units = (4, 4)
  c.model.reseg.upsample_filters = (4, 4)
  c.loss.normalization = "images"
  c.train.update(batch_size=2, eval_batch_size=3, num_epochs=3, log_every_steps=3)
  c.evals.panels.num_panels = 1
  workdir = str(root / "run")
  results = train.train_and_evaluate(c, workdir, tasks.SegmentationTask)
  return root, workdir, weights, results, c


@pytest.mark.slow
def test_released_parameters_are_the_best_checkpoints_without_the_front_end(vgg_run):
  _, workdir, _, results, _ = vgg_run
  step, released = checkpoints.load_released(workdir)
  assert step == results["best_step"]
  assert "vgg" not in released
  state = checkpoints.Checkpoints(workdir, 2).manager  # the orbax files themselves
  best = state.restore(step, args=checkpoints.ocp.args.Composite(
      state=checkpoints.ocp.args.StandardRestore())).state["params"]
  state.close()
  assert set(best) == set(released) | {"vgg"}
  jax.tree.map(np.testing.assert_array_equal, released, {k: best[k] for k in released})
  assert os.path.getsize(os.path.join(workdir, checkpoints.RELEASED)) < 1e6


def _released_copy(workdir, dest):
  """The run folder as committed: everything but the checkpoints."""
  shutil.copytree(workdir, dest, ignore=shutil.ignore_patterns("checkpoints", ".lock"))
  return str(dest)


@pytest.mark.slow
def test_a_folder_without_checkpoints_reproduces_results_and_predictions(vgg_run, tmp_path):
  root, workdir, weights, results, config = vgg_run
  folder = _released_copy(workdir, tmp_path / "released")
  # experiments.evaluate: the same metrics from the released parameters alone.
  step, params = checkpoints.load_released(folder)
  found = released.evaluate(released.run_config(folder), params,
                                  tasks.SegmentationTask, ("validation", "test"))
  assert released.differences(found, results) == []
  assert found["test_pixels"] == results["test_pixels"] > 0
  # A real change of the parameters shows.
  nudged = jax.tree.map(lambda p: p * 1.5, params)
  changed = released.evaluate(released.run_config(folder), nudged,
                                    tasks.SegmentationTask, ("test",))
  assert released.differences(changed, results)
  # predict's Segmenter on the folder equals the network applied by hand to the best
  # checkpoint's parameters (VGG included) of the original workdir.
  segmenter = inference.Segmenter(folder)
  best = checkpoints.Checkpoints(workdir, 2).manager
  full = best.restore(step, args=checkpoints.ocp.args.Composite(
      state=checkpoints.ocp.args.StandardRestore())).state["params"]
  best.close()
  model = tasks.SegmentationTask(config).image_model()
  images = [fixtures_image(k) for k in range(3)]
  apply = jax.jit(model.apply)
  for image in images:
    by_hand = np.asarray(jnp.argmax(apply({"params": full}, preprocess.scale(image)[None]),
                                    -1))[0]
    np.testing.assert_array_equal(segmenter(image), by_hand)
  # experiments.export from the folder alone: the same labels.
  data, _ = exporting.export_run(folder, "labels", platforms=("cpu",))
  exported = jax.export.deserialize(data)
  np.testing.assert_array_equal(np.asarray(exported.call(np.stack(images)))[0],
                                segmenter(images[0]))


def fixtures_image(k: int) -> np.ndarray:
  return np.random.default_rng(k).integers(0, 256, (16, 16, 3), dtype=np.uint8)


@pytest.mark.slow
def test_a_missing_front_end_file_is_named(vgg_run, tmp_path):
  _, workdir, weights, _, _ = vgg_run
  folder = _released_copy(workdir, tmp_path / "released")
  config = files.read_json(os.path.join(folder, "config.json"))
  config["model"]["vgg_weights"] = str(tmp_path / "gone.npz")
  files.write_json(os.path.join(folder, "config.json"), config)
  with pytest.raises(WorkdirError, match="--vgg_weights=PATH"):
    inference.Segmenter(folder)
  assert inference.Segmenter(folder, vgg_weights=weights)(fixtures_image(0)).shape == (16, 16)


# The committed paper runs that release parameters, and the raw data each needs.
RELEASED_RUNS = [os.path.relpath(r, ROOT) for r, _, names in sorted(os.walk(
    os.path.join(ROOT, "results"))) if checkpoints.RELEASED in names]


# CI re-evaluates one run of each kind (the embedded defaults, a real-data quick run, a
# ReSeg+VGG paper run: ~1 min); the others are the same code on more parameters and run
# with --nightly.
IN_CI = {"results/quick/digits", "results/quick/digits_seg",
         "results/quick/weizmann_horse-quick", "results/weizmann_horse-vgg-images/seed0"}


def test_the_runs_ci_re_evaluates_are_committed():
  assert IN_CI <= set(RELEASED_RUNS)


@pytest.mark.slow
@pytest.mark.optimized
@pytest.mark.parametrize("run", [r if r in IN_CI else pytest.param(r, marks=pytest.mark.nightly)
                                 for r in RELEASED_RUNS])
def test_committed_runs_reproduce_their_test_metrics(run, shared_tfds):
  """Exactly: the same pixel counts, every metric within 1e-6 of results.json."""
  folder = os.path.join(ROOT, run)
  config = released.run_config(folder)
  raw = os.path.join(SHARED, config.data.name) if config.data.manual_dir else ""  # embedded
  uses_vgg = config.model.get(config.model.name, {}).get("vgg", False)
  if (raw and not os.path.isdir(raw)) or (uses_vgg and not os.path.isfile(VGG_FILE)):
    pytest.skip(f"../shared/data lacks {config.data.name} or the VGG file")
  config = released.run_config(folder, raw, shared_tfds, VGG_FILE if uses_vgg else "")
  _, params = checkpoints.load_released(folder)
  found = released.evaluate(config, params, tasks.task_class(config.data.name))
  recorded = files.read_json(os.path.join(folder, "results.json"))
  assert released.differences(found, recorded) == []
  counted = "test_pixels" if "test_pixels" in recorded else "test_examples"
  assert found[counted] == recorded[counted] > 0
