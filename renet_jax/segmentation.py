"""Semantic segmentation (thesis ch. 4, ReSeg) as a `train.Task`: void-ignoring weighted
cross-entropy, confusion-matrix metrics, and pictures of predictions.

Metrics come from one confusion matrix accumulated over a whole split (rows: true
class, columns: predicted), void pixels excluded: global accuracy, per-class accuracy
and its mean, per-class IoU = TP / (TP + FP + FN) and its mean. Classes with no pixels
(no true pixels for accuracy; no true or predicted pixels for IoU) are undefined
(None) and left out of the means.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from renet_jax import models, train, vgg
from renet_jax.data import augment, datasets, preprocess
from renet_jax.data.segmentation import SEGMENTATION, SegmentationInfo


def valid_pixels(labels, void, mask=None):
  """Pixels that count: not void, and in a real example (mask = 1) of a padded batch."""
  valid = jnp.ones(labels.shape, bool) if void is None else labels != void
  if mask is not None:
    valid = valid & (mask[:, None, None] > 0)
  return valid


def segmentation_loss(logits, labels, *, void=None, class_weights=None, mask=None):
  """(sum over labelled pixels of class_weight[label] * cross-entropy, labelled pixels).

  logits (N, H, W, K), labels (N, H, W) ints; void pixels and masked-out examples add
  nothing. The training loss is the first divided by the second.
  """
  valid = valid_pixels(labels, void, mask)
  safe = jnp.where(valid, labels, 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
  weight = valid.astype(ce.dtype)
  if class_weights is not None:
    weight = weight * jnp.asarray(class_weights, ce.dtype)[safe]
  return jnp.sum(ce * weight), jnp.sum(valid)


def confusion_matrix(predictions, labels, num_classes, *, void=None, mask=None):
  """(K, K) int32 counts of labelled pixels: [true class, predicted class]."""
  valid = valid_pixels(labels, void, mask)
  index = jnp.where(valid, labels * num_classes + predictions, 0)
  counts = jnp.zeros(num_classes * num_classes, jnp.int32)
  counts = counts.at[index.ravel()].add(valid.ravel().astype(jnp.int32))
  return counts.reshape(num_classes, num_classes)


def metrics_from_confusion(confusion, class_names) -> dict:
  """Global accuracy, per-class accuracy and IoU (by class name) and their means."""
  cm = np.asarray(confusion, np.float64)
  tp = np.diag(cm)
  true = cm.sum(1)
  union = true + cm.sum(0) - tp
  with np.errstate(invalid="ignore", divide="ignore"):
    class_accuracy = np.where(true > 0, tp / true, np.nan)
    iou = np.where(union > 0, tp / union, np.nan)
  total = cm.sum()
  as_dict = lambda v: {n: (None if np.isnan(x) else float(x)) for n, x in zip(class_names, v)}
  mean = lambda v: float(np.nanmean(v)) if np.any(~np.isnan(v)) else 0.0
  return {"accuracy": float(tp.sum() / total) if total else 0.0,
          "mean_class_accuracy": mean(class_accuracy), "mean_iou": mean(iou),
          "class_accuracy": as_dict(class_accuracy), "class_iou": as_dict(iou),
          "pixels": int(total)}


# --- pictures -------------------------------------------------------------------------

def voc_palette(n: int) -> np.ndarray:
  """The PASCAL VOC colour map: n distinct RGB colours, class 0 black."""
  palette = np.zeros((n, 3), np.uint8)
  for i in range(n):
    c, rgb = i, [0, 0, 0]
    for shift in range(7, -1, -1):
      for ch in range(3):
        rgb[ch] |= ((c >> ch) & 1) << shift
      c >>= 3
    palette[i] = rgb
  return palette


def class_colours(info: SegmentationInfo) -> np.ndarray:
  """(K + 1, 3) uint8: a colour per class, then black for void and anything else."""
  colours = (np.asarray(info.palette, np.uint8) if info.palette is not None
             else voc_palette(info.num_classes))
  return np.concatenate([colours, np.zeros((1, 3), np.uint8)])


def colorize(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
  """Label map (H, W) -> RGB (H, W, 3); values outside the classes (void) are black."""
  labels = np.asarray(labels)
  k = len(colours) - 1
  return colours[np.where((labels >= 0) & (labels < k), labels, k)]


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
  """A [0, 1] float or uint8 image (H, W, 1 or 3) as RGB uint8."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
  return np.repeat(image, 3, -1) if image.shape[-1] == 1 else image


def overlay(image: np.ndarray, labels: np.ndarray, colours: np.ndarray,
            alpha: float = 0.5) -> np.ndarray:
  rgb = to_rgb_uint8(image).astype(np.float32)
  return np.round((1 - alpha) * rgb + alpha * colorize(labels, colours)).astype(np.uint8)


def panel(images, labels, predictions, colours, gap: int = 2,
          min_height: int = 128) -> np.ndarray:
  """One row per example: input | ground truth | prediction, white gaps between; small
  images are enlarged (nearest neighbour, by an integer factor) to `min_height`."""
  rows = []
  for image, label, pred in zip(images, labels, predictions):
    parts = [to_rgb_uint8(image), colorize(label, colours), colorize(pred, colours)]
    k = max(1, min_height // parts[0].shape[0])
    parts = [p.repeat(k, 0).repeat(k, 1) for p in parts]
    h = parts[0].shape[0]
    white = np.full((h, gap, 3), 255, np.uint8)
    rows.append(np.concatenate([parts[0], white, parts[1], white, parts[2]], axis=1))
  width = rows[0].shape[1]
  gaps = [np.full((gap, width, 3), 255, np.uint8)] * len(rows)
  return np.concatenate([x for pair in zip(rows, gaps) for x in pair][:-1], axis=0)


def write_png(path: str, rgb: np.ndarray):
  from PIL import Image
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp.png"
  Image.fromarray(rgb).save(tmp)
  os.replace(tmp, path)  # a viewer never sees half a file


# --- the task -------------------------------------------------------------------------

class SegmentationTask(train.Task):
  """Images scaled to [0, 1] (resized with their labels to data.image_size when set),
  optional flips; ReSeg with or without VGG; selects on validation mean IoU."""
  DATASETS = tuple(SEGMENTATION)
  MODELS = models.SEGMENTATION_MODELS
  selection = "mean_iou"
  higher_is_better = True

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    cfg = config.data
    self.info = SEGMENTATION[cfg.name]
    self.vgg_weights = None
    if config.model.vgg:
      if not config.model.vgg_weights:
        raise FileNotFoundError("model.vgg=True needs ImageNet VGG-16 weights: "
                                + vgg.WHERE_TO_GET)
      self.vgg_weights = vgg.load_vgg_weights(config.model.vgg_weights)
      self.frozen = models.ReSeg.FROZEN
    self.sources, folder = datasets.prepare(cfg.name, cfg.data_dir or None,
                                            cfg.manual_dir or None)
    self.class_weights = None
    if config.loss.class_balancing:
      freqs = preprocess.dataset_class_frequencies(folder, self.sources["train"],
                                                   self.info.num_classes, self.info.void)
      self.class_weights = preprocess.median_frequency_weights(freqs)
    size = tuple(cfg.image_size) if all(cfg.image_size) else None
    first_shape = self.sources["train"][0]["label"].shape

    def transform(ex):
      image, label = ex["image"], ex["label"]
      if size is not None:
        image, label = preprocess.resize_pair(image, label, size)
      elif label.shape != first_shape:
        raise ValueError(
            f"{cfg.name}: images differ in size ({label.shape} and {first_shape}), so they "
            "cannot be batched; set data.image_size=(H, W) to resize them.")
      return {"image": preprocess.scale(image), "label": label.astype(np.int32)}

    def random_transform(rng, ex):
      if cfg.flip == "none":
        return ex
      image, label = augment.random_flip(rng, ex["image"], ex["label"],
                                         vertical=cfg.flip == "both")
      return {"image": image, "label": label}

    self.transform, self.random_transform = transform, random_transform
    self._predict = None

  @property
  def preprocessing(self):
    return self.vgg_weights.preprocessing if self.vgg_weights else "caffe"

  def model(self):
    return models.make_segmenter(self.config.model, self.info.num_classes,
                                 self.preprocessing)

  def init_params(self, params):
    if self.vgg_weights is None:
      return params
    return {**params, "vgg": jax.tree.map(jnp.asarray, self.vgg_weights.params)}

  def loss(self, logits, batch):
    total, pixels = segmentation_loss(logits, batch["label"], void=self.info.void,
                                      class_weights=self.class_weights)
    valid = valid_pixels(batch["label"], self.info.void)
    correct = jnp.sum((jnp.argmax(logits, -1) == batch["label"]) & valid)
    pixels = jnp.maximum(pixels, 1)
    return total / pixels, {"accuracy": correct / pixels}

  def eval_sums(self, logits, batch):
    total, pixels = segmentation_loss(logits, batch["label"], void=self.info.void,
                                      class_weights=self.class_weights, mask=batch["mask"])
    return {"loss_sum": total, "pixels": pixels,
            "confusion": confusion_matrix(jnp.argmax(logits, -1), batch["label"],
                                          self.info.num_classes, void=self.info.void,
                                          mask=batch["mask"])}

  def summarize(self, totals):
    metrics = metrics_from_confusion(totals["confusion"], self.info.class_names)
    metrics["loss"] = float(totals["loss_sum"]) / max(float(totals["pixels"]), 1.0)
    return metrics

  def describe(self):
    return {"task": "segmentation", "dataset": self.config.data.name,
            "class_names": list(self.info.class_names), "void": self.info.void,
            "palette": class_colours(self.info)[:-1].tolist(),
            "vgg_preprocessing": self.preprocessing,
            "channels": int(self.sources["train"][0]["image"].shape[-1]),
            "image_size": list(self.config.data.image_size),
            "class_weights": None if self.class_weights is None
            else self.class_weights.tolist()}

  def on_evaluation(self, params, workdir):
    """panels/{validation,test}.png: the first eval.num_panels images of each split."""
    if self._predict is None:
      model = self.model()
      self._predict = jax.jit(lambda p, x: jnp.argmax(model.apply({"params": p}, x), -1))
    colours = class_colours(self.info)
    for split in ("validation", "test"):
      source = self.sources[split]
      examples = [self.transform(source[i])
                  for i in range(min(self.config.eval.num_panels, len(source)))]
      if not examples:
        continue
      images = np.stack([ex["image"] for ex in examples])
      predictions = np.asarray(self._predict(params, images))
      write_png(os.path.join(workdir, "panels", f"{split}.png"),
                panel(images, [ex["label"] for ex in examples], predictions, colours))


class Segmenter:
  """A trained run (its config.json, task.json and best or latest checkpoint) that
  segments images of any size: `Segmenter(workdir)(uint8 image (H, W, C)) -> (H, W)`.
  Images are resized to the run's data.image_size (if it had one) and the labels back."""

  def __init__(self, workdir: str, checkpoint: str = "best"):
    import json
    import orbax.checkpoint as ocp
    workdir = os.path.abspath(os.path.expanduser(workdir))
    paths = {name: os.path.join(workdir, name) for name in ("config.json", "task.json")}
    for path in paths.values():
      if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: {workdir} is not a run directory of "
                                "experiments.segment.")
    with open(paths["config.json"]) as f:
      self.config = ml_collections.ConfigDict(json.load(f))
    with open(paths["task.json"]) as f:
      self.task = json.load(f)
    if self.task.get("task") != "segmentation":
      raise ValueError(f"{workdir} is a {self.task.get('task')} run, not a segmentation one.")
    manager = ocp.CheckpointManager(os.path.join(workdir, checkpoint))
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {workdir}/{checkpoint}: train the run "
                              "first (experiments.segment with this workdir).")
    self.step = step
    self.params = manager.restore(step)["state"]["params"]
    self.class_names = tuple(self.task["class_names"])
    self.colours = np.concatenate([np.asarray(self.task["palette"], np.uint8),
                                   np.zeros((1, 3), np.uint8)])
    model = models.make_segmenter(self.config.model, len(self.class_names),
                                  self.task["vgg_preprocessing"])
    self._predict = jax.jit(lambda p, x: jnp.argmax(model.apply({"params": p}, x), -1))
    self.size = tuple(self.task["image_size"]) if all(self.task["image_size"]) else None
    self.channels = self.task["channels"]  # images are read with this many channels

  def __call__(self, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
      image = image[..., None]
    if image.shape[-1] != self.channels:
      raise ValueError(f"The run was trained on {self.channels}-channel images; got shape "
                       f"{image.shape}.")
    original = image.shape[:2]
    if self.size is not None:
      image = preprocess.resize_pair(image, np.zeros(original, np.uint8), self.size)[0]
    labels = np.asarray(self._predict(self.params, preprocess.scale(image)[None]))[0]
    labels = labels.astype(np.uint8)
    if labels.shape != original:
      labels = preprocess.resize_pair(image, labels, original)[1]
    return labels
