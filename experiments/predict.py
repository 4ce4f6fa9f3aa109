r"""Segments your own images with a trained ReSeg run.

  python -m experiments.predict --workdir=runs/digits_seg --images='photos/*.png' \
      --out=predictions

For each image writes <out>/<name>_label.png (class index per pixel, 8-bit grey; the
class names are in <workdir>/task.json) and <name>_overlay.png (the image blended with
the class colours).
"""

import glob
import os

from absl import app, flags

from renet_jax import cli, inference, pictures
from renet_jax.data.raw import read_image

_WORKDIR = flags.DEFINE_string("workdir", None, "A run directory of experiments.segment.")
_IMAGES = flags.DEFINE_string("images", None, "Glob of the images to segment.")
_OUT = flags.DEFINE_string("out", None, "Folder for the label PNGs and overlays.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"],
                                "best: the best validation checkpoint; latest: the newest.")
flags.mark_flags_as_required(["workdir", "images", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]} (flags take the form --name=value)")
  paths = sorted(glob.glob(os.path.expanduser(_IMAGES.value)))
  if not paths:
    raise app.UsageError(f"--images={_IMAGES.value!r} matches no files (check the glob)")
  for path in paths:  # every image readable before anything is loaded or written
    read_image(path)
  segmenter = inference.Segmenter(_WORKDIR.value, _CHECKPOINT.value)
  grey = segmenter.channels == 1
  mode = "L" if grey else "RGB"
  os.makedirs(_OUT.value, exist_ok=True)
  for n, path in enumerate(paths, 1):
    image = read_image(path, mode=mode)
    labels = segmenter(image)
    stem = os.path.join(_OUT.value, os.path.splitext(os.path.basename(path))[0])
    pictures.write_png(stem + "_label.png", labels)
    overlay = pictures.overlay(image[..., None] if grey else image, labels,
                               segmenter.colours)
    pictures.write_png(stem + "_overlay.png", overlay)
    print(f"[{n}/{len(paths)}] {path} -> {stem}_label.png, {stem}_overlay.png")


if __name__ == "__main__":
  cli.run(main)
