r"""Writes a trained run's inference function as one portable file (`jax.export`).

  python -m experiments.export --workdir=runs/digits --out=digits.jaxexport
  python -m experiments.export --workdir=runs/digits_seg --out=seg.jaxexport --output=labels

The function is the run's predictor (`predictor.Predictor`, as experiments.predict
runs it): uint8 images (N, H, W, C) ((N, T, H, W, C) clips for video; N, T, H and W
symbolic) -> class probabilities or labels, per pixel at the image's own size for
segmentation; the resize to the training size, the preprocessing, the VGG front end and
the trained parameters are inside. It runs with
JAX alone, on CPU or CUDA (`--platforms`):

  from jax import export
  exported = export.deserialize(open("digits.jaxexport", "rb").read())
  probabilities = exported.call(images)

<out>.json describes it (class names, input shape, output, platforms).
"""

import os

from absl import app, flags

from renet_jax import cli, files
from renet_jax.serving import exporting

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run's directory.")
_OUT = flags.DEFINE_string("out", None, "The file to write (and <out>.json beside it).")
_OUTPUT = flags.DEFINE_enum("output", "probabilities", list(exporting.OUTPUTS),
                            "probabilities: softmax over the classes; labels: the argmax.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"],
                                "best: the best validation checkpoint; latest: the newest.")
_VGG_WEIGHTS = flags.DEFINE_string(
    "vgg_weights", "", "A VGG run's front-end weights file, where the run's own path does "
    "not exist here (a released run folder holds the trained parameters alone).")
_PLATFORMS = flags.DEFINE_list("platforms", ["cpu", "cuda"],
                               "Platforms the file runs on (cpu, cuda, rocm, tpu).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]} (flags take the form --name=value)")
  data, description = exporting.export_run(_WORKDIR.value, _OUTPUT.value, _CHECKPOINT.value,
                                           _PLATFORMS.value, _VGG_WEIGHTS.value)
  out = os.path.expanduser(_OUT.value)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

  def write(tmp):
    with open(tmp, "wb") as f:
      f.write(data)

  files.write_atomic(out, write)
  files.write_json(out + ".json", description)
  print(f"{out}: {len(data) / 1e6:.1f} MB, {description['task']} -> {_OUTPUT.value}, "
        f"input uint8 ({description['input_shape']}), platforms "
        f"{', '.join(description['platforms'])}")


if __name__ == "__main__":
  cli.run(main)
