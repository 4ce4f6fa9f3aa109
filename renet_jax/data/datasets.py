"""TFDS builders (ArrayRecord, read with random access, no TensorFlow) and `load`.

  sources = load("mnist", manual_dir="~/data/mnist")   # {"train": ..., "validation": ...}
  sources["train"][0]  # {"image": uint8 (28, 28, 1), "label": int}

Each builder reads the standard raw files from `manual_dir`; where the dataset has a
public download and no manual files are given, it downloads them (needs a network).
Prepared datasets are cached under `data_dir` (default: the TFDS default).
"""

import gzip
import os
import struct
from typing import Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds


class DatasetError(ValueError):
  """A dataset folder or file that cannot be read; the message says how to fix it."""


def load(name: str, data_dir: str | None = None,
         manual_dir: str | None = None) -> Mapping[str, Sequence]:
  """Prepares dataset `name` once (cached in data_dir) and returns its splits."""
  if name not in BUILDERS:
    raise DatasetError(f"Unknown dataset {name!r}; choose one of {sorted(BUILDERS)}.")
  kwargs = {"file_format": "array_record"}
  if data_dir:
    kwargs["data_dir"] = os.path.expanduser(data_dir)
  builder = BUILDERS[name](**kwargs)
  # Read by the builders themselves: tfds's own manual_dir refuses empty folders with a
  # message that names neither the dataset's files nor where to get them.
  builder.raw_dir = os.path.expanduser(manual_dir) if manual_dir else None
  builder.download_and_prepare()
  return builder.as_data_source()


def _classification_info(builder, shape, num_classes, description):
  return tfds.core.DatasetInfo(
      builder=builder, description=description,
      features=tfds.features.FeaturesDict({
          "image": tfds.features.Tensor(shape=shape, dtype=np.uint8),
          "label": tfds.features.ClassLabel(num_classes=num_classes),
          "index": tfds.features.Scalar(dtype=np.int64)}),  # position in the raw files
      supervised_keys=("image", "label"))


def _check_labels(labels, num_classes, where):
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if bad.size:
    raise DatasetError(f"{where}: label {labels[bad[0]]} at index {bad[0]} is out of range "
                       f"0..{num_classes - 1} ({bad.size} such labels); the file is corrupt "
                       "or not this dataset's.")


class Digits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """scikit-learn's 8x8 handwritten digits (1,797 images, shipped inside the wheel):
  the embedded offline default. Pixels 0..16 are stored rescaled to 0..255.
  Splits from a fixed permutation: 1,197 train / 300 validation / 300 test."""
  VERSION = tfds.core.Version("1.0.0")
  SPLITS = {"train": (0, 1197), "validation": (1197, 1497), "test": (1497, 1797)}

  def _info(self):
    return _classification_info(self, (8, 8, 1), 10, self.__doc__)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(*bounds) for name, bounds in self.SPLITS.items()}

  def _generate_examples(self, start, stop):
    images, labels = digits_arrays()
    for i in range(start, stop):
      yield i, {"image": images[i], "label": int(labels[i]), "index": i}


def digits_arrays():
  """All digits, shuffled once with a fixed seed: uint8 (1797, 8, 8, 1), labels."""
  from sklearn.datasets import load_digits  # a large import, needed only here
  data = load_digits()
  order = np.random.default_rng(0).permutation(len(data.target))
  images = np.round(data.images[order] * (255 / 16)).astype(np.uint8)[..., None]
  return images, data.target[order].astype(np.int64)


class Mnist(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """MNIST from the four official `*-idx?-ubyte.gz` files: 50,000 train (the first of the
  official training set) / 10,000 validation (its last) / 10,000 test."""
  VERSION = tfds.core.Version("1.0.0")
  FILES = {"train_images": "train-images-idx3-ubyte.gz",
           "train_labels": "train-labels-idx1-ubyte.gz",
           "test_images": "t10k-images-idx3-ubyte.gz",
           "test_labels": "t10k-labels-idx1-ubyte.gz"}
  URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put the four MNIST files (" + ", ".join(FILES.values()) + ") in one folder and "
      "pass it as data.manual_dir; they are at http://yann.lecun.com/exdb/mnist/ and "
      "mirrors such as " + URL + ".")
  NUM_TRAIN = 50_000

  def _info(self):
    return _classification_info(self, (28, 28, 1), 10, self.__doc__)

  def _split_generators(self, dl_manager):
    paths = _manual_or_download(self, dl_manager, self.FILES, self.URL)
    train = lambda: _read_idx_pair(paths["train_images"], paths["train_labels"])
    return {"train": self._generate_examples(train, 0, self.NUM_TRAIN),
            "validation": self._generate_examples(train, self.NUM_TRAIN, None),
            "test": self._generate_examples(
                lambda: _read_idx_pair(paths["test_images"], paths["test_labels"]), 0, None)}

  def _generate_examples(self, read, start, stop):
    images, labels = read()
    for i in range(start, len(labels) if stop is None else min(stop, len(labels))):
      yield i, {"image": images[i][..., None], "label": int(labels[i]), "index": i}


def _manual_or_download(builder, dl_manager, files: dict, url: str) -> dict:
  """Paths of `files` in the manual folder if it has them all, else downloaded."""
  name = type(builder).__name__.lower()
  manual = getattr(builder, "raw_dir", None)
  if manual is not None:
    if not os.path.isdir(manual):
      raise DatasetError(f"{name}: the manual folder {manual} does not exist. "
                         f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    missing = [f for f in files.values() if not os.path.exists(os.path.join(manual, f))]
    if missing:
      raise DatasetError(
          f"{name}: the manual folder {manual} lacks {missing}. Expected layout: "
          f"{manual}/{{{', '.join(files.values())}}}. "
          f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return {k: os.path.join(manual, f) for k, f in files.items()}
  try:
    return dl_manager.download({k: url + f for k, f in files.items()})
  except Exception as e:  # no network, blocked host, ...
    raise DatasetError(f"{name}: no manual folder was given and the download from {url} "
                       f"failed ({type(e).__name__}: {e}). "
                       f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}") from e


def _read_idx_pair(images_path, labels_path):
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise DatasetError(f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) "
                       "are not a matching image/label pair of idx files.")
  _check_labels(labels.astype(np.int64), 10, str(labels_path))
  return images, labels


def read_idx(path) -> np.ndarray:
  """An idx file (optionally gzipped) as a uint8 array; clear errors when malformed."""
  opener = gzip.open if str(path).endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise DatasetError(f"{path}: cannot be read ({e}); the download may be truncated.") from e
  if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
    raise DatasetError(f"{path}: not an unsigned-byte idx file (bad magic number).")
  ndim = data[3]
  dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if body.size != int(np.prod(dims)):
    raise DatasetError(f"{path}: header says shape {dims} ({int(np.prod(dims))} bytes) but "
                       f"holds {body.size} bytes; the file is truncated or corrupt.")
  return body.reshape(dims)


BUILDERS = {"digits": Digits, "mnist": Mnist}
