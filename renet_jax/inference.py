"""Using trained models: a jitted per-pixel (or per-image) argmax predictor, and
`Segmenter`, which segments images of any size with a finished segmentation run."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from renet_jax import checkpoints, files, models, pictures
from renet_jax.data import preprocess
from renet_jax.errors import WorkdirError


def argmax_predictor(model):
  """jit(params, images) -> the class of highest logit (last axis) of `model`."""
  return jax.jit(lambda params, x: jnp.argmax(model.apply({"params": params}, x), -1))


class Segmenter:
  """A trained run (its config.json, task.json and best or latest checkpoint) that
  segments images of any size: `Segmenter(workdir)(uint8 image (H, W, C)) -> (H, W)`.
  Images are resized to the run's data.image_size (if it had one) and the labels back."""

  def __init__(self, workdir: str, checkpoint: str = "best"):
    workdir = os.path.abspath(os.path.expanduser(workdir))
    paths = {name: os.path.join(workdir, name) for name in ("config.json", "task.json")}
    for path in paths.values():
      if not os.path.exists(path):
        raise WorkdirError(f"{path} is missing: {workdir} is not a run directory (give "
                           "--workdir of an experiments.segment run)")
    self.config = ml_collections.ConfigDict(files.read_json(paths["config.json"]))
    self.task = files.read_json(paths["task.json"])
    if self.task.get("task") != "segmentation":
      raise WorkdirError(f"{workdir} is a {self.task.get('task')} run, not a segmentation "
                         "one (give the workdir of an experiments.segment run)")
    try:
      self.step, self.params = checkpoints.load_params(workdir, checkpoint)
    except FileNotFoundError:
      raise WorkdirError(f"no {checkpoint} checkpoint in {workdir} (train the run first: "
                         "experiments.segment with this workdir)") from None
    self.class_names = tuple(self.task["class_names"])
    self.colours = pictures.class_colours(self.task["palette"], len(self.class_names))
    model = models.make_model(self.config.model, models.SEGMENTERS, len(self.class_names),
                              vgg_preprocessing=self.task["vgg_preprocessing"])
    self._predict = argmax_predictor(model)
    self.size = tuple(self.task["image_size"]) if all(self.task["image_size"]) else None
    self.channels = self.task["channels"]  # images are read with this many channels

  def __call__(self, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
      image = image[..., None]
    if image.shape[-1] != self.channels:
      raise ValueError(f"The run was trained on {self.channels}-channel images; got shape "
                       f"{image.shape} (convert the image to {self.channels} channels).")
    original = image.shape[:2]
    if self.size is not None:
      image = preprocess.resize_image(image, self.size)
    labels = np.asarray(self._predict(self.params, preprocess.scale(image)[None]))[0]
    labels = labels.astype(np.uint8)
    if labels.shape != original:
      labels = preprocess.resize_label(labels, original)
    return labels
