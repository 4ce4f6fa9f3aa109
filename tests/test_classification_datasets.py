"""TFDS builders: exact round trips of fixtures in the raw formats, splits, errors."""

import gzip
import os
import time

import numpy as np
import pytest

import fixtures
from renet_jax.data import classification_datasets, raw, registry
from renet_jax.data.raw import DatasetError

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


def load(name, **kwargs):
  return registry.prepare(name, **kwargs)[0]


def _by_index(split):
  return {int(ex["index"]): ex for ex in split}


def test_mnist_round_trip(tmp_path, monkeypatch):
  # 50 train / 10 validation
  monkeypatch.setattr(classification_datasets.Mnist, "NUM_TRAIN", 50)
  raw = fixtures.mnist(tmp_path / "raw")
  sources = load("mnist", data_dir=str(tmp_path / "prepared"),
                          manual_dir=str(tmp_path / "raw"))
  assert {k: len(v) for k, v in sources.items()} == {"train": 50, "validation": 10,
                                                     "test": 10}
  for split, images, labels, offset in (("train", "train_images", "train_labels", 0),
                                        ("validation", "train_images", "train_labels", 50),
                                        ("test", "test_images", "test_labels", 0)):
    examples = _by_index(sources[split])
    for i, ex in examples.items():
      np.testing.assert_array_equal(ex["image"][..., 0], raw[images][i])
      assert ex["label"] == raw[labels][i]
    assert sorted(examples) == list(range(offset, offset + len(examples)))


def test_mnist_missing_folder_names_the_fix(tmp_path):
  with pytest.raises(DatasetError, match=r"mnist: the manual folder .*nowhere does "
                     r"not exist. Put the four MNIST files"):
    load("mnist", data_dir=str(tmp_path / "p"), manual_dir=str(tmp_path / "nowhere"))
  os.makedirs(tmp_path / "raw")
  with pytest.raises(DatasetError, match=r"mnist: the manual folder .*raw lacks "
                     r"\['train-images-idx3-ubyte.gz'.*Expected layout.*pass it as "
                     r"data.manual_dir"):
    load("mnist", data_dir=str(tmp_path / "p"), manual_dir=str(tmp_path / "raw"))


def test_mnist_corrupt_files_are_reported(tmp_path, monkeypatch):
  monkeypatch.setattr(classification_datasets.Mnist, "NUM_TRAIN", 50)
  fixtures.mnist(tmp_path / "raw")
  path = tmp_path / "raw" / "t10k-images-idx3-ubyte.gz"
  with gzip.open(path, "rb") as f:
    data = f.read()
  with gzip.open(path, "wb") as f:
    f.write(data[:-100])
  with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: header says "
                     r"shape \(10, 28, 28\).*truncated or corrupt"):
    load("mnist", data_dir=str(tmp_path / "p"), manual_dir=str(tmp_path / "raw"))


def test_mnist_label_out_of_range_is_reported(tmp_path, monkeypatch):
  monkeypatch.setattr(classification_datasets.Mnist, "NUM_TRAIN", 50)
  raw = fixtures.mnist(tmp_path / "raw")
  labels = raw["test_labels"].copy()
  labels[3] = 12
  fixtures.write_idx(tmp_path / "raw" / "t10k-labels-idx1-ubyte.gz", labels)
  with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: label 12 at "
                     r"index 3 is out of range 0..9"):
    load("mnist", data_dir=str(tmp_path / "p"), manual_dir=str(tmp_path / "raw"))


def test_read_idx_rejects_other_files(tmp_path):
  path = tmp_path / "x.gz"
  with gzip.open(path, "wb") as f:
    f.write(b"PK\x03\x04 not idx")
  with pytest.raises(DatasetError, match="bad magic number"):
    classification_datasets.read_idx(path)


def test_digits_splits_and_labels(tmp_path):
  sources = load("digits", data_dir=str(tmp_path))
  assert {k: len(v) for k, v in sources.items()} == {"train": 1197, "validation": 300,
                                                     "test": 300}
  images, labels = classification_datasets.digits_arrays()
  seen = set()
  for split in sources.values():
    for i, ex in _by_index(split).items():
      np.testing.assert_array_equal(ex["image"], images[i])
      assert ex["label"] == labels[i] and 0 <= ex["label"] <= 9
      seen.add(i)
  assert seen == set(range(1797))  # the splits partition the dataset
  assert images.max() == 255 and images.dtype == np.uint8


def test_runs_started_together_prepare_a_dataset_once(tmp_path):
  """Two processes preparing the same dataset into one data_dir at once (a sweep's runs)
  both get it: the second waits for the first's lock, then reuses its files."""
  import subprocess
  import sys
  code = ("import sys; from renet_jax.data import registry; "
          "s, _ = registry.prepare('digits', data_dir=sys.argv[1]); print(len(s['train']))")
  procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
  assert [out.split()[-1] for out, _ in outs] == ["1197", "1197"]
  assert sorted(os.listdir(tmp_path / "digits")) == [".prepare.lock", "1.1.0"]


def test_unknown_dataset():
  with pytest.raises(DatasetError, match=r"Unknown dataset 'mnsit'"):
    load("mnsit")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(SHARED_MNIST),
                    reason="../shared/data/mnist is absent on this machine")
def test_shared_mnist_counts(shared_tfds):
  files = classification_datasets.Mnist.FILES
  train, test = (classification_datasets.read_idx(os.path.join(SHARED_MNIST, files[k]))
                 for k in ("train_labels", "test_labels"))
  assert (len(train), len(test)) == (60_000, 10_000)
  sources = load("mnist", data_dir=shared_tfds, manual_dir=SHARED_MNIST)
  assert {k: len(v) for k, v in sources.items()} == {"train": 50_000, "validation": 10_000,
                                                     "test": 10_000}


def test_mnist_download_path(tmp_path, monkeypatch):
  """Without a manual folder the builder downloads the four files (network simulated by
  serving fixture files), and fails with the manual-folder advice when that fails."""
  import tensorflow_datasets as tfds
  monkeypatch.setattr(classification_datasets.Mnist, "NUM_TRAIN", 50)
  fixtures.mnist(tmp_path / "served")
  requested = []

  def fake_download(self, urls):
    requested.extend(urls.values())
    return {k: str(tmp_path / "served" / os.path.basename(u)) for k, u in urls.items()}

  monkeypatch.setattr(tfds.download.DownloadManager, "download", fake_download)
  monkeypatch.setattr(raw, "unreachable_host", lambda urls: None)  # "online"
  sources = load("mnist", data_dir=str(tmp_path / "p"))
  assert len(sources["test"]) == 10
  assert sorted(requested) == sorted(classification_datasets.Mnist.URL + f
                                     for f in classification_datasets.Mnist.FILES.values())

  def no_network(self, urls):
    raise ConnectionError("Name or service not known")

  monkeypatch.setattr(tfds.download.DownloadManager, "download", no_network)
  with pytest.raises(DatasetError, match=r"no manual folder was given and the "
                     r"download .* failed \(ConnectionError"):
    load("mnist", data_dir=str(tmp_path / "p2"))


def test_an_unreachable_download_host_fails_at_once(tmp_path, monkeypatch):
  """Offline, the download is not attempted (TFDS would retry for minutes): one
  DatasetError naming the host and the manual folder to give instead."""
  import tensorflow_datasets as tfds
  monkeypatch.setattr(classification_datasets.Mnist, "URL", "https://mnist.invalid/")

  def fetch(self, urls):
    raise AssertionError("no download may be attempted")

  monkeypatch.setattr(tfds.download.DownloadManager, "download", fetch)
  start = time.monotonic()
  with pytest.raises(DatasetError, match=r"mnist: no manual folder was given and the "
                     r"download host mnist.invalid cannot be reached \(offline\?\)\. "
                     r".*manual"):
    load("mnist", data_dir=str(tmp_path))
  assert time.monotonic() - start < 30


@pytest.mark.parametrize("layout", ["python_tar_gz", "image_tree", "image_tree_tar_gz"])
def test_cifar10_round_trip(tmp_path, monkeypatch, layout):
  import io
  import tarfile
  from PIL import Image
  monkeypatch.setattr(classification_datasets.Cifar10, "NUM_VALIDATION", 4)
  rng = np.random.default_rng(0)
  batches = fixtures.cifar_batches(rng)
  raw = tmp_path / "raw"
  os.makedirs(raw)
  train_images = np.concatenate([batches[f"data_batch_{k}"][0] for k in range(1, 6)])
  train_labels = np.concatenate([batches[f"data_batch_{k}"][1] for k in range(1, 6)])
  test_images, test_labels = batches["test_batch"]
  if layout == "python_tar_gz":
    fixtures.cifar_python_tar_gz(raw / "cifar-10-python.tar.gz", batches)
  else:
    files = {}
    for split, images, labels in (("train", train_images, train_labels),
                                  ("test", test_images, test_labels)):
      for i, (image, label) in enumerate(zip(images, labels)):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        name = classification_datasets.CIFAR10_CLASSES[label]
        files[f"{split}/{name}/{i:05d}.png"] = buf.getvalue()
    if layout == "image_tree":
      for rel, data in files.items():
        os.makedirs(os.path.dirname(raw / rel), exist_ok=True)
        (raw / rel).write_bytes(data)
    else:
      with tarfile.open(raw / "cifar10_png.tar.gz", "w:gz") as tar:
        for rel, data in files.items():
          info = tarfile.TarInfo("./" + rel)
          info.size = len(data)
          tar.addfile(info, io.BytesIO(data))
  sources = load("cifar10", data_dir=str(tmp_path / "p"), manual_dir=str(raw))
  assert {k: len(v) for k, v in sources.items()} == {"train": 16, "validation": 4, "test": 4}
  got_test = sorted((ex["image"].tobytes(), int(ex["label"])) for ex in sources["test"])
  assert got_test == sorted((im.tobytes(), int(l)) for im, l in zip(test_images, test_labels))
  got_train = sorted((ex["image"].tobytes(), int(ex["label"]))
                     for split in ("train", "validation") for ex in sources[split])
  assert got_train == sorted((im.tobytes(), int(l)) for im, l in zip(train_images,
                                                                      train_labels))
  if layout == "python_tar_gz":  # the official validation split is data_batch_5
    val = sorted(ex["image"].tobytes() for ex in sources["validation"])
    assert val == sorted(im.tobytes() for im in batches["data_batch_5"][0])


def test_cifar10_errors(tmp_path):
  os.makedirs(tmp_path / "raw")
  with pytest.raises(DatasetError, match=r"holds none of cifar-10-python.tar.gz"):
    load("cifar10", data_dir=str(tmp_path / "p"), manual_dir=str(tmp_path / "raw"))
  os.makedirs(tmp_path / "raw" / "train" / "zebra")
  from PIL import Image
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "raw/train/zebra/0.png")
  with pytest.raises(DatasetError, match=r"unknown class folder 'zebra'"):
    load("cifar10", data_dir=str(tmp_path / "p"), manual_dir=str(tmp_path / "raw"))


def test_svhn_round_trip(tmp_path, monkeypatch):
  from scipy.io import savemat
  monkeypatch.setattr(classification_datasets.SvhnCropped, "NUM_VALIDATION", 3)
  rng = np.random.default_rng(0)
  raw = {}
  for key, n in (("train", 6), ("test", 4), ("extra", 5)):
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(1, 11, n)  # 10 stands for the digit 0
    savemat(tmp_path / classification_datasets.SvhnCropped.FILES[key],
            {"X": images.transpose(1, 2, 3, 0), "y": labels[:, None]})
    raw[key] = (images, labels % 10)
  sources = load("svhn_cropped", data_dir=str(tmp_path / "p"),
                          manual_dir=str(tmp_path))
  assert {k: len(v) for k, v in sources.items()} == {"train": 8, "validation": 3, "test": 4}
  key = lambda im, l: (im.tobytes(), int(l))
  want = sorted(key(*p) for k in ("train", "extra") for p in zip(*raw[k]))
  got = sorted(key(ex["image"], ex["label"]) for s in ("train", "validation")
               for ex in sources[s])
  assert got == want
  assert sorted(key(ex["image"], ex["label"]) for ex in sources["test"]) == sorted(
      key(*p) for p in zip(*raw["test"]))


def test_image_folder_fraction_split_resizes_and_names_classes(tmp_path):
  fixtures.image_folder(tmp_path / "mine", per_class=10)
  sources, folder = registry.prepare("image_folder", data_dir=str(tmp_path / "tfds"),
                                     manual_dir=str(tmp_path / "mine"), fractions=(0.1, 0.2),
                                     image_size=(16, 24))
  assert {k: len(v) for k, v in sources.items()} == {"train": 21, "validation": 3, "test": 6}
  assert registry.class_names("image_folder", folder) == ("cat", "dog", "owl")
  labels = []
  for split in sources.values():
    for ex in (split[i] for i in range(len(split))):
      assert ex["image"].shape == (16, 24, 3)
      # The class is the image's dominant channel (the fixture's construction).
      assert int(np.argmax(ex["image"].reshape(-1, 3).mean(0))) == ex["label"]
      labels.append(int(ex["label"]))
  assert sorted(set(labels)) == [0, 1, 2] and len(labels) == 30


def test_image_folder_split_folders(tmp_path):
  fixtures.image_folder(tmp_path / "mine", per_class=4, split_folders=True)
  sources, _ = registry.prepare("image_folder", data_dir=str(tmp_path / "tfds"),
                                manual_dir=str(tmp_path / "mine"), image_size=(8, 8))
  assert {k: len(v) for k, v in sources.items()} == {"train": 12, "validation": 6, "test": 6}
