"""data.cache_features: the cached front end gives the uncached run's parameters and
metrics; the files hold the front end's features of every orientation; they are
reused, rebuilt when the key changes, and rebuilt (never read) when damaged."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import weizmann_horse as horse_config
from renet_jax import files
from renet_jax.data import augment, preprocess
from renet_jax.nn import models, vgg
from renet_jax.training import checkpoints, tasks, train
from tests import fixtures
from tests.test_vgg import random_weights


@pytest.fixture(scope="module")
def horse_files(tmp_path_factory):
  root = tmp_path_factory.mktemp("horse_cache")
  fixtures.weizmann_horse(str(root / "raw"), n=15)  # 6 / 3 / 6 images
  weights = str(root / "vgg.npz")
  vgg.save_npz(weights, vgg.VggWeights(random_weights(), "caffe"))
  return root, weights


def _config(root, weights, cache, image_size=(16, 16), **train_fields):
  c = horse_config.get_config("vgg")
  c.model.vgg_weights = weights
  c.data.manual_dir = str(root / "raw")
  c.data.data_dir = str(root / "tfds")
  c.data.image_size = image_size
  c.data.cache_features = cache
  c.model.reseg.units = (4, 4)
  c.model.reseg.upsample_filters = (4, 4)
  c.train.update(batch_size=2, eval_batch_size=3, num_epochs=2, log_every_steps=2,
                 **train_fields)
  c.evals.panels.num_panels = 1
  return c


def test_cache_holds_the_front_end_features_of_every_orientation(horse_files):
  root, weights = horse_files
  task = tasks.SegmentationTask(_config(root, weights, "true"))
  assert task.cached and isinstance(task.model(), models.ReSeg)
  assert task.model().input == "features"
  model, params = task.image_model(), task.vgg_weights.params
  for split, turns in (("train", (augment.NO_FLIP, augment.HORIZONTAL)),
                       ("test", (augment.NO_FLIP,))):
    example = task.resized(task.images[split][1])
    cached = task.sources[split][1]
    assert cached["features"].shape == (len(turns), 4, 4, 256)
    np.testing.assert_array_equal(cached["label"], example["label"])
    image = preprocess.scale(example["image"])[None]
    for o, turn in enumerate(turns):
      flipped = augment.apply_flips(jnp.asarray(image), jnp.array([turn]))
      want = model.front_end_features(params, flipped)[0]
      np.testing.assert_allclose(cached["features"][o], want, rtol=1e-5, atol=1e-5)


def _cache_dirs(root):
  found = []
  for dirpath, dirnames, _ in os.walk(root / "tfds"):
    if os.path.basename(dirpath) == "feature_cache":
      found += [os.path.join(dirpath, d) for d in dirnames]
  return sorted(found)


def test_cache_is_reused_rebuilt_on_a_new_key_and_when_damaged(horse_files):
  root, weights = horse_files

  def train_split(**kw):  # computed when first used
    return tasks.SegmentationTask(_config(root, weights, "true", **kw)).sources["train"]

  train_split()
  (where,) = [d for d in _cache_dirs(root)
              if files.read_json(os.path.join(d, "meta.json"))[
                  "image_size"] == [16, 16]]
  path = os.path.join(where, "train.npy")
  stamp = os.stat(path).st_mtime_ns
  original = np.load(path)
  train_split()
  assert os.stat(path).st_mtime_ns == stamp  # reused, not rewritten

  with open(path, "r+b") as f:  # one flipped byte in the data
    f.seek(os.path.getsize(path) - 7)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0xFF]))
  rebuilt = train_split()
  np.testing.assert_array_equal(np.load(path), original)  # rebuilt, same features
  np.testing.assert_array_equal(rebuilt[5]["features"], original[5])

  os.truncate(path, os.path.getsize(path) // 2)
  train_split()
  np.testing.assert_array_equal(np.load(path), original)

  before = set(_cache_dirs(root))
  train_split(image_size=(20, 12))
  assert len(set(_cache_dirs(root)) - before) == 1  # another image size, another key


def test_auto_caches_only_with_the_vgg_front_end(horse_files):
  root, weights = horse_files
  assert tasks.SegmentationTask(_config(root, weights, "auto")).cached
  assert not tasks.SegmentationTask(_config(root, weights, "false")).cached
  c = _config(root, weights, "auto")
  c.model.reseg.vgg = False
  c.model.reseg.patch_sizes = ((2, 2), (2, 2))
  assert not tasks.SegmentationTask(c).cached


def _published_way(root, weights, cache="true", on_device="true", **train_fields):
  """How the published ReSeg+VGG runs train: class balancing, cached features, the
  splits on the device."""
  c = _config(root, weights, cache, **train_fields)
  c.data.on_device = on_device
  c.loss.class_balancing = True
  return c


@pytest.fixture(scope="module")
def published_way_run(horse_files, tmp_path_factory):
  """`_published_way`, uninterrupted: (workdir, results)."""
  root, weights = horse_files
  workdir = str(tmp_path_factory.mktemp("published_way") / "run")
  with fixtures.xla_optimizations(False):  # as the tests compile: one compares bit for bit
    return workdir, train.train_and_evaluate(_published_way(root, weights), workdir,
                                             tasks.SegmentationTask)


@pytest.mark.slow
@pytest.mark.parametrize("on_device", ["true", "false"])
def test_cached_run_equals_the_uncached_run(horse_files, request, tmp_path, on_device):
  """A few steps with horizontal flips and class balancing, and a full evaluation, both
  ways (the cached run on the device is the module's `published_way_run`)."""
  root, weights = horse_files
  workdirs, results, params = {}, {}, {}
  for cache in ("false", "true"):
    if (cache, on_device) == ("true", "true"):
      workdirs[cache], results[cache] = request.getfixturevalue("published_way_run")
    else:
      workdirs[cache] = str(tmp_path / cache)
      results[cache] = train.train_and_evaluate(
          _published_way(root, weights, cache, on_device), workdirs[cache],
          tasks.SegmentationTask)
    params[cache] = checkpoints.load_params(workdirs[cache], "latest")[1]
  assert results["true"]["features_cached"] and not results["false"]["features_cached"]
  assert results["true"]["steps"] == results["false"]["steps"] == 6
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               params["true"], params["false"])
  losses = {}
  for cache in ("false", "true"):
    rows = [json.loads(line) for line in open(os.path.join(workdirs[cache], "metrics.jsonl"))]
    losses[cache] = [r["loss"] for r in rows if r["split"] == "train"]
  np.testing.assert_allclose(losses["true"], losses["false"], rtol=1e-5)
  assert len(set(np.round(losses["true"], 6))) > 1  # it trained: the loss moved
  for key, value in results["false"].items():
    if key.startswith(("validation_", "test_")) and isinstance(value, float):
      assert results["true"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_bfloat16_features_read_back_as_bfloat16(tmp_path):
  """.npy has no bfloat16: the file holds 2-byte voids, read back as the key's dtype."""
  from renet_jax.data import feature_cache
  values = jnp.linspace(-3, 3, 2 * 1 * 2 * 2 * 3, dtype=jnp.bfloat16).reshape(2, 1, 2, 2, 3)
  np.save(tmp_path / "f.npy", np.asarray(values))
  np.save(tmp_path / "l.npy", np.zeros((2, 8, 8), np.uint8))
  split = feature_cache.CachedSplit(str(tmp_path / "f.npy"), str(tmp_path / "l.npy"),
                                    "bfloat16")
  got = split[1]["features"]
  assert got.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(values[1], np.float32))


def test_runs_started_together_build_the_cache_once(tmp_path):
  """Two builders of one key at once (a sweep's runs): one computes, the other waits and
  reads the same files (before the lock, the second one's rename failed)."""
  import threading
  import time
  from renet_jax.data import feature_cache
  rng = np.random.default_rng(0)
  split = [{"image": rng.integers(0, 256, (4, 4, 3), dtype=np.uint8),
            "label": rng.integers(0, 2, (4, 4), dtype=np.uint8)} for _ in range(3)]
  images = {s: split for s in feature_cache.SPLITS}
  computed = []

  def compute(x):
    computed.append(len(x))
    time.sleep(0.05)  # long enough for the other thread to arrive meanwhile
    return x[:, ::2, ::2] * 2.0

  results, errors = [None, None], []

  def build(i):
    try:
      results[i] = dict(feature_cache.cached_splits(str(tmp_path), {"k": 1}, images,
                                                    lambda ex: ex, compute, "none"))
    except Exception as e:  # reported below
      errors.append(e)

  threads = [threading.Thread(target=build, args=(i,)) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors, errors
  assert sum(computed) == 3 * len(feature_cache.SPLITS)  # every image once, not twice
  for s in feature_cache.SPLITS:
    for i in range(3):
      np.testing.assert_array_equal(results[0][s][i]["features"], results[1][s][i]["features"])
      np.testing.assert_array_equal(results[0][s][i]["features"][0],
                                    preprocess.scale(split[i]["image"])[::2, ::2] * 2.0)


@pytest.mark.parametrize("flip", ["none", "horizontal", "both"])
def test_cached_features_wrap_the_images_as_the_images_train(tmp_path, flip):
  """With the identity for a front end, the wrapper's training batch (the stored
  orientation its key draws) equals the images' own batch flipped by the same key, and
  its evaluation batch the upright images: the two data sources are interchangeable."""
  from renet_jax.data import feature_cache, inputs
  rng = np.random.default_rng(1)
  examples = [{"image": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
               "label": rng.integers(0, 3, (6, 5), dtype=np.uint8)} for _ in range(4)]
  images = inputs.SegmentationImages({s: examples for s in feature_cache.SPLITS},
                                     lambda ex: ex, flip, label_fill=0)
  cached = feature_cache.CachedFeatures(images, str(tmp_path), {"k": flip}, lambda x: x,
                                        (6, 5))
  assert (cached.cached, cached.model_fields) == (True, {"input": "features",
                                                         "crop_to": (6, 5)})
  for split in ("train", "test"):
    batch = {k: np.stack([ex[k] for ex in examples]) for k in ("image", "label")}
    stored = {k: np.stack([cached.transform(cached.sources[split][i])[k] for i in range(4)])
              for k in ("features", "label")}
    for seed in range(3):
      key = jax.random.key(seed)
      want = images.preprocess(batch, key, train=split == "train")
      got = cached.preprocess(stored, key, train=split == "train")
      np.testing.assert_array_equal(got["label"], want["label"])
      np.testing.assert_allclose(got["image"], want["image"], atol=1e-7)


@pytest.mark.slow
def test_reseg_with_balancing_cached_features_on_device_resumes_bitwise(horse_files,
                                                                      published_way_run,
                                                                      tmp_path):
  """How the published ReSeg+VGG runs train (`_published_way`), killed after step 4 of
  6 (mid-epoch) and run again: the final parameters equal the uninterrupted run's bit
  for bit, and so do the test metrics."""
  root, weights = horse_files
  whole_dir, whole = published_way_run
  parts = str(tmp_path / "parts")
  first = train.train_and_evaluate(_published_way(root, weights, stop_after_steps=4), parts,
                                   tasks.SegmentationTask)
  assert first["steps"] == 4 and not first["finished"]
  resumed = train.train_and_evaluate(_published_way(root, weights), parts,
                                     tasks.SegmentationTask)
  assert resumed["features_cached"] and resumed["data_on_device"]
  (step_a, a), (step_b, b) = (checkpoints.load_params(w, "latest") for w in (whole_dir, parts))
  assert step_a == step_b == 6
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert resumed["test_mean_iou"] == whole["test_mean_iou"]


def test_each_split_is_computed_when_first_used(tmp_path):
  """Evaluating the test split computes the test images' features only; a later run
  that trains computes the other splits and reuses the test split's files."""
  from renet_jax.data import feature_cache
  rng = np.random.default_rng(0)
  images = {s: [{"image": rng.integers(0, 256, (4, 4, 3), dtype=np.uint8),
                 "label": rng.integers(0, 2, (4, 4), dtype=np.uint8)} for _ in range(3)]
            for s in feature_cache.SPLITS}
  computed = []

  def compute(x):
    computed.append(len(x))
    return x[:, ::2, ::2] * 2.0

  def cache():
    return feature_cache.cached_splits(str(tmp_path), {"k": 1}, images, lambda ex: ex,
                                       compute, "horizontal")

  np.testing.assert_array_equal(cache()["test"][2]["features"][0],
                                preprocess.scale(images["test"][2]["image"])[::2, ::2] * 2.0)
  assert computed == [3]
  (meta_path,) = tmp_path.glob("feature_cache/*/meta.json")
  assert set(files.read_json(str(meta_path))["files"]) == {"test.npy", "test-labels.npy"}
  test_file = meta_path.parent / "test.npy"
  stamp = test_file.stat().st_mtime_ns
  splits = dict(cache())  # every split, as training reads them
  assert computed == [3, 3, 3, 3]  # test once; train in two orientations; validation
  assert test_file.stat().st_mtime_ns == stamp
  assert set(files.read_json(str(meta_path))["files"]) == {
      name for s in feature_cache.SPLITS for name in (f"{s}.npy", f"{s}-labels.npy")}
  assert splits["train"][1]["features"].shape == (2, 2, 2, 3)
  with pytest.raises(KeyError):
    cache()["training"]
