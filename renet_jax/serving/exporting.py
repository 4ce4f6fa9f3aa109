"""A trained run's inference function as one portable file (`jax.export`).

The exported function is the run's `predictor.Predictor`: it takes uint8 images
straight from disk and does everything the run's own code does to them: the resize to
the model's input size (where it has one), scaling to [0, 1], the fitted ZCA /
standardisation (classification), the VGG-16 front end and its preprocessing (ReSeg with
VGG), the network, softmax, and per-pixel outputs back at the image's own size; then
the probabilities or the argmax label. `experiments.predict` and training's
original-size metrics run the same predictor, so all three agree. The trained
parameters are constants of the exported program; the batch dimension is symbolic (and a
clip's number of frames, for video), and so are height and width: any size where the
run resizes to its input size (classifiers; segmentation trained with data.image_size),
else multiples of the model's total stride (`4*h, 4*w` for a stride of 4). Loading it
needs JAX alone, not this package:

  from jax import export
  exported = export.deserialize(open("model.jaxexport", "rb").read())
  probabilities = exported.call(images)  # uint8 (N, H, W, C) [or (N, T, H, W, C)]

The file's companion `<file>.json` holds the class names, the input shape (with its
symbolic dimensions named), the output and the platforms.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from renet_jax.errors import ConfigError
from renet_jax.serving import inference

OUTPUTS = ("probabilities", "labels")
LOADERS = {"classification": inference.Classifier, "segmentation": inference.Segmenter,
           "video_segmentation": inference.VideoSegmenter}


def input_shape(run) -> tuple[str, tuple]:
  """(the symbolic shape spec, the concrete trained size) of the run's input: any
  height and width where the predictor resizes to a fixed input size (classifiers, and
  segmentation runs trained with data.image_size), else multiples of the model's stride."""
  if isinstance(run, inference.Classifier):
    h, w, c = run.image_shape
    return f"b, h, w, {c}", (h, w, c)
  size = run.size or run.description.get("trained_size")
  if not size:
    raise ConfigError("the run's task.json predates trained_size and the run kept the "
                      "stored image sizes (rerun its training command once: a finished "
                      "run then only rewrites its files)")
  (h, w), c = size, run.channels
  frames = "t, " if isinstance(run, inference.VideoSegmenter) else ""
  if run.size:
    return f"b, {frames}h, w, {c}", (h, w, c)
  stride = run.model.stride
  sh, sw = (stride, stride) if isinstance(stride, int) else stride
  return f"b, {frames}{sh}*h, {sw}*w, {c}", (h, w, c)


def export_run(workdir: str, output: str = "probabilities", checkpoint: str = "best",
               platforms=("cpu", "cuda"), vgg_weights: str = "") -> tuple[bytes, dict]:
  """(serialized exported function, its description) of the run in `workdir`
  (`vgg_weights`: the front end's file where the run's own path is not there)."""
  if output not in OUTPUTS:
    raise ConfigError(f"--output={output!r}: choose one of {OUTPUTS}")
  task = inference.run_task(workdir)
  run = LOADERS[task](workdir, checkpoint, vgg_weights)
  spec, (h, w, _) = input_shape(run)
  params = jax.tree.map(np.asarray, run.params)

  def serve(images):
    probabilities = run.predictor(params, images)
    if output == "labels":
      return jnp.argmax(probabilities, -1).astype(jnp.int32)
    return probabilities

  shape = export.symbolic_shape(spec)
  exported = export.export(jax.jit(serve), platforms=tuple(platforms))(
      jax.ShapeDtypeStruct(shape, jnp.uint8))
  description = {"task": task, "class_names": list(run.class_names), "output": output,
                 "input_shape": spec, "trained_size": [h, w],
                 "input_dtype": "uint8",
                 "platforms": list(exported.platforms), "checkpoint_step": int(run.step),
                 "workdir": workdir}
  return bytes(exported.serialize()), description
