"""Reading the raw files users have: the error every reader raises, the builders' base
(the manual folder, a user folder's options), downloads, images, and fixed splits for
datasets that have none."""

import dataclasses
import hashlib
import os
import socket
import urllib.parse

import numpy as np
import tensorflow_datasets as tfds

from renet_jax.errors import DatasetError  # raised by every reader


class RawFilesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder that prepares its dataset from raw files: those in `raw_dir` (the manual
  folder `registry.prepare` was given), else downloaded where they are public. Read by
  the builders themselves: tfds's own manual_dir refuses empty folders with a message
  that names neither the dataset's files nor where to get them."""

  def __init__(self, *, raw_dir: str | None = None, **kwargs):
    self.raw_dir = os.path.expanduser(raw_dir) if raw_dir else None
    super().__init__(**kwargs)


@dataclasses.dataclass(eq=False, kw_only=True)
class FolderConfig(tfds.core.BuilderConfig):
  """A user folder's builder config: named by its content and options (the cache key,
  `folder_config`), and holding the options the builder reads."""
  fractions: tuple[float, float] = (0.1, 0.1)  # (validation, test) without split folders
  image_size: tuple[int, int] | None = None  # what every image is resized to; None: own


def manual_folder(builder, name: str, required: bool) -> str | None:
  """The folder `prepare` was given for `builder` (None if none and not `required`);
  a missing folder is an error that says where to get the files."""
  manual = builder.raw_dir
  if manual is None and not required:
    return None
  if manual is None or not os.path.isdir(manual):
    said = ("no manual folder was given" if manual is None
            else f"the manual folder {manual} does not exist")
    raise DatasetError(f"{name}: {said}. {builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
  return manual


def unreachable_host(urls, timeout_s: float = 5.0) -> str | None:
  """The first host of `urls` (a URL or several) that cannot be resolved and connected to
  within `timeout_s`, else None. Checked before a download: offline, TFDS's downloader
  retries with backoff for minutes before it gives up."""
  for url in [urls] if isinstance(urls, str) else urls:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
      socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError:
      return parts.hostname
  return None


def download(builder, name: str, url, fetch):
  """fetch() (a tfds DownloadManager call) with failures turned into a DatasetError, at
  once when the host cannot be reached."""
  host = unreachable_host(url)
  if host:
    raise DatasetError(f"{name}: no manual folder was given and the download host {host} "
                       f"cannot be reached (offline?). {builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
  try:
    return fetch()
  except DatasetError:
    raise
  except Exception as e:  # no network, blocked host, ...
    raise DatasetError(f"{name}: no manual folder was given and the download from {url} "
                       f"failed ({type(e).__name__}: {e}). "
                       f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}") from e


def check_labels(labels, num_classes, where):
  """The one label check of every builder: class labels, or label maps (any shape)."""
  labels = np.asarray(labels).ravel()
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if bad.size:
    raise DatasetError(f"{where}: label {labels[bad[0]]} at index {bad[0]} is out of range "
                       f"0..{num_classes - 1} ({bad.size} such labels); the file is corrupt "
                       "or not this dataset's.")


def read_text(path) -> str:
  """A text file's contents (lists, class files); DatasetError naming the file when it
  is not UTF-8 text (a binary or corrupt file in its place)."""
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except UnicodeDecodeError as e:
    raise DatasetError(f"{path}: not a text file ({e}); the file is corrupt or not "
                       "the one expected.") from e


def read_image(path, mode="RGB") -> np.ndarray:
  from PIL import Image
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert(mode) if mode else im)
  except FileNotFoundError as e:
    raise DatasetError(f"{path}: file not found.") from e
  except Exception as e:
    raise DatasetError(f"{path}: not a readable image ({type(e).__name__}: {e}).") from e


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # of users' folders


def permuted_split(items, sizes: dict) -> dict:
  """The one splitter of datasets without official splits: a fixed permutation of
  `items` cut into consecutive parts of `sizes` ({split: count}, in the order taken;
  the last split gets the rest), each part in the items' own order."""
  order = np.random.default_rng(0).permutation(len(items))
  out, start = {}, 0
  names = list(sizes)
  for name in names:
    stop = len(items) if name == names[-1] else start + sizes[name]
    out[name] = [items[i] for i in sorted(order[start:stop])]
    start = stop
  return out


def fixed_split(items, fractions=(0.6, 0.2)):
  """train/validation/test by (train, validation) fractions, train taken first (the
  published datasets without official splits)."""
  n_train, n_val = (int(round(f * len(items))) for f in fractions)
  return permuted_split(items, {"train": n_train, "validation": n_val, "test": None})


def fraction_split(items, fractions, root) -> dict:
  """train/validation/test by (validation, test) fractions, test taken first (users'
  folders); DatasetError when a split would be empty."""
  val, test = fractions
  n_test, n_val = int(round(test * len(items))), int(round(val * len(items)))
  if min(n_test, n_val, len(items) - n_test - n_val) < 1:
    raise DatasetError(f"{root}: {len(items)} images cannot be split into train, "
                       f"validation ({val}) and test ({test}) with one image each at "
                       "least (add images or change data.val_fraction/test_fraction)")
  return permuted_split(items, {"test": n_test, "validation": n_val, "train": None})


def folder_config(manual_dir: str, fractions, image_size=None) -> FolderConfig:
  """The builder config of a user's folder, named by its content (every file's name,
  size and modification time) and its options (split fractions, image size)."""
  fractions = tuple(fractions)
  image_size = tuple(image_size) if image_size else None
  key = (fractions,) + ((image_size,) if image_size else ())
  root = os.path.abspath(os.path.expanduser(manual_dir))
  digest = hashlib.sha256(repr(key).encode())
  for folder, _, names in sorted(os.walk(root)):
    for name in sorted(names):
      stat = os.stat(os.path.join(folder, name))
      digest.update(f"{os.path.relpath(os.path.join(folder, name), root)}:{stat.st_size}:"
                    f"{stat.st_mtime_ns}\n".encode())
  return FolderConfig(name=digest.hexdigest()[:16], description=f"{root} {key}",
                      fractions=fractions, image_size=image_size)


# The split folders a user's folder may hold instead of one pool split by fractions.
SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "validation"),
                 "test": ("test",)}


def split_folders(root: str, layout: str) -> dict[str, str] | None:
  """{split: folder} when `root` holds split folders (all three), None when it holds
  none; DatasetError naming the missing ones otherwise. `layout`: what a folder without
  splits holds instead, for the message."""
  found = {split: next((os.path.join(root, n) for n in names
                        if os.path.isdir(os.path.join(root, n))), None)
           for split, names in SPLIT_FOLDERS.items()}
  if not any(found.values()):
    return None
  missing = [s for s, r in found.items() if r is None]
  if missing:
    raise DatasetError(f"{root}: has split folders but none for {missing} (give train/, "
                       f"val/ and test/, or {layout} split by data.val_fraction and "
                       "data.test_fraction)")
  return found
