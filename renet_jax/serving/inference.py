"""Trained runs loaded from their workdirs, each running its model's one
`evaluation.predictor.Predictor`: `Classifier` (class probabilities), `Segmenter`
(images of any size) and `VideoSegmenter` (frame sequences)."""

import os

import ml_collections
import numpy as np

from renet_jax import files, pictures
from renet_jax.errors import WorkdirError
from renet_jax.evaluation.predictor import Predictor
from renet_jax.nn import models, vgg
from renet_jax.training import checkpoints


ENTRY_POINTS = {"classification": "experiments.classify",
                "segmentation": "experiments.segment",
                "video_segmentation": "experiments.segment_video"}


def run_task(workdir: str) -> str:
  """The task of the run in `workdir` (task.json's "task"); WorkdirError if it is not a
  run directory."""
  path = os.path.join(os.path.abspath(os.path.expanduser(workdir)), "task.json")
  if not os.path.exists(os.path.join(os.path.dirname(path), "config.json")) or \
      not os.path.exists(path):
    raise WorkdirError(f"{path} is missing: {workdir} is not a run directory (give the "
                       "--workdir of a training run)")
  task = files.read_json(path).get("task")
  if task not in ENTRY_POINTS:
    raise WorkdirError(f"{path} names no known task ({task!r}); is it this code's run?")
  return task


class TrainedRun:
  """A finished (or checkpointed) run of the task `task`: its config.json, task.json,
  fitted preprocessing and best or latest parameters."""
  task: str

  def __init__(self, workdir: str, checkpoint: str = "best", vgg_weights: str = ""):
    workdir = os.path.abspath(os.path.expanduser(workdir))
    found = run_task(workdir)
    if found != self.task:
      raise WorkdirError(f"{workdir} is a {found} run, not a {self.task} one (give the "
                         f"workdir of an {ENTRY_POINTS[self.task]} run)")
    self.config = ml_collections.ConfigDict(files.read_json(os.path.join(workdir,
                                                                         "config.json")))
    self.description = files.read_json(os.path.join(workdir, "task.json"))
    try:
      self.step, self.params = checkpoints.load_params(workdir, checkpoint)
    except FileNotFoundError:
      raise WorkdirError(f"no {checkpoint} checkpoint in {workdir} (train the run first: "
                         f"{ENTRY_POINTS[self.task]} with this workdir)") from None
    self.params = _with_front_end(self.params, self.config,
                                  vgg_weights or self.config.model.get("vgg_weights", ""))
    stats = os.path.join(workdir, "preprocessing.npz")
    self.stats = dict(np.load(stats)) if os.path.exists(stats) else {}
    data = self.config.data
    if (data.get("zca") or data.get("standardize")) and not self.stats:
      raise WorkdirError(f"{stats} is missing: the run was trained with ZCA/standardisation "
                         "before its statistics were saved with it (rerun its training "
                         "command once: a finished run then only writes its files)")


def _with_front_end(params: dict, config, vgg_weights: str) -> dict:
  """Released parameters (best_params.npz) leave the frozen VGG front end out: it is
  loaded from `vgg_weights` (default: the path the run was trained with)."""
  block = config.model.get(config.model.name, {})
  if not block.get("vgg", False) or "vgg" in params:
    return params
  try:
    weights = vgg.load_vgg_weights(vgg_weights)
  except FileNotFoundError:
    raise WorkdirError(
        f"the run's VGG-16 front end is not in its released parameters and its weights "
        f"file {vgg_weights!r} is missing (give it with --vgg_weights=PATH: "
        f"{vgg.WHERE_TO_GET})") from None
  return {**params, "vgg": weights.params}


class Classifier(TrainedRun):
  """A trained classification run: `Classifier(workdir)(uint8 images (N, H, W, C)) ->
  class probabilities (N, K)` (`Predictor`: resized to the training size, the fitted
  ZCA / standardisation applied as in training)."""
  task = "classification"

  def __init__(self, workdir: str, checkpoint: str = "best", vgg_weights: str = ""):
    super().__init__(workdir, checkpoint, vgg_weights)
    self.class_names = tuple(self.description["class_names"])
    self.image_shape = tuple(self.description["image_shape"])
    self.model = models.make_model(self.config.model, models.CLASSIFIERS,
                                   len(self.class_names))
    self.predictor = Predictor(self.model, self.image_shape[:2], self.stats,
                               per_pixel=False)

  @property
  def channels(self) -> int:
    return self.image_shape[-1]

  def __call__(self, images) -> np.ndarray:
    return np.stack(self.predictor.on_host(
        self.params, [_with_channels(image, self.channels) for image in images]))


def _with_channels(image, channels: int) -> np.ndarray:
  image = np.asarray(image, np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] != channels:
    raise ValueError(f"The run was trained on {channels}-channel images; got shape "
                     f"{image.shape} (convert the image to {channels} channels).")
  return image


class Segmenter(TrainedRun):
  """A trained segmentation run that segments images of any size:
  `Segmenter(workdir)(uint8 image (H, W, C)) -> labels (H, W)` (`Predictor`: resized
  to the run's data.image_size if it had one, the labels back at the image's size)."""
  task = "segmentation"

  def __init__(self, workdir: str, checkpoint: str = "best", vgg_weights: str = ""):
    super().__init__(workdir, checkpoint, vgg_weights)
    self.class_names = tuple(self.description["class_names"])
    self.colours = pictures.class_colours(self.description["palette"], len(self.class_names))
    self.model = models.make_model(self.config.model, self._models, len(self.class_names),
                                   vgg_preprocessing=self.description["vgg_preprocessing"])
    self.size = (tuple(self.description["image_size"]) if all(self.description["image_size"])
                 else None)
    self.predictor = Predictor(self.model, self.size)
    self.channels = self.description["channels"]  # images are read with this many channels

  _models = models.SEGMENTERS

  def __call__(self, image: np.ndarray) -> np.ndarray:
    return self.predictor.labels(self.params, [_with_channels(image, self.channels)])[0]


class VideoSegmenter(Segmenter):
  """A trained video segmentation run: `VideoSegmenter(workdir)(uint8 frames (T, H, W,
  C)) -> labels (T, H, W)`, the frames run through the recurrence in order (causal
  unless the run was bidirectional), resized as for `Segmenter`."""
  task = "video_segmentation"
  _models = models.VIDEO_SEGMENTERS

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    frames = np.stack([_with_channels(f, self.channels) for f in frames])
    return self.predictor.labels(self.params, [frames])[0]
