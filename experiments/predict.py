r"""Predictions of a trained run on your own images, chosen by the run's task.

  python -m experiments.predict --workdir=runs/digits --images='photos/*.png' --out=preds
  python -m experiments.predict --workdir=runs/digits_seg --images='photos/*.png' --out=preds
  python -m experiments.predict --workdir=runs/moving_digits --images='clip/*.png' --out=preds
  python -m experiments.predict --workdir=runs/moving_digits --images=clip.gif --out=preds

- classification runs: the --top_k classes of each image with their probabilities,
  printed and written to <out>/predictions.csv (path, then class and probability per
  rank);
- segmentation runs: for each image <out>/<name>_label.png (class index per pixel, 8-bit
  grey; the class names are in <workdir>/task.json) and <name>_overlay.png (the image
  blended with the class colours);
- video segmentation runs: the images, in file-name order, are the frames of one clip
  run through the recurrence in order (or --images names one video file: an animated
  GIF, or MP4/AVI/MOV/MKV/WebM with PyAV installed): <out>/<name>_label.png per frame
  (<video name>_<frame>_label.png) and <out>/overlay.gif (the overlaid frames).
"""

import csv
import glob
import os

from absl import app, flags
import numpy as np

from renet_jax import cli, pictures
from renet_jax.data.raw import read_image
from renet_jax.serving import inference

_WORKDIR = flags.DEFINE_string("workdir", None, "A run directory of experiments.classify, "
                               "segment or segment_video.")
_IMAGES = flags.DEFINE_string("images", None, "Glob of the images (a video run: the "
                              "frames of one clip, in file-name order).")
_OUT = flags.DEFINE_string("out", None, "Folder for the predictions.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"],
                                "best: the best validation checkpoint; latest: the newest.")
_VGG_WEIGHTS = flags.DEFINE_string(
    "vgg_weights", "", "A VGG run's front-end weights file, where the run's own path does "
    "not exist here (a released run folder holds the trained parameters alone).")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classification: classes reported per image.",
                              lower_bound=1)
flags.mark_flags_as_required(["workdir", "images", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]} (flags take the form --name=value)")
  paths = sorted(glob.glob(os.path.expanduser(_IMAGES.value)))
  if not paths:
    raise app.UsageError(f"--images={_IMAGES.value!r} matches no files (check the glob)")
  for path in paths:  # every image readable before anything is loaded or written
    if not path.lower().endswith(VIDEO_SUFFIXES):
      read_image(path)
  task = inference.run_task(_WORKDIR.value)
  {"classification": classify, "segmentation": segment,
   "video_segmentation": segment_clip}[task](paths)


def _read(path, channels):
  return read_image(path, mode="L" if channels == 1 else "RGB")


def _stem(path):
  return os.path.join(_OUT.value, os.path.splitext(os.path.basename(path))[0])


def classify(paths):
  classifier = inference.Classifier(_WORKDIR.value, _CHECKPOINT.value, _VGG_WEIGHTS.value)
  k = min(_TOP_K.value, len(classifier.class_names))
  os.makedirs(_OUT.value, exist_ok=True)
  rows = []
  for n, path in enumerate(paths, 1):
    probabilities = classifier([_read(path, classifier.channels)])[0]
    top = np.argsort(-probabilities, kind="stable")[:k]
    ranked = [(classifier.class_names[c], float(probabilities[c])) for c in top]
    rows.append([path] + [v for pair in ranked for v in (pair[0], f"{pair[1]:.6f}")])
    print(f"[{n}/{len(paths)}] {path}: "
          + ", ".join(f"{name} {p:.3f}" for name, p in ranked))
  header = ["path"] + [f for r in range(1, k + 1) for f in (f"class_{r}", f"probability_{r}")]
  out = os.path.join(_OUT.value, "predictions.csv")
  with open(out, "w", newline="") as f:
    csv.writer(f).writerows([header] + rows)
  print(f"-> {out}")


def segment(paths):
  segmenter = inference.Segmenter(_WORKDIR.value, _CHECKPOINT.value, _VGG_WEIGHTS.value)
  os.makedirs(_OUT.value, exist_ok=True)
  for n, path in enumerate(paths, 1):
    image = _read(path, segmenter.channels)
    labels = segmenter(image)
    stem = _stem(path)
    pictures.write_png(stem + "_label.png", labels)
    pictures.write_png(stem + "_overlay.png", _overlay(image, labels, segmenter))
    print(f"[{n}/{len(paths)}] {path} -> {stem}_label.png, {stem}_overlay.png")


VIDEO_SUFFIXES = (".gif", ".mp4", ".avi", ".mov", ".mkv", ".webm")


def read_video(path, channels: int) -> list:
  """The frames of a video file: animated GIFs with Pillow, other formats with PyAV
  (`pip install av`: FFmpeg's decoders)."""
  if path.lower().endswith(".gif"):
    from PIL import Image, ImageSequence
    with Image.open(path) as im:
      return [np.asarray(f.convert("L" if channels == 1 else "RGB"))
              for f in ImageSequence.Iterator(im)]
  try:
    import av
  except ImportError:
    raise app.UsageError(f"{path}: reading this video format needs PyAV (pip install av), "
                         "or give its frames as images (--images='frames/*.png')") from None
  try:
    with av.open(path) as container:
      frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
  except Exception as e:  # av's own error classes vary by version
    raise app.UsageError(f"{path}: not a readable video ({type(e).__name__}: {e})") from e
  return [f.mean(-1).round().astype(np.uint8) if channels == 1 else f for f in frames]


def segment_clip(paths):
  segmenter = inference.VideoSegmenter(_WORKDIR.value, _CHECKPOINT.value,
                                          _VGG_WEIGHTS.value)
  if len(paths) == 1 and paths[0].lower().endswith(VIDEO_SUFFIXES):
    stem = _stem(paths[0])
    frames = read_video(paths[0], segmenter.channels)
    paths = [f"{stem}_{t:04d}" for t in range(len(frames))]
  else:
    frames = [_read(path, segmenter.channels) for path in paths]
  shapes = {f.shape for f in frames}
  if len(shapes) > 1:
    raise app.UsageError(f"the frames of a clip must have one size; --images holds "
                         f"{sorted(shapes)} (resize them alike)")
  labels = segmenter(np.stack(frames))
  os.makedirs(_OUT.value, exist_ok=True)
  for path, frame_labels in zip(paths, labels):
    pictures.write_png(_stem(path) + "_label.png", frame_labels)
  gif = os.path.join(_OUT.value, "overlay.gif")
  pictures.write_gif(gif, [_overlay(f, l, segmenter) for f, l in zip(frames, labels)])
  print(f"{len(paths)} frames -> {_OUT.value}/*_label.png, {gif}")


def _overlay(image, labels, segmenter):
  return pictures.overlay(image[..., None] if image.ndim == 2 else image, labels,
                          segmenter.colours)


if __name__ == "__main__":
  cli.run(main)
