"""Video segmentation datasets as TFDS builders: clips of frames with per-pixel labels.

Examples: {"image": uint8 (T, H, W, C), "label": uint8 (T, H, W), "occluded": uint8
(T, H, W) (1 where an occluder hides the scene; all 0 for real videos),
"frame_numbers": int64 (T,) (the frames' numbers in their source video),
"frame_spacing": int (source frames between consecutive clip frames, one value per
dataset, checked per clip), "index": int}. Each builder's `INFO` is a
`SegmentationInfo` (class names, void label, palette).
"""

import collections
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from renet_jax.data import classification_datasets
from renet_jax.data.raw import (DatasetError, RawFilesBuilder, check_labels, manual_folder,
                                read_image)
from renet_jax.data.segmentation_datasets import (Camvid, CAMVID_CLASSES, CAMVID_PALETTE,
                                                  DIGIT_BACKGROUND, DIGIT_CLASSES, DIGIT_INK,
                                                  SegmentationInfo, camvid_pairs)


class _VideoSegmentation(RawFilesBuilder, skip_registration=True):
  """Shared body: subclasses give CHANNELS, INFO, FRAME_SPACING and `_read_splits()`
  returning {split: iterable of (index, frames, labels, occluded, frame_numbers, where)}."""
  VERSION = tfds.core.Version("1.0.0")
  CHANNELS = 3
  INFO: SegmentationInfo
  FRAME_SPACING: int = 1
  SPACING_TOLERANCE: int = 0  # frame-number jitter accepted around FRAME_SPACING

  def _info(self):
    zlib = tfds.features.Encoding.ZLIB
    tensor = lambda shape: tfds.features.Tensor(shape=shape, dtype=np.uint8, encoding=zlib)
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tensor((None, None, None, self.CHANNELS)),
            "label": tensor((None, None, None)), "occluded": tensor((None, None, None)),
            "frame_numbers": tfds.features.Tensor(shape=(None,), dtype=np.int64),
            "frame_spacing": tfds.features.Scalar(dtype=np.int64),
            "index": tfds.features.Scalar(dtype=np.int64)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(items)
            for name, items in self._read_splits().items()}

  def _generate_examples(self, items):
    top = max(self.INFO.num_classes - 1, self.INFO.void or 0)
    for index, frames, labels, occluded, numbers, where in items:
      if frames.shape[:3] != labels.shape:
        raise DatasetError(f"{where}: frames {frames.shape[:3]} and labels {labels.shape} "
                           "sizes differ.")
      check_labels(labels, top + 1, where)
      gaps = np.diff(numbers)
      if np.any(np.abs(gaps - self.FRAME_SPACING) > self.SPACING_TOLERANCE):
        raise DatasetError(f"{where}: frames {list(numbers)} are not "
                           f"{self.FRAME_SPACING} apart; every clip of this dataset must be.")
      yield index, {"image": frames, "label": labels, "occluded": occluded,
                    "frame_numbers": np.asarray(numbers, np.int64),
                    "frame_spacing": self.FRAME_SPACING, "index": index}


# One colour per digit class (background black), for the clips and their panels: far
# apart in RGB from each other and from the cards' grey.
DIGIT_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255),
                 (0, 255, 255), (255, 255, 255), (255, 128, 0), (128, 0, 255), (0, 128, 64))


class MovingDigitsSeg(_VideoSegmentation, skip_registration=True):
  """Embedded offline video set where memory is needed: clips of 10 RGB frames of 32x32
  holding 3 still scikit-learn digits (8x8, anywhere; where two overlap the stronger ink
  wins) and, from the second frame on, 2 uniform grey 12x12 cards sliding over them at
  2-3 pixels a frame along each axis and bouncing off the borders. Every inked pixel
  (> 25% intensity) is labelled with its digit and drawn in that class's colour of
  DIGIT_COLOURS, the rest is background (10) and black; labels are given under the
  cards too (`occluded` marks the cards).
  A frame alone cannot tell what a card hides; the frames before it can, since the
  digits do not move (the name is from 1.x, where they did: there recognising small grey
  digits, not memory, was what the networks struggled with). Deterministic; 1000 / 100
  / 100 clips built from the digits train / validation / test splits."""
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"2.0.0": "RGB clips: 3 still class-coloured digits, 2 moving grey "
                            "cards from frame 1 on; 1000 / 100 / 100 clips.",
                   "1.1.0": "frame_numbers and frame_spacing stored with each clip."}
  CHANNELS = 3
  INFO = SegmentationInfo(DIGIT_CLASSES, void=None, palette=DIGIT_COLOURS + ((0, 0, 0),))
  SIZES = {"train": 1000, "validation": 100, "test": 100}
  FRAMES, SIZE, DIGIT = 10, 32, 8
  NUM_DIGITS, NUM_CARDS, CARD, CARD_GREY = 3, 2, 12, 128
  CARD_SPEEDS = (-3, -2, 2, 3)  # pixels per frame along each axis

  def _read_splits(self):
    images, labels = classification_datasets.digits_arrays()
    splits = classification_datasets.DIGITS_SPLITS
    return {split: self._clips(images[a:b], labels[a:b], self.SIZES[split], seed)
            for seed, (split, (a, b)) in enumerate(splits.items())}

  def _clips(self, images, labels, count, seed):
    rng = np.random.default_rng(100 + seed)
    t_len, size, d, card = self.FRAMES, self.SIZE, self.DIGIT, self.CARD
    colours = np.asarray(DIGIT_COLOURS, np.uint8)
    for n in range(count):
      picks = rng.integers(0, len(labels), self.NUM_DIGITS)
      ink = np.zeros((size, size), np.uint8)
      owner = np.zeros((size, size), np.int64)
      for y, x, pick in zip(*rng.integers(0, size - d + 1, (2, self.NUM_DIGITS)), picks):
        digit = images[pick][..., 0]
        stronger = digit > ink[y:y + d, x:x + d]
        ink[y:y + d, x:x + d][stronger] = digit[stronger]
        owner[y:y + d, x:x + d][stronger] = labels[pick]
      inked = ink > DIGIT_INK
      label = np.where(inked, owner, DIGIT_BACKGROUND).astype(np.uint8)
      scene = np.where(inked[..., None], colours[owner], 0).astype(np.uint8)
      pos = rng.integers(0, size - card + 1, (self.NUM_CARDS, 2))
      vel = rng.choice(self.CARD_SPEEDS, (self.NUM_CARDS, 2))
      frames = np.repeat(scene[None], t_len, axis=0)
      occluded = np.zeros((t_len, size, size), np.uint8)
      for t in range(1, t_len):
        for y, x in pos:
          frames[t, y:y + card, x:x + card] = self.CARD_GREY
          occluded[t, y:y + card, x:x + card] = 1
        pos, vel = bounce(pos + vel, vel, size - card)
      yield (n, frames, np.repeat(label[None], t_len, axis=0), occluded, np.arange(t_len),
             f"moving_digits_seg clip {n}")


def bounce(pos: np.ndarray, vel: np.ndarray, high: int):
  """Positions moved past 0 or `high` reflected back inside, and their velocity turned
  around along that axis: (pos, vel)."""
  low_side, high_side = pos < 0, pos > high
  pos = np.where(low_side, -pos, np.where(high_side, 2 * high - pos, pos))
  return pos, np.where(low_side | high_side, -vel, vel)


class CamvidVideo(_VideoSegmentation, skip_registration=True):
  """CamVid's annotated frames (the `camvid` folder, split lists and labels) as clips of
  CLIP_FRAMES annotated frames of one sequence (file-name prefix 0001TP, 0006R0, 0016E5,
  Seq05VD) taken FRAME_SPACING = 30 source frames apart: one second at CamVid's 30 fps,
  so a clip spans 4 s of driving, not video rate. The train and test lists are annotated
  every 30 frames (0016E5's numbering jitters by one in two places; a gap of 270 or
  1950 frames ends a clip); the validation sequence every 2, so its clips take every
  15th frame (interleaved clips, each frame in one). Frames no clip can use are left
  out. 11 classes, void 11."""
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"2.0.0": "Clips of frames 30 apart (1 s) in every split; frame_numbers "
                            "and frame_spacing stored.",
                   "1.0.0": "Consecutive annotated frames (30 apart in train and test, 2 "
                            "in validation)."}
  INFO = SegmentationInfo(CAMVID_CLASSES, void=11, palette=CAMVID_PALETTE)
  MANUAL_DOWNLOAD_INSTRUCTIONS = Camvid.MANUAL_DOWNLOAD_INSTRUCTIONS
  CLIP_FRAMES = 5
  FRAME_SPACING = 30
  SPACING_TOLERANCE = 1

  def _read_splits(self):
    root = manual_folder(self, "CamvidVideo", required=True)
    return {split: self._clips(root, list_name)
            for split, list_name in (("train", "train.txt"), ("validation", "val.txt"),
                                     ("test", "test.txt"))}

  def _clips(self, root, list_name):
    clips = camvid_clips(camvid_pairs(root, list_name), self.CLIP_FRAMES,
                         self.FRAME_SPACING, self.SPACING_TOLERANCE)
    if not clips:
      raise DatasetError(f"CamvidVideo: {os.path.join(root, list_name)} has no run of "
                         f"{self.CLIP_FRAMES} frames of one sequence {self.FRAME_SPACING} "
                         "frames apart; is it CamVid's list?")
    for n, members in enumerate(clips):
      frames, labels = [], []
      for _, (image, label, where) in members:
        frames.append(read_image(image))
        labels.append(read_image(label, mode=None))
        if labels[-1].shape != frames[0].shape[:2] or frames[-1].shape != frames[0].shape:
          raise DatasetError(
              f"{where}: the clip's frames and labels differ in size ({label} is "
              f"{labels[-1].shape}, {members[0][1][0]} {frames[0].shape[:2]}); every frame "
              "of a sequence and its label must have one size.")
      frames, labels = np.stack(frames), np.stack(labels)
      yield (n, frames, labels, np.zeros(labels.shape, np.uint8),
             np.array([number for number, _ in members]),
             f"{list_name} clip {n} ({os.path.basename(members[0][1][0])}..)")


def camvid_clips(pairs, clip_frames: int, spacing: int, tolerance: int = 0) -> list[list]:
  """`pairs` (image, label, where) grouped by sequence (the file-name prefix before the
  first "_"), chained in frame-number order (the digits after it) through frames
  `spacing` +- `tolerance` apart, each chain cut into clips of `clip_frames`
  [(frame number, pair), ...]; a frame is in at most one clip."""
  sequences = collections.defaultdict(dict)
  for pair in pairs:
    name = os.path.splitext(os.path.basename(pair[0]))[0]
    prefix, _, rest = name.partition("_")
    number = re.sub(r"\D", "", rest)
    if not number:
      raise DatasetError(f"{pair[2]}: {name} is not a CamVid frame name "
                         "(<sequence>_<frame number>).")
    sequences[prefix][int(number)] = pair
  clips = []
  for prefix in sorted(sequences):
    frames, used = sequences[prefix], set()
    for start in sorted(frames):
      if start in used:
        continue
      chain = [start]
      while True:
        near = [chain[-1] + spacing + d for d in sorted(range(-tolerance, tolerance + 1),
                                                        key=abs)]
        following = [n for n in near if n in frames and n not in used]
        if not following:
          break
        chain.append(following[0])
      used.update(chain)
      clips += [[(n, frames[n]) for n in chain[i:i + clip_frames]]
                for i in range(0, len(chain) - clip_frames + 1, clip_frames)]
  return clips


class ClipWindows:
  """A random-access source of clips cut into consecutive windows of `frames` frames
  (the stored clips' remainder dropped): window i is frames [k*frames, (k+1)*frames) of
  stored clip i // per_clip, k = i % per_clip; every per-frame array is cut alike."""
  PER_FRAME = ("image", "label", "occluded", "frame_numbers")

  def __init__(self, source, frames: int, stored: int):
    self.source, self.frames, self.per_clip = source, frames, stored // frames

  def __len__(self):
    return len(self.source) * self.per_clip

  def __getitem__(self, i):
    clip, k = divmod(int(i), self.per_clip)
    window = slice(k * self.frames, (k + 1) * self.frames)
    example = self.source[clip]
    return {key: value[window] if key in self.PER_FRAME else value
            for key, value in example.items()}


BUILDERS = {"moving_digits_seg": MovingDigitsSeg, "camvid_video": CamvidVideo}
