"""The frozen VGG front end's features, computed once per image (data.cache_features).

ReSeg's VGG-16 conv1_1..conv3_3 is not trained, so its output is a pure function of the
image: computing it once for every image of every split takes it out of every epoch.
The training split is stored once per orientation its flips can produce (none and
horizontal for data.flip=horizontal; vertical too for both), so a flipped training
image reads the features of the flipped image, exactly what the uncached network
computes; validation and test need only the upright ones. No other augmentation
touches segmentation images, so none turns the cache off.

On disk, under the prepared dataset's folder (inside data.data_dir):

  <folder>/feature_cache/<key>/{train,validation,test}.npy    float (N, O, h, w, C)
  <folder>/feature_cache/<key>/{train,validation,test}-labels.npy   uint8 (N, H, W)
  <folder>/feature_cache/<key>/meta.json    what the key covers, each file's SHA-256

`key` hashes everything the features depend on: the VGG weights (their values), the
preprocessing, the dataset and its version, the image size, the model's stride and
dtype, the orientations and this format. A later run with the same key reuses the
files; a change of any of them gives another key and a fresh build. A split is computed
when first used (evaluating the test split computes the test images only): its files are
written under temporary names, renamed when complete, then listed in meta.json; a file
that meta.json does not list, or whose size or checksum disagrees with it, is rebuilt
(with a warning), never read. `CachedSplit` reads a split back memory-mapped (the
pipeline then keeps it on the devices when it fits, as data.on_device says, or reads
rows from the map).
`CachedFeatures` is what training reads: a wrapper of the images' data source
(`inputs.SegmentationImages`) with the same interface.
"""

import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence

from absl import logging
import jax.numpy as jnp
import numpy as np

from renet_jax import files, provenance
from renet_jax.data import augment, preprocess

FORMAT = 1
SETTINGS = ("auto", "true", "false")  # data.cache_features
SPLITS = ("train", "validation", "test")


def orientations(flip: str) -> tuple[int, ...]:
  """The flip decisions (augment.NO_FLIP, HORIZONTAL, VERTICAL) whose features the
  training split stores, in that order: index o of a stored example is decision o."""
  return {"none": (augment.NO_FLIP,), "horizontal": (augment.NO_FLIP, augment.HORIZONTAL),
          "both": (augment.NO_FLIP, augment.HORIZONTAL, augment.VERTICAL)}[flip]


class CachedFeatures:
  """The frozen front end's features of `images` (an `inputs.SegmentationImages`) as a
  data source of the same interface: `sources` {split: CachedSplit} (built under
  `folder` unless cached there: `cached_splits`), `transform` the identity (stored at
  the model's size), `preprocess` the stored orientation that the images' flip would
  have drawn, and `model_fields` a model reading features of `crop_to` (H, W) images."""
  cached = True

  def __init__(self, images, folder: str, key_fields: dict, compute_features,
               crop_to: tuple[int, int]):
    self.flip = images.flip
    self.sources = cached_splits(folder, key_fields, images.sources, images.transform,
                                 compute_features, images.flip)
    self.model_fields = {"input": "features", "crop_to": tuple(crop_to)}

  def transform(self, example: dict) -> dict:
    return example

  def preprocess(self, batch: dict, key, train: bool) -> dict:
    """features (N, O, h, w, C), O the training orientations -> the upright ones, or
    when training the very flips `augment.augment` draws from `key`."""
    label = batch["label"].astype(jnp.int32)
    features = batch["features"][:, 0]
    if train and self.flip != "none":
      flips = augment.draw_flips(key, label.shape[0], self.flip)
      features = jnp.take_along_axis(batch["features"], flips.reshape(-1, 1, 1, 1, 1),
                                     axis=1)[:, 0]
      label = augment.apply_flips(label, flips)
    return dict(batch, image=features, label=label)


class CachedSplit(Sequence):
  """A cached split as random-access examples {"features": (O, h, w, C), "label": (H, W)}
  read from its memory-mapped files (opened lazily, so it pickles by path)."""

  def __init__(self, features_path: str, labels_path: str, dtype: str = "float32"):
    # dtype: the features' (from meta.json; .npy stores bfloat16 as raw 2-byte voids)
    self.paths, self.dtype = (features_path, labels_path), dtype
    self._arrays = None
    self._len = int(np.load(labels_path, mmap_mode="r").shape[0])

  def _open(self):
    if self._arrays is None:
      features, labels = (np.load(p, mmap_mode="r") for p in self.paths)
      if features.dtype.kind == "V":  # .npy stores bfloat16 as raw 2-byte voids
        features = features.view(jnp.dtype(self.dtype))
      self._arrays = features, labels
    return self._arrays

  def __len__(self):
    return self._len

  def __getitem__(self, i):
    features, labels = self._open()
    return {"features": np.array(features[i]), "label": np.array(labels[i])}

  def __getstate__(self):
    return {**self.__dict__, "_arrays": None}


def cached_splits(folder: str, key_fields: dict, images: dict, resize, compute_features,
                  flip: str, batch_size: int = 8) -> "CachedSplits":
  """{split: CachedSplit} for `images` ({split: random-access examples}), each split
  built under `folder`/feature_cache when first used, unless the cache with the same key
  holds it complete.

  `key_fields`: what the features depend on besides the orientations (JSON-able);
  `resize(example)` -> {"image": uint8 (H, W, C), "label": uint8 (H, W)} at the model's
  size; `compute_features(images)`: float images (n, H, W, C) in [0, 1] -> features
  (jitted by the caller, or not)."""
  fields = {**key_fields, "format": FORMAT, "train_orientations": list(orientations(flip))}
  key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]
  where = os.path.join(folder, "feature_cache", key)
  os.makedirs(os.path.dirname(where), exist_ok=True)
  return CachedSplits(where, fields, images, resize, compute_features, flip, batch_size)


class CachedSplits(Mapping):
  """{split: CachedSplit} whose splits are computed on first use: an evaluation of the
  test split (re-evaluating released parameters, predict) computes the test images'
  features only; training computes every split once."""

  def __init__(self, where, fields, images, resize, compute_features, flip, batch_size):
    self.where, self.fields, self.images, self.resize = where, fields, images, resize
    self.compute_features, self.flip, self.batch_size = compute_features, flip, batch_size
    self._splits = {}

  def __iter__(self):
    return iter(SPLITS)

  def __len__(self):
    return len(SPLITS)

  def __getitem__(self, split: str) -> CachedSplit:
    if split not in SPLITS:
      raise KeyError(split)
    if split not in self._splits:
      self._splits[split] = self._cached(split)
    return self._splits[split]

  def _cached(self, split: str) -> CachedSplit:
    meta_path = os.path.join(self.where, "meta.json")
    # Runs started together (a sweep's) build a split once: the others wait, then reuse.
    with open(self.where + ".lock", "w") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      if not _intact(self.where, meta_path, split):
        _build(self.where, meta_path, self.fields, split, self.images[split], self.resize,
               self.compute_features, self.flip, self.batch_size)
      # The stored features' dtype (.npy cannot name bfloat16); caches from before it
      # was recorded hold float32.
      dtype = files.read_json(meta_path).get("features_dtype", "float32")
    return CachedSplit(os.path.join(self.where, f"{split}.npy"),
                       os.path.join(self.where, f"{split}-labels.npy"), dtype)


def _split_files(split: str) -> tuple[str, str]:
  return f"{split}.npy", f"{split}-labels.npy"


def _intact(where: str, meta_path: str, split: str) -> bool:
  """Whether meta.json lists `split`'s files and they are there with their size and
  checksum."""
  if not os.path.exists(meta_path):
    return False
  try:
    listed = files.read_json(meta_path)["files"]
    for name in _split_files(split):
      if name not in listed:
        return False
      size, digest = listed[name]
      path = os.path.join(where, name)
      if os.path.getsize(path) != size or provenance.file_sha256(path) != digest:
        raise ValueError(f"{path} does not match its size or checksum")
  except (OSError, ValueError, KeyError, TypeError) as e:
    logging.warning("Feature cache %s is damaged (%s); rebuilding its %s split.", where, e,
                    split)
    return False
  logging.info("Reusing the cached front-end features of %s in %s.", split, where)
  return True


def _build(where, meta_path, fields, split, source, resize, compute_features, flip,
           batch_size):
  """Computes `split`'s features into `where`, then lists its files in meta.json (the
  other splits' entries kept: each is checked when its split is used)."""
  from tqdm import tqdm
  os.makedirs(where, exist_ok=True)
  turns = orientations(flip) if split == "train" else (augment.NO_FLIP,)
  total = len(source) * len(turns)
  bar = tqdm(total=total, unit="img", desc=f"front-end features ({split})",
             dynamic_ncols=True, disable=not sys.stderr.isatty())
  logging.warning("Computing the frozen front end's features of %d %s images once, into "
                  "%s.", total, split, where)
  try:
    written, dtype = _write_split(where, split, source, turns, resize, compute_features,
                                  batch_size, bar)
  finally:
    bar.close()
  listed = {}
  if os.path.exists(meta_path):
    try:
      listed = files.read_json(meta_path)["files"]
    except (OSError, ValueError, KeyError, TypeError):
      pass  # unreadable: the other splits are rebuilt when used
  files.write_json(meta_path, {**fields, "files": {**listed, **written},
                               "features_dtype": dtype})


def _write_split(where, split, source, turns, resize, compute_features, batch_size, bar):
  n = len(source)
  out = {}
  features = labels = None
  for start in range(0, n, batch_size):
    examples = [resize(source[i]) for i in range(start, min(start + batch_size, n))]
    images = preprocess.scale(np.stack([ex["image"] for ex in examples]))
    per_turn = [np.asarray(compute_features(augment.apply_flips(
        jnp.asarray(images), jnp.full((len(examples),), turn)))) for turn in turns]
    block = np.stack(per_turn, axis=1)  # (b, O, h, w, C)
    if features is None:
      features = _open_tmp(where, f"{split}.npy", (n,) + block.shape[1:], block.dtype)
      labels = _open_tmp(where, f"{split}-labels.npy", (n,) + examples[0]["label"].shape,
                         np.uint8)
    features[start:start + len(examples)] = block
    labels[start:start + len(examples)] = np.stack([ex["label"] for ex in examples])
    bar.update(len(examples) * len(turns))
  for name, array in ((f"{split}.npy", features), (f"{split}-labels.npy", labels)):
    array.flush()
    tmp, final = os.path.join(where, name + ".tmp"), os.path.join(where, name)
    os.replace(tmp, final)
    out[name] = (os.path.getsize(final), provenance.file_sha256(final))
  return out, block.dtype.name


def _open_tmp(where, name, shape, dtype):
  return np.lib.format.open_memmap(os.path.join(where, name + ".tmp"), mode="w+",
                                   dtype=dtype, shape=shape)
