"""Video segmentation datasets as TFDS builders: clips of frames with per-pixel labels.

Examples: {"image": uint8 (T, H, W, C), "label": uint8 (T, H, W), "occluded": uint8
(T, H, W) (1 where an occluder hides the scene; all 0 for real videos), "index": int}.
Each builder's `INFO` is a `SegmentationInfo` (class names, void label, palette).
"""

import collections
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from renet_jax.data import classification_datasets
from renet_jax.data.raw import DatasetError, manual_folder, read_image
from renet_jax.data.segmentation_datasets import (CAMVID_CLASSES, CAMVID_PALETTE, Camvid,
                                                  SegmentationInfo, camvid_pairs)


class _VideoSegmentation(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared body: subclasses give CHANNELS, INFO and `_read_splits()` returning
  {split: iterable of (index, frames, labels, occluded, where)}."""
  VERSION = tfds.core.Version("1.0.0")
  CHANNELS = 3
  INFO: SegmentationInfo

  def _info(self):
    zlib = tfds.features.Encoding.ZLIB
    tensor = lambda shape: tfds.features.Tensor(shape=shape, dtype=np.uint8, encoding=zlib)
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tensor((None, None, None, self.CHANNELS)),
            "label": tensor((None, None, None)), "occluded": tensor((None, None, None)),
            "index": tfds.features.Scalar(dtype=np.int64)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(items)
            for name, items in self._read_splits().items()}

  def _generate_examples(self, items):
    top = max(self.INFO.num_classes - 1, self.INFO.void or 0)
    for index, frames, labels, occluded, where in items:
      if frames.shape[:3] != labels.shape:
        raise DatasetError(f"{where}: frames {frames.shape[:3]} and labels {labels.shape} "
                           "sizes differ.")
      if labels.max() > top:
        raise DatasetError(f"{where}: label {int(labels.max())} is out of range 0..{top}.")
      yield index, {"image": frames, "label": labels, "occluded": occluded, "index": index}


class MovingDigitsSeg(_VideoSegmentation, skip_registration=True):
  """Embedded offline video set: clips of 10 frames of 32x32 in which 2-3 scikit-learn
  digits (8x8) move at constant integer velocity and bounce off the borders. Every inked
  pixel (> 25% intensity) is labelled with its digit (a later digit over an earlier
  one), the rest background (10). Memory matters: in every clip one digit is hidden for
  3 consecutive frames (among frames 3..8) under a 12x12 square of uniform noise that
  follows it, while its label is still given there (`occluded` marks the square).
  Deterministic; 300 / 50 / 50 clips built from the digits train / validation / test
  splits."""
  CHANNELS = 1
  INFO = SegmentationInfo(tuple(str(d) for d in range(10)) + ("background",), void=None)
  SIZES = {"train": 300, "validation": 50, "test": 50}
  FRAMES, SIZE, DIGIT = 10, 32, 8
  HIDDEN_FRAMES = 3

  def _read_splits(self):
    images, labels = classification_datasets.digits_arrays()
    splits = classification_datasets.DIGITS_SPLITS
    return {split: self._clips(images[a:b], labels[a:b], self.SIZES[split], seed)
            for seed, (split, (a, b)) in enumerate(splits.items())}

  def _clips(self, images, labels, count, seed):
    rng = np.random.default_rng(100 + seed)
    t_len, size, d = self.FRAMES, self.SIZE, self.DIGIT
    for n in range(count):
      k = rng.integers(2, 4)
      picks = rng.integers(0, len(labels), k)
      pos = rng.integers(0, size - d + 1, (k, 2))
      vel = rng.choice([-2, -1, 1, 2], (k, 2))
      hidden, start = rng.integers(k), rng.integers(3, t_len - self.HIDDEN_FRAMES)
      frames = np.zeros((t_len, size, size, 1), np.uint8)
      label = np.full((t_len, size, size), 10, np.uint8)
      occluded = np.zeros((t_len, size, size), np.uint8)
      for t in range(t_len):
        for j in range(k):
          y, x = pos[j]
          ink = images[picks[j]][..., 0]
          frames[t, y:y + d, x:x + d, 0] = np.maximum(frames[t, y:y + d, x:x + d, 0], ink)
          label[t, y:y + d, x:x + d][ink > 64] = labels[picks[j]]
        if start <= t < start + self.HIDDEN_FRAMES:
          y, x = pos[hidden]
          y0, x0 = max(y - 2, 0), max(x - 2, 0)
          y1, x1 = min(y + d + 2, size), min(x + d + 2, size)
          frames[t, y0:y1, x0:x1, 0] = rng.integers(0, 256, (y1 - y0, x1 - x0))
          occluded[t, y0:y1, x0:x1] = 1
        # Constant velocity, bouncing off the borders.
        pos = pos + vel
        for axis in range(2):
          low, high = pos[:, axis] < 0, pos[:, axis] > size - d
          vel[low | high, axis] *= -1
          pos[low, axis] = -pos[low, axis]
          pos[high, axis] = 2 * (size - d) - pos[high, axis]
      yield n, frames, label, occluded, f"moving_digits_seg clip {n}"


class CamvidVideo(_VideoSegmentation, skip_registration=True):
  """CamVid's annotated frames (the `camvid` folder, split lists and labels) grouped into
  clips of CLIP_FRAMES consecutive annotated frames of one sequence (file-name prefix
  0001TP, 0006R0, 0016E5, Seq05VD), in frame-number order within each split; the frames
  left over at the end of a sequence are dropped. 11 classes, void 11."""
  INFO = SegmentationInfo(CAMVID_CLASSES, void=11, palette=CAMVID_PALETTE)
  MANUAL_DOWNLOAD_INSTRUCTIONS = Camvid.MANUAL_DOWNLOAD_INSTRUCTIONS
  CLIP_FRAMES = 5

  def _read_splits(self):
    root = manual_folder(self, "CamvidVideo", required=True)
    return {split: self._clips(root, list_name)
            for split, list_name in (("train", "train.txt"), ("validation", "val.txt"),
                                     ("test", "test.txt"))}

  def _clips(self, root, list_name):
    clips = camvid_clips(camvid_pairs(root, list_name), self.CLIP_FRAMES)
    if not clips:
      raise DatasetError(f"CamvidVideo: {os.path.join(root, list_name)} has no run of "
                         f"{self.CLIP_FRAMES} frames of one sequence; is it CamVid's list?")
    for n, members in enumerate(clips):
      frames = np.stack([read_image(image) for image, _, _ in members])
      labels = np.stack([read_image(label, mode=None) for _, label, _ in members])
      if labels.ndim != 3 or frames.shape[:3] != labels.shape:
        raise DatasetError(f"{members[0][2]}..: the clip's frames and labels differ in "
                           "size.")
      yield (n, frames, labels, np.zeros(labels.shape, np.uint8),
             f"{list_name} clip {n} ({os.path.basename(members[0][0])}..)")


def camvid_clips(pairs, clip_frames: int) -> list[list]:
  """`pairs` (image, label, where) grouped by sequence (the file-name prefix before the
  first "_"), each sorted by frame number (the digits after it), cut into consecutive
  clips of `clip_frames`."""
  sequences = collections.defaultdict(list)
  for pair in pairs:
    name = os.path.splitext(os.path.basename(pair[0]))[0]
    prefix, _, rest = name.partition("_")
    number = re.sub(r"\D", "", rest)
    if not number:
      raise DatasetError(f"{pair[2]}: {name} is not a CamVid frame name "
                         "(<sequence>_<frame number>).")
    sequences[prefix].append((int(number), pair))
  clips = []
  for prefix in sorted(sequences):
    ordered = [pair for _, pair in sorted(sequences[prefix], key=lambda item: item[0])]
    clips += [ordered[i:i + clip_frames]
              for i in range(0, len(ordered) - clip_frames + 1, clip_frames)]
  return clips


BUILDERS = {"moving_digits_seg": MovingDigitsSeg, "camvid_video": CamvidVideo}
