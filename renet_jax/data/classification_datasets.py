"""Image classification datasets as TFDS builders (ArrayRecord, no TensorFlow).

Examples: {"image": uint8 (H, W, C), "label": int, "index": position in the raw files}.
Each builder reads the standard raw files from its manual folder; where the dataset has
a public download and no manual files are given, it downloads them (needs a network).
Prepare them with `renet_jax.data.registry.prepare`.
"""

import glob
import gzip
import io
import os
import pickle
import struct
import tarfile
import zlib

import numpy as np
import tensorflow_datasets as tfds

from renet_jax.data.raw import (DatasetError, FolderConfig, IMAGE_SUFFIXES, RawFilesBuilder,
                                check_labels, download, folder_config, fraction_split,
                                manual_folder, split_folders)

NUM_CLASSES = 10  # of every dataset here

def _classification_info(builder, shape, num_classes, description):
  return tfds.core.DatasetInfo(
      builder=builder, description=description,
      features=tfds.features.FeaturesDict({
          # Raw bytes: as an int64 list (TFDS's default) each pixel went through the
          # proto one by one, most of preparing CIFAR-10 and reading it back.
          "image": tfds.features.Tensor(shape=shape, dtype=np.uint8,
                                        encoding=tfds.features.Encoding.BYTES),
          "label": tfds.features.ClassLabel(num_classes=num_classes),
          "index": tfds.features.Scalar(dtype=np.int64)}),  # position in the raw files
      supervised_keys=("image", "label"))


class _ImageClassification(RawFilesBuilder, skip_registration=True):
  """Shared body: subclasses give SHAPE and `_read_splits(dl_manager)` returning
  {split: (images, labels, first)}, `first` being the raw-file position of example 0."""
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": "Images stored as raw bytes (faster to prepare and read); "
                            "the same examples."}
  SHAPE: tuple[int, int, int]
  CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(NUM_CLASSES))

  def _info(self):
    return _classification_info(self, self.SHAPE, NUM_CLASSES, self.__doc__)

  def _split_generators(self, dl_manager):
    return {name: self._generate_examples(*arrays)
            for name, arrays in self._read_splits(dl_manager).items()}

  def _generate_examples(self, images, labels, first):
    for i in range(len(labels)):
      yield first + i, {"image": images[i], "label": int(labels[i]), "index": first + i}


def _split_at(images, labels, n):
  """The first n examples and the rest, as _read_splits entries."""
  return (images[:n], labels[:n], 0), (images[n:], labels[n:], n)


class Digits(_ImageClassification, skip_registration=True):
  """scikit-learn's 8x8 handwritten digits (1,797 images, shipped inside the wheel):
  the embedded offline default. Pixels 0..16 are stored rescaled to 0..255.
  Splits from a fixed permutation: 1,197 train / 300 validation / 300 test."""
  SHAPE = (8, 8, 1)

  def _read_splits(self, dl_manager):
    del dl_manager
    images, labels = digits_arrays()
    return {split: (images[a:b], labels[a:b], a) for split, (a, b) in DIGITS_SPLITS.items()}


# Positions in `digits_arrays()`; digits_seg builds its canvases from the same splits.
DIGITS_SPLITS = {"train": (0, 1197), "validation": (1197, 1497), "test": (1497, 1797)}


def digits_arrays():
  """All digits, shuffled once with a fixed seed: uint8 (1797, 8, 8, 1), labels."""
  from sklearn.datasets import load_digits  # a large import, needed only here
  data = load_digits()
  order = np.random.default_rng(0).permutation(len(data.target))
  images = np.round(data.images[order] * (255 / 16)).astype(np.uint8)[..., None]
  return images, data.target[order].astype(np.int64)


class Mnist(_ImageClassification, skip_registration=True):
  """MNIST from the four official `*-idx?-ubyte.gz` files: 50,000 train (the first of the
  official training set) / 10,000 validation (its last) / 10,000 test."""
  SHAPE = (28, 28, 1)
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

  def _read_splits(self, dl_manager):
    paths = _manual_or_download(self, dl_manager, self.FILES, self.URL)
    train, validation = _split_at(*_read_idx_pair(paths["train_images"], paths["train_labels"]),
                                  self.NUM_TRAIN)
    test = _read_idx_pair(paths["test_images"], paths["test_labels"])
    return {"train": train, "validation": validation, "test": (*test, 0)}


def _manual_or_download(builder, dl_manager, files: dict, url: str) -> dict:
  """Paths of `files` in the manual folder if it has them all, else downloaded."""
  name = type(builder).__name__.lower()
  manual = manual_folder(builder, name, required=False)
  if manual is None:
    return download(builder, name, url,
                    lambda: dl_manager.download({k: url + f for k, f in files.items()}))
  missing = [f for f in files.values() if not os.path.exists(os.path.join(manual, f))]
  if missing:
    raise DatasetError(
        f"{name}: the manual folder {manual} lacks {missing}. Expected layout: "
        f"{manual}/{{{', '.join(files.values())}}}. "
        f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
  return {k: os.path.join(manual, f) for k, f in files.items()}


def _read_idx_pair(images_path, labels_path):
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise DatasetError(f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) "
                       "are not a matching image/label pair of idx files.")
  check_labels(labels.astype(np.int64), 10, str(labels_path))
  return images[..., None], labels


def read_idx(path) -> np.ndarray:
  """An idx file (optionally gzipped) as a uint8 array; clear errors when malformed."""
  opener = gzip.open if str(path).endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise DatasetError(f"{path}: cannot be read ({e}); the download may be truncated.") from e
  if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
    raise DatasetError(f"{path}: not an unsigned-byte idx file (bad magic number).")
  ndim = data[3]
  if len(data) < 4 + 4 * ndim:
    raise DatasetError(f"{path}: the header is cut short ({len(data)} bytes for {ndim} "
                       "dimensions); the file is truncated, download it again.")
  dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if body.size != int(np.prod(dims)):
    raise DatasetError(f"{path}: header says shape {dims} ({int(np.prod(dims))} bytes) but "
                       f"holds {body.size} bytes; the file is truncated or corrupt.")
  return body.reshape(dims)


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


class Cifar10(_ImageClassification, skip_registration=True):
  """CIFAR-10: 40,000 train / 10,000 validation / 10,000 test.

  Reads, in this order of preference, from the manual folder: the official
  `cifar-10-python.tar.gz` (or its extracted `cifar-10-batches-py/`), where validation is
  `data_batch_5`; or a class-folder image tree `train/<class>/*`, `test/<class>/*` (or a
  `.tar.gz` of it), where validation is the last 10,000 of a fixed permutation of train.
  Without a manual folder it downloads the official archive.
  """
  CLASS_NAMES = CIFAR10_CLASSES
  SHAPE = (32, 32, 3)
  URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put cifar-10-python.tar.gz (from " + URL + ") or a class-folder tree "
      "train/<class>/*.png, test/<class>/*.png (or a .tar.gz of it) in the folder given as "
      "data.manual_dir.")
  NUM_VALIDATION = 10_000

  def _read_splits(self, dl_manager):
    train, test = self._read(dl_manager)
    train, validation = _split_at(*train, len(train[1]) - self.NUM_VALIDATION)
    return {"train": train, "validation": validation, "test": (*test, 0)}

  def _read(self, dl_manager):
    manual = manual_folder(self, "cifar10", required=False)
    if manual is None:
      return _cifar_pickles(download(self, "cifar10", self.URL,
                                     lambda: dl_manager.download(self.URL)))
    for candidate in ("cifar-10-python.tar.gz", "cifar-10-batches-py"):
      if os.path.exists(os.path.join(manual, candidate)):
        return _cifar_pickles(os.path.join(manual, candidate))
    if os.path.isdir(os.path.join(manual, "train")):
      return _image_tree(manual, lambda rel: open(os.path.join(manual, rel), "rb").read(),
                         _list_files(manual))
    archives = sorted(glob.glob(os.path.join(manual, "*.tar.gz")))
    if archives:
      contents = _tar_files(archives[0])
      return _image_tree(archives[0], contents.__getitem__, list(contents))
    raise DatasetError(f"cifar10: {manual} holds none of cifar-10-python.tar.gz, "
                       f"cifar-10-batches-py/, train/<class>/ or a .tar.gz of that tree. "
                       f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")


def _cifar_pickles(path):
  """(train, test) arrays from the official python archive or its extracted folder."""
  names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
  batches = {}
  if os.path.isdir(path):
    for name in names:
      batches[name] = _unpickle(os.path.join(path, name), open(os.path.join(path, name),
                                                               "rb").read())
  else:
    try:
      with tarfile.open(path) as tar:
        for m in tar.getmembers():
          if os.path.basename(m.name) in names:
            batches[os.path.basename(m.name)] = _unpickle(m.name, tar.extractfile(m).read())
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
      raise DatasetError(f"{path}: not a readable tar.gz ({e}); the download may be "
                         "truncated.") from e
  missing = [n for n in names if n not in batches]
  if missing:
    raise DatasetError(f"{path}: lacks {missing}; expected the official CIFAR-10 python "
                       "batches.")
  join = lambda ns: tuple(np.concatenate(a) for a in zip(*(batches[n] for n in ns)))
  return join(names[:5]), join(names[5:])


def _unpickle(where, data):
  try:
    d = pickle.loads(data, encoding="bytes")
    images = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(d[b"labels"], np.int64)
  except Exception as e:
    raise DatasetError(f"{where}: not a CIFAR-10 python batch ({type(e).__name__}: {e}).") from e
  check_labels(labels, 10, where)
  return images, labels


def _tar_files(path: str) -> dict[str, bytes]:
  """{name: bytes} of every file of a .tar.gz, read in one pass (the gzip stream is
  decompressed once, not once for the index and again for the reads: preparing the
  shared CIFAR-10 image tree, 60,000 PNGs, took 26.4-26.8 s against 27.4-27.9 s), or one
  line naming the archive when it cannot be read."""
  try:
    with tarfile.open(path) as tar:
      return {m.name.lstrip("./"): tar.extractfile(m).read() for m in tar if m.isfile()}
  except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
    raise DatasetError(f"{path}: not a readable tar.gz ({e}); the download may be "
                       "truncated.") from e


def _list_files(root):
  return [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs]


def _image_tree(where, read, files):
  """(train, test) from `<split>/<class>/<image>` paths; train in a fixed permutation."""
  from PIL import Image
  out = {}
  for split in ("train", "test"):
    items = sorted(f for f in files if f.startswith(split + "/") and f.count("/") == 2)
    if not items:
      raise DatasetError(f"cifar10: {where} has no {split}/<class>/<image> files.")
    images, labels = [], []
    for rel in items:
      cls = rel.split("/")[1]
      if cls not in CIFAR10_CLASSES:
        raise DatasetError(f"cifar10: {where}/{rel}: unknown class folder {cls!r}; expected "
                           f"one of {CIFAR10_CLASSES}.")
      try:
        image = np.asarray(Image.open(io.BytesIO(read(rel))).convert("RGB"))
      except Exception as e:
        raise DatasetError(f"cifar10: {where}/{rel} is not a readable image ({e}).") from e
      if image.shape != (32, 32, 3):
        raise DatasetError(f"cifar10: {where}/{rel} is {image.shape}, expected (32, 32, 3).")
      images.append(image)
      labels.append(CIFAR10_CLASSES.index(cls))
    images, labels = np.stack(images), np.asarray(labels, np.int64)
    if split == "train":
      order = np.random.default_rng(0).permutation(len(labels))
      images, labels = images[order], labels[order]
    out[split] = (images, labels)
  return out["train"], out["test"]


class SvhnCropped(_ImageClassification, skip_registration=True):
  """SVHN format 2 (cropped 32x32) from train_32x32.mat, test_32x32.mat, extra_32x32.mat:
  train+extra shuffled with a fixed seed, its last 60,439 as validation (543,949 train),
  26,032 test. Label 10 in the files (digit 0) becomes 0."""
  SHAPE = (32, 32, 3)
  FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
  URL = "http://ufldl.stanford.edu/housenumbers/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put train_32x32.mat, test_32x32.mat and extra_32x32.mat (from " + URL + ") in the "
      "folder given as data.manual_dir.")
  NUM_VALIDATION = 60_439

  def _read_splits(self, dl_manager):
    paths = _manual_or_download(self, dl_manager, self.FILES, self.URL)
    parts = [_read_svhn(paths[k]) for k in ("train", "extra")]
    order = np.random.default_rng(0).permutation(sum(len(p[1]) for p in parts))
    images, labels = (np.concatenate([p[k] for p in parts])[order] for k in (0, 1))
    train, validation = _split_at(images, labels, len(order) - self.NUM_VALIDATION)
    return {"train": train, "validation": validation,
            "test": (*_read_svhn(paths["test"]), 0)}


def _read_svhn(path):
  from scipy.io import loadmat  # only SVHN needs scipy
  try:
    mat = loadmat(path)
    images = np.ascontiguousarray(np.asarray(mat["X"], np.uint8).transpose(3, 0, 1, 2))
    labels = np.asarray(mat["y"], np.int64).reshape(-1)
  except Exception as e:
    raise DatasetError(f"{path}: not an SVHN format-2 .mat file ({type(e).__name__}: {e}).") from e
  if images.shape[1:] != (32, 32, 3) or len(images) != len(labels):
    raise DatasetError(f"{path}: X {images.shape} and y {labels.shape} do not match the "
                       "SVHN format 2 layout (32, 32, 3, N) and (N, 1).")
  check_labels(labels, 11, str(path))
  if np.any(labels == 0):
    raise DatasetError(f"{path}: label 0 found; SVHN files label the digit 0 as 10.")
  return images, labels % 10


class ImageFolder(_ImageClassification, skip_registration=True):
  """Your own labelled images, from the folder given as data.manual_dir, one subfolder
  per class (torchvision's ImageFolder layout): <class>/<image> (split by
  data.val_fraction and data.test_fraction from a fixed permutation), or train/, val/
  (or validation/), test/ each holding the same <class>/ folders. Class names are the
  folder names, sorted. Every image is stored resized to data.image_size (bilinear) as
  RGB. Prepared once per folder content and size: the cache key covers every file's
  name, size and modification time, the fractions and the size."""
  SHAPE = (None, None, 3)
  CLASS_NAMES = None  # the folder's: `registry.class_names`
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Give data.manual_dir a folder with one subfolder of images per class, or train/, "
      "val/, test/ each holding those class folders; see "
      "renet_jax.data.classification_datasets.ImageFolder.")
  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=self.SHAPE, dtype=np.uint8,
                                          encoding=tfds.features.Encoding.ZLIB),
            "label": tfds.features.Scalar(dtype=np.int64),
            "index": tfds.features.Scalar(dtype=np.int64)}))

  @classmethod
  def config_for(cls, manual_dir: str, fractions, image_size) -> FolderConfig:
    return folder_config(manual_dir, fractions, image_size)

  def _read_splits(self, dl_manager):
    del dl_manager
    root = manual_folder(self, "image_folder", required=True)
    splits = split_folders(root, "class folders at the top")
    if splits:
      names = class_folder_names(splits["train"])
      items = {split: _class_items(r, names) for split, r in splits.items()}
    else:
      names = class_folder_names(root)
      items = fraction_split(_class_items(root, names), self.builder_config.fractions, root)
    out = {}
    for split, pairs in items.items():
      images = np.stack([_resized_rgb(path, self.builder_config.image_size) for path, _ in pairs])
      out[split] = (images, np.array([label for _, label in pairs], np.int64), 0)
    return out


def class_folder_names(root) -> tuple[str, ...]:
  names = tuple(sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n))))
  if len(names) < 2:
    raise DatasetError(f"{root} holds {len(names)} class folder(s); a classification "
                       "folder needs one subfolder of images per class, two at least")
  return names


def _class_items(root, names) -> list[tuple[str, int]]:
  items = []
  for label, name in enumerate(names):
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
      raise DatasetError(f"{folder} is missing: every split needs the class folders of "
                         f"train/ ({', '.join(names)})")
    found = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    if not found:
      raise DatasetError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); remove "
                         "the empty class folder or add its images")
    items += [(os.path.join(folder, f), label) for f in found]
  return items


def _resized_rgb(path, size) -> np.ndarray:
  from PIL import Image
  from renet_jax.data.raw import read_image
  image = read_image(path, mode="RGB")
  if size and tuple(image.shape[:2]) != tuple(size):
    image = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
  return image


BUILDERS = {"digits": Digits, "mnist": Mnist, "cifar10": Cifar10,
            "svhn_cropped": SvhnCropped, "image_folder": ImageFolder}
