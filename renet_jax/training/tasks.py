"""The problems `train.train_and_evaluate` trains for: what each brings to the loop
(data, model, loss, evaluation sums and their summary, model selection).

  ClassificationTask      image classification (thesis ch. 3): ReNet or the CNN baseline
  SegmentationTask        semantic segmentation (thesis ch. 4): ReSeg
  VideoSegmentationTask   segmentation of clips (ch. 5): the conv-deconv RNN
"""

import abc

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from renet_jax import parallel, pictures, provenance
from renet_jax.data import augment, feature_cache, inputs, preprocess, registry, video_datasets
from renet_jax.errors import ConfigError
from renet_jax.evaluation import metrics, predictor
from renet_jax.nn import losses, models, vgg


class Task(abc.ABC):
  """What `train_and_evaluate` needs to know about a problem. Constructed from the
  config after `config_checks.check_config` passed.

  Data: `sources` {split: random-access examples}; `transform(example)` runs on the host
  and is deterministic (uint8 images, integer labels, resizing); `preprocess(constants,
  batch, key, train)` runs on the device inside the jitted steps (scaling, whitening,
  and when training the random augmentation drawn from `key`), with `constants` the
  task's constant arrays (fitted statistics). Model selection: the validation metric
  `selection`, better when higher if `higher_is_better`; it picks the best checkpoint
  and drives early stopping. The segmentation tasks also give what the config's
  evaluators (`evaluation.evaluators`) read: the images as stored (`images`), one at the
  model's size (`resized`), the model's `predictor`, the classes (`pixels`) and `size`.
  """
  DATASETS: tuple[str, ...] = ()
  MODELS: tuple[str, ...] = ()
  sources: dict
  constants: dict = {}
  selection: str = "accuracy"
  higher_is_better: bool = True
  frozen: tuple[str, ...] = ()  # top-level parameter subtrees the optimiser leaves alone
  images_per_example: int = 1  # what images/s counts (a clip's frames for video)
  cached: bool = False  # trains on cached front-end features (data.cache_features)
  data_record: dict  # the prepared data's provenance (provenance.dataset_record)
  vgg_weights = None  # the pretrained front end's weights, where the model has one

  def transform(self, example: dict) -> dict:
    """A raw example -> {"image": uint8 (H, W, C), "label": ...} (host, deterministic)."""
    return {"image": example["image"], "label": example["label"]}

  @abc.abstractmethod
  def preprocess(self, constants: dict, batch: dict, key: jax.Array | None,
                 train: bool) -> dict:
    """A batch of `transform`ed examples -> the model's input (device, traceable)."""

  @abc.abstractmethod
  def model(self) -> nn.Module:
    """The flax module mapping a batch of images to logits."""

  def init_params(self, params):
    """Fresh parameters -> the ones to start from (e.g. with pretrained weights)."""
    return params

  @abc.abstractmethod
  def loss(self, logits, batch) -> tuple[jax.Array, dict]:
    """(mean training loss, {metric: value}) of a batch."""

  @abc.abstractmethod
  def eval_sums(self, logits, batch) -> dict:
    """Arrays summed over the real (batch["mask"] = 1) examples of an evaluation batch."""

  @abc.abstractmethod
  def summarize(self, totals: dict) -> dict:
    """Summed `eval_sums` of a whole split -> its metrics (the selection one included)."""

  def describe(self) -> dict:
    """What serving a trained run needs besides config.json; written to task.json."""
    return {}

  def serving_arrays(self) -> dict:
    """Arrays serving needs besides the parameters (fitted preprocessing); written to
    preprocessing.npz when there are any."""
    return {}


def _prepare(config) -> tuple[dict, str, dict]:
  """(sources, prepared folder, provenance record of the prepared data)."""
  cfg = config.data
  sources, folder = registry.prepare(
      cfg.name, cfg.data_dir or None, cfg.manual_dir or None,
      (cfg.get("val_fraction", 0.1), cfg.get("test_fraction", 0.1)), cfg.get("image_size"))
  with parallel.process_zero_first(f"fingerprints in {folder}"):
    record = provenance.dataset_record(cfg.name, str(registry.BUILDERS[cfg.name].VERSION),
                                       folder, sources)
  return sources, folder, record


class ClassificationTask(Task):
  """Scaled images (plus ZCA / standardisation fitted on train), flips and shifts when
  training; selects on validation accuracy (lowest error)."""
  DATASETS = registry.CLASSIFICATION
  MODELS = tuple(models.CLASSIFIERS)

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    cfg = config.data
    self.sources, folder, self.data_record = _prepare(config)
    self.class_names = registry.class_names(cfg.name, folder)
    with parallel.process_zero_first(f"image stats in {folder}"):
      stats = preprocess.dataset_image_stats(folder, self.sources["train"], cfg.zca,
                                             cfg.standardize, cfg.zca_epsilon)
    self.constants = stats.arrays()

  def transform(self, example):
    return {"image": example["image"], "label": np.int32(example["label"])}

  def preprocess(self, constants, batch, key, train):
    cfg = self.config.data
    image = preprocess.apply_image_stats(constants, preprocess.scale(batch["image"]))
    if train:
      image, _ = augment.augment(key, image, flip=cfg.flip, shift=cfg.shift)
    return dict(batch, image=image)

  def model(self):
    return models.make_model(self.config.model, models.CLASSIFIERS, len(self.class_names))

  loss = staticmethod(losses.classification_loss)
  eval_sums = staticmethod(metrics.classification_sums)
  summarize = staticmethod(metrics.classification_metrics)

  def describe(self):
    return {"task": "classification", "dataset": self.config.data.name,
            "num_classes": len(self.class_names), "class_names": list(self.class_names),
            "image_shape": list(self.sources["train"][0]["image"].shape)}

  def serving_arrays(self):
    return self.constants  # the ZCA / standardisation statistics fitted on train


class PixelLabels:
  """Per-pixel classification as image and video segmentation share it: the class-
  weighted cross-entropy (void ignored), the confusion-matrix sums of an evaluation
  batch and their metrics, and the classes' colours. Labels (N, H, W), logits
  (N, H, W, K): a video task passes its clips' frames as N."""

  def __init__(self, info: registry.SegmentationInfo, class_weights,
               normalization: str = "pixels"):
    self.info, self.class_weights = info, class_weights
    self.normalization = normalization  # of the training loss: losses.NORMALIZATIONS

  def loss(self, logits, labels):
    loss = losses.normalized_segmentation_loss(
        logits, labels, void=self.info.void, class_weights=self.class_weights,
        normalization=self.normalization)
    valid = losses.valid_pixels(labels, self.info.void)
    correct = jnp.sum((jnp.argmax(logits, -1) == labels) & valid)
    return loss, {"accuracy": correct / jnp.maximum(jnp.sum(valid), 1)}

  def eval_sums(self, logits, labels, mask):
    total, pixels = losses.segmentation_loss(
        logits, labels, void=self.info.void, class_weights=self.class_weights, mask=mask)
    return {"loss_sum": total, "pixels": pixels,
            "confusion": metrics.confusion_matrix(jnp.argmax(logits, -1), labels,
                                                  self.info.num_classes,
                                                  void=self.info.void, mask=mask)}

  def summarize(self, totals):
    result = metrics.metrics_from_confusion(totals["confusion"], self.info.class_names)
    result["loss"] = float(totals["loss_sum"]) / max(float(totals["pixels"]), 1.0)
    return result

  @property
  def colours(self) -> np.ndarray:
    return pictures.class_colours(self.info.palette, self.info.num_classes)

  def describe(self) -> dict:
    return {"class_names": list(self.info.class_names), "void": self.info.void,
            "palette": self.colours[:-1].tolist(),
            "class_weights": None if self.class_weights is None
            else self.class_weights.tolist()}


def _segmentation_data(config):
  """What both segmentation tasks start from: (info, VGG weights or None, sources,
  prepared folder, the data's provenance record, PixelLabels with the training split's
  class weights when loss.class_balancing)."""
  cfg = config.data
  vgg_weights = None
  if config.model[config.model.name].vgg:
    if not config.model.vgg_weights:
      raise ConfigError(f"model.{config.model.name}.vgg=True needs ImageNet VGG-16 "
                        f"weights: {vgg.WHERE_TO_GET}")
    vgg_weights = vgg.load_vgg_weights(config.model.vgg_weights)
  sources, folder, data_record = _prepare(config)
  info = registry.segmentation_info(cfg.name, folder)
  class_weights = None
  if config.loss.class_balancing:
    with parallel.process_zero_first(f"class frequencies in {folder}"):
      freqs = preprocess.dataset_class_frequencies(folder, sources["train"],
                                                   info.num_classes, info.void)
    class_weights = preprocess.median_frequency_weights(freqs, config.loss.balancing_power)
  return info, vgg_weights, sources, folder, data_record, PixelLabels(
      info, class_weights, config.loss.get("normalization", "pixels"))


def _vgg_preprocessing(vgg_weights) -> str:
  """How images are normalised for the front end: as its weights were trained."""
  return vgg_weights.preprocessing if vgg_weights else "caffe"


def _image_size(data_config) -> tuple[int, int] | None:
  """data.image_size as (H, W), or None when images stay as stored ((0, 0))."""
  return tuple(data_config.image_size) if all(data_config.image_size) else None


def _with_vgg(params, vgg_weights):
  """Fresh parameters with the pretrained front end in (when there is one)."""
  if vgg_weights is None:
    return params
  return {**params, "vgg": jax.tree.map(jnp.asarray, vgg_weights.params)}


class SegmentationTask(Task):
  """Images scaled to [0, 1] (resized with their labels to data.image_size when set),
  optional flips; ReSeg with or without VGG; selects on validation mean IoU."""
  DATASETS = registry.SEGMENTATION
  MODELS = tuple(models.SEGMENTERS)
  selection = "mean_iou"
  higher_is_better = True

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    cfg = config.data
    (self.info, self.vgg_weights, self.images, folder, self.data_record,
     self.pixels) = _segmentation_data(config)
    if self.vgg_weights is not None:
      self.frozen = models.ReSeg.FROZEN
    self.size = _image_size(cfg)
    self.first_shape = self.images["train"][0]["label"].shape
    self.predictor = predictor.Predictor(self.image_model(), self.size)
    # What training and the split metrics read: the images, or the front end's features
    # of them computed once (a wrapper of the same interface).
    self.inputs = inputs.SegmentationImages(self.images, self.resized, cfg.flip,
                                            self.info.void or 0)
    if self._caches_features():
      self.inputs = self._cached_features(folder, self.inputs)
    self.sources, self.cached = self.inputs.sources, self.inputs.cached

  def _caches_features(self) -> bool:
    """data.cache_features: auto caches whenever ReSeg has the frozen VGG front end."""
    setting = self.config.data.get("cache_features", "false")
    block = self.config.model[self.config.model.name]
    return (setting != "false" and self.config.model.name == "reseg"
            and bool(block.get("vgg", False)))

  def _cached_features(self, folder, images) -> feature_cache.CachedFeatures:
    model = self.image_model()
    fields = {"dataset": self.config.data.name,
              "version": str(registry.BUILDERS[self.config.data.name].VERSION),
              "image_size": list(self.crop_to), "stride": list(model.stride),
              "dtype": str(model.dtype), "preprocessing": self.preprocessing,
              "weights": provenance.weights_fingerprint(self.vgg_weights.params)}
    params = jax.tree.map(jnp.asarray, self.vgg_weights.params)
    compute = jax.jit(model.front_end_features)
    with parallel.process_zero_first(f"feature cache in {folder}"):
      return feature_cache.CachedFeatures(images, folder, fields,
                                          lambda x: compute(params, x), self.crop_to)

  @property
  def crop_to(self) -> tuple[int, int]:
    """The (H, W) the model sees."""
    return tuple(self.size or self.first_shape)

  def transform(self, example):
    return self.inputs.transform(example)

  def resized(self, example):
    """An image example at the model's size: {"image": uint8, "label": uint8}."""
    image, label = example["image"], example["label"]
    if self.size is not None:
      image, label = preprocess.resize_pair(image, label, self.size)
    elif label.shape != self.first_shape:
      raise ConfigError(
          f"{self.config.data.name}: images differ in size ({label.shape} and "
          f"{self.first_shape}), so they cannot be batched; set data.image_size=(H, W) to "
          "resize them.")
    return {"image": image, "label": label}  # uint8: a quarter of the memory on device

  def preprocess(self, constants, batch, key, train):
    return self.inputs.preprocess(batch, key, train)

  @property
  def preprocessing(self):
    return _vgg_preprocessing(self.vgg_weights)

  def model(self):
    """What training and the split metrics run: the network on `inputs` (the whole
    network, or with cached features the network after the front end; same
    parameters)."""
    return models.make_model(self.config.model, models.SEGMENTERS, self.info.num_classes,
                             vgg_preprocessing=self.preprocessing, **self.inputs.model_fields)

  def image_model(self) -> nn.Module:
    """The whole network on images (what predictions and panels use)."""
    return models.make_model(self.config.model, models.SEGMENTERS, self.info.num_classes,
                             vgg_preprocessing=self.preprocessing)

  def init_params(self, params):
    return _with_vgg(params, self.vgg_weights)

  def loss(self, logits, batch):
    return self.pixels.loss(logits, batch["label"])

  def eval_sums(self, logits, batch):
    return self.pixels.eval_sums(logits, batch["label"], batch["mask"])

  def summarize(self, totals):
    return self.pixels.summarize(totals)

  def describe(self):
    return {"task": "segmentation", "dataset": self.config.data.name,
            **self.pixels.describe(), "vgg_preprocessing": self.preprocessing,
            "channels": int(self.images["train"][0]["image"].shape[-1]),
            "image_size": list(self.config.data.image_size),
            # what the model saw: the resized size, or the first stored image's
            "trained_size": list(self.size or self.images["train"][0]["image"].shape[:2])}


class VideoSegmentationTask(Task):
  """Semantic segmentation of every frame of clips (N, T, H, W, C) with the
  convolutional-deconvolutional RNN (thesis ch. 5); frames resized to data.image_size
  when set; the same flip for all frames of a clip. Metrics over every frame of the
  split as for images (`PixelLabels`, shared with `SegmentationTask`), plus
  `temporal_flicker` (the share of labelled pixels whose true label stays the same
  between consecutive frames but whose predicted label changes; lower is steadier) and,
  where the dataset marks occluders, the metrics on occluded pixels only (`occluded_*`).
  Selects on validation mean IoU."""
  DATASETS = registry.VIDEO
  MODELS = tuple(models.VIDEO_SEGMENTERS)
  selection = "mean_iou"
  higher_is_better = True

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    (self.info, self.vgg_weights, self.sources, _, self.data_record,
     self.pixels) = _segmentation_data(config)
    if self.vgg_weights is not None:
      self.frozen = models.VideoSegmenter.FROZEN
    self.size = _image_size(config.data)
    stored = int(self.sources["train"][0]["image"].shape[0])
    frames = config.data.get("clip_frames", stored)
    if not 2 <= frames <= stored:
      raise ConfigError(
          f"data.clip_frames={frames}: the {config.data.name} clips hold {stored} frames; "
          f"choose 2..{stored} (a single frame leaves the recurrence nothing to remember)")
    if frames < stored:
      self.sources = {split: video_datasets.ClipWindows(source, frames, stored)
                      for split, source in self.sources.items()}
    self.predictor = predictor.Predictor(self.model(), self.size)

  @property
  def images(self) -> dict:
    return self.sources  # the clips as stored (what the evaluators draw from)

  def resized(self, example):
    return self.transform(example)

  def transform(self, example):
    clip = {k: example[k] for k in ("image", "label", "occluded")}
    if self.size is None:
      return clip
    resize = {"image": preprocess.resize_image, "label": preprocess.resize_label,
              "occluded": preprocess.resize_label}
    return {k: np.stack([resize[k](frame, self.size) for frame in v])
            for k, v in clip.items()}

  def preprocess(self, constants, batch, key, train):
    image, label = preprocess.scale(batch["image"]), batch["label"].astype(jnp.int32)
    if train:  # frames as channels: one flip decision per clip
      n, t, h, w, c = image.shape
      image, label = augment.augment(
          key, image.transpose(0, 2, 3, 1, 4).reshape(n, h, w, t * c),
          label.transpose(0, 2, 3, 1), flip=self.config.data.flip,
          label_fill=self.info.void or 0)
      image = image.reshape(n, h, w, t, c).transpose(0, 3, 1, 2, 4)
      label = label.transpose(0, 3, 1, 2)
    return dict(batch, image=image, label=label)

  @property
  def preprocessing(self):
    return _vgg_preprocessing(self.vgg_weights)

  def model(self):
    return models.make_model(self.config.model, models.VIDEO_SEGMENTERS,
                             self.info.num_classes, vgg_preprocessing=self.preprocessing)

  def init_params(self, params):
    return _with_vgg(params, self.vgg_weights)

  @staticmethod
  def _frames(logits, batch):
    """Clips as a batch of frames: logits (N*T, H, W, K), the batch's per-frame arrays."""
    n, t = batch["label"].shape[:2]
    frames = {k: v.reshape((n * t,) + v.shape[2:]) for k, v in batch.items()
              if k in ("label", "occluded")}
    if "mask" in batch:
      frames["mask"] = jnp.repeat(batch["mask"], t)
    return logits.reshape((n * t,) + logits.shape[2:]), frames

  def loss(self, logits, batch):
    flat_logits, frames = self._frames(logits, batch)
    return self.pixels.loss(flat_logits, frames["label"])

  def eval_sums(self, logits, batch):
    flat_logits, frames = self._frames(logits, batch)
    sums = self.pixels.eval_sums(flat_logits, frames["label"], frames["mask"])
    k, void = self.info.num_classes, self.info.void
    predictions, labels = jnp.argmax(logits, -1), batch["label"]
    valid = losses.valid_pixels(labels.reshape(frames["label"].shape), void,
                                frames["mask"]).reshape(labels.shape)
    steady = (labels[:, 1:] == labels[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    sums["steady_pixels"] = jnp.sum(steady)
    sums["flickering_pixels"] = jnp.sum(steady & (predictions[:, 1:] != predictions[:, :-1]))
    hidden = jnp.where(frames["occluded"] > 0, frames["label"], k)  # k: not counted
    sums["occluded_confusion"] = metrics.confusion_matrix(
        jnp.argmax(flat_logits, -1), hidden, k, void=k, mask=frames["mask"])
    return sums

  def summarize(self, totals):
    result = self.pixels.summarize(totals)
    result["temporal_flicker"] = (float(totals["flickering_pixels"])
                                  / max(float(totals["steady_pixels"]), 1.0))
    if np.sum(totals["occluded_confusion"]):
      occluded = metrics.metrics_from_confusion(totals["occluded_confusion"],
                                                self.info.class_names)
      result.update({f"occluded_{k}": occluded[k]
                     for k in ("accuracy", "mean_class_accuracy", "mean_iou", "pixels")})
    return result

  @property
  def images_per_example(self) -> int:
    return int(self.sources["train"][0]["image"].shape[0])

  def describe(self):
    return {"task": "video_segmentation", "dataset": self.config.data.name,
            **self.pixels.describe(), "vgg_preprocessing": self.preprocessing,
            "channels": int(self.sources["train"][0]["image"].shape[-1]),
            "image_size": list(self.config.data.image_size),
            "trained_size": list(self.size or self.sources["train"][0]["image"].shape[1:3]),
            "clip_frames": self.images_per_example}


def task_class(dataset: str) -> type[Task]:
  """The task of a dataset: classification, segmentation or video segmentation."""
  classes = (ClassificationTask, SegmentationTask, VideoSegmentationTask)
  for cls in classes:
    if dataset in cls.DATASETS:
      return cls
  raise ValueError(f"Unknown dataset {dataset!r}; choose one of "
                   f"{sum((cls.DATASETS for cls in classes), ())}.")
