"""Every dataset by name, and `prepare`, the one way to get one.

  sources, folder = prepare("mnist", data_dir="~/tfds", manual_dir="~/raw/mnist")
  sources["train"][0]  # {"image": uint8 (28, 28, 1), "label": int, "index": int}

The builders are imported here explicitly (no registration by import side effect):
`renet_jax.data.classification_datasets`, `segmentation_datasets` and `video_datasets`.
"""

import contextlib
import dataclasses
import fcntl
import io
import logging as std_logging
import os
import sys
from typing import Mapping, Sequence

from absl import logging

from renet_jax import files, parallel
from renet_jax.data import classification_datasets, raw, segmentation_datasets, video_datasets
from renet_jax.data.raw import DatasetError
from renet_jax.data.segmentation_datasets import SegmentationInfo

CLASSIFICATION = tuple(classification_datasets.BUILDERS)
SEGMENTATION = tuple(segmentation_datasets.BUILDERS)
VIDEO = tuple(video_datasets.BUILDERS)  # video segmentation: clips of frames
BUILDERS = {**classification_datasets.BUILDERS, **segmentation_datasets.BUILDERS,
            **video_datasets.BUILDERS}


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None,
            fractions: tuple[float, float] = (0.1, 0.1), image_size=None
            ) -> tuple[Mapping[str, Sequence], str]:
  """Prepares dataset `name` once (cached under data_dir; default: the TFDS default) from
  the raw files in manual_dir (downloaded where public when it is not given). Returns
  ({split: random-access examples}, folder of the prepared dataset); the folder also
  holds statistics fitted on it (`renet_jax.data.preprocess`). `fractions`: the
  (validation, test) shares of a user folder without split folders; `image_size`: the
  (H, W) a user's classification folder is stored at."""
  if name not in BUILDERS:
    raise DatasetError(f"Unknown dataset {name!r}; choose one of {sorted(BUILDERS)}.")
  kwargs = {"file_format": "array_record"}
  if data_dir:
    kwargs["data_dir"] = os.path.expanduser(data_dir)
  if is_user_folder(name):  # one cache per folder content
    if not manual_dir or not os.path.isdir(os.path.expanduser(manual_dir)):
      raise DatasetError(f"{name}: data.manual_dir={manual_dir!r} is not a folder. "
                         f"{BUILDERS[name].MANUAL_DOWNLOAD_INSTRUCTIONS}")
    kwargs["config"] = BUILDERS[name].config_for(manual_dir, fractions, image_size)
  # <root>/<name>, or <root>/<name>/<content key> for a user folder
  folder = os.path.dirname(os.fspath(BUILDERS[name](**kwargs).data_dir))
  dataset_folder = os.path.dirname(folder) if is_user_folder(name) else folder
  root = os.path.dirname(dataset_folder)
  # What this call creates, removed again if preparing fails: bad data writes nothing.
  created = [d for d in (folder, dataset_folder, root,
                         os.path.join(root, "downloads"),
                         os.path.join(root, "downloads", "extracted"))
             if not os.path.exists(d)]
  os.makedirs(folder, exist_ok=True)
  try:
    builder = _prepare_locked(name, kwargs, folder, data_dir, manual_dir)
  except BaseException:
    lock = os.path.join(folder, LOCK_FILE)
    if os.listdir(folder) == [LOCK_FILE]:
      os.remove(lock)
    for d in sorted(created, key=len, reverse=True):  # deepest first, if left empty
      if os.path.isdir(d) and not os.listdir(d):
        os.rmdir(d)
    raise
  return builder.as_data_source(), os.fspath(builder.data_dir)


INFO_FILE = "folder_classes.json"  # a user folder's classes, beside its prepared data
LOCK_FILE = ".prepare.lock"



def _prepare_locked(name, kwargs, folder, data_dir, manual_dir):
  """Builds (once) and returns the builder of `name` under the folder's file lock, so
  that runs started together (a sweep's) prepare it once; the builder is made inside
  it, as it reads what is on disk when constructed."""
  with parallel.process_zero_first(f"prepare {name} in {data_dir}"), \
      open(os.path.join(folder, LOCK_FILE), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    builder = BUILDERS[name](raw_dir=manual_dir, **kwargs)
    _quiet_prepare(builder)
    info_path = os.path.join(os.fspath(builder.data_dir), INFO_FILE)
    if not os.path.exists(info_path):  # a user folder's classes, kept with its data
      if name in SEGMENTATION and BUILDERS[name].INFO is None:
        files.write_json(info_path, dataclasses.asdict(
            segmentation_datasets.folder_info(builder.raw_dir)))
      if name in CLASSIFICATION and BUILDERS[name].CLASS_NAMES is None:
        splits = raw.split_folders(builder.raw_dir, "class folders at the top")
        files.write_json(info_path, {"class_names": list(
            classification_datasets.class_folder_names(
                splits["train"] if splits else builder.raw_dir))})
  return builder



def is_user_folder(name: str) -> bool:
  """Whether dataset `name` is a user's own folder (prepared once per folder content)."""
  return hasattr(BUILDERS.get(name), "config_for")  # its config: raw.folder_config


def class_names(name: str, folder: str) -> tuple[str, ...]:
  """The class names of classification dataset `name` (a user folder's: read from its
  prepared `folder`)."""
  if BUILDERS[name].CLASS_NAMES is None:
    return tuple(files.read_json(os.path.join(folder, INFO_FILE))["class_names"])
  return tuple(BUILDERS[name].CLASS_NAMES)


def _not_custom_config_notice(record) -> bool:
  """TFDS warns "Using custom data configuration" for every user-folder builder (its
  config names the folder's content, so it is never predeclared): not news to a user."""
  return "Using custom data configuration" not in record.getMessage()


std_logging.getLogger("absl").addFilter(_not_custom_config_notice)


def _quiet_prepare(builder):
  """`download_and_prepare` with TFDS's progress bars only on a terminal and its
  messages logged at INFO, so that a DatasetError is the one line a user sees."""
  import tensorflow_datasets as tfds
  tfds.display_progress_bar(sys.stderr.isatty())
  said = io.StringIO()
  with contextlib.redirect_stdout(said):
    builder.download_and_prepare()
  if said.getvalue().strip():
    logging.info("%s", said.getvalue().strip())


def segmentation_info(name: str, folder: str | None = None) -> SegmentationInfo:
  """Class names, void label and palette of (video) segmentation dataset `name` (a user
  folder's: read from its prepared `folder`)."""
  if name not in SEGMENTATION + VIDEO:
    raise DatasetError(f"{name!r} is not a segmentation dataset; choose one of "
                       f"{SEGMENTATION + VIDEO}.")
  if BUILDERS[name].INFO is None:
    saved = files.read_json(os.path.join(folder, INFO_FILE))
    return SegmentationInfo(tuple(saved["class_names"]), saved["void"],
                            tuple(map(tuple, saved["palette"])) if saved["palette"] else None)
  return BUILDERS[name].INFO
