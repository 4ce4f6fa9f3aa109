"""Reading the raw files users have: the error every reader raises, the manual folder,
downloads, images, and fixed splits for datasets that have none."""

import hashlib
import os
import socket
import urllib.parse

import numpy as np

from renet_jax.errors import DatasetError  # raised by every reader


def manual_folder(builder, name: str, required: bool) -> str | None:
  """The folder `prepare` was given for `builder` (None if none and not `required`);
  a missing folder is an error that says where to get the files."""
  manual = getattr(builder, "raw_dir", None)
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


def fixed_split(items, fractions=(0.6, 0.2)):
  """train/validation/test from a fixed permutation (datasets without official splits)."""
  order = np.random.default_rng(0).permutation(len(items))
  n_train = int(round(fractions[0] * len(items)))
  n_val = int(round(fractions[1] * len(items)))
  pick = lambda idx: [items[i] for i in sorted(idx)]
  return {"train": pick(order[:n_train]), "validation": pick(order[n_train:n_train + n_val]),
          "test": pick(order[n_train + n_val:])}


def folder_config(manual_dir: str, key):
  """A TFDS builder config named by the content of a user's folder (every file's name,
  size and modification time) and `key` (split fractions, image size): its cache key."""
  import tensorflow_datasets as tfds
  root = os.path.abspath(os.path.expanduser(manual_dir))
  digest = hashlib.sha256(repr(key).encode())
  for folder, _, names in sorted(os.walk(root)):
    for name in sorted(names):
      stat = os.stat(os.path.join(folder, name))
      digest.update(f"{os.path.relpath(os.path.join(folder, name), root)}:{stat.st_size}:"
                    f"{stat.st_mtime_ns}\n".encode())
  return tfds.core.BuilderConfig(name=digest.hexdigest()[:16], description=f"{root} {key}")


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
