"""Image classification (thesis ch. 3) as a `train.Task`: data, loss and error rate."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from renet_jax import models, train
from renet_jax.data import augment, datasets, preprocess

DATASETS = ("digits", "mnist", "cifar10", "svhn_cropped")
NUM_CLASSES = 10


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def classification_loss(logits, batch):
  """(mean cross-entropy, {"accuracy"}) of a training batch."""
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return cross_entropy(logits, batch["label"]).mean(), {"accuracy": accuracy}


def classification_sums(logits, batch):
  """Loss sum, correct and example counts over the real examples (mask = 1)."""
  mask = batch["mask"]
  return {"loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
          "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
          "count": jnp.sum(mask)}


class ClassificationTask(train.Task):
  """Scaled images (plus ZCA / standardisation fitted on train), flips and shifts when
  training; selects on validation accuracy (lowest error)."""
  DATASETS = DATASETS
  MODELS = models.MODELS

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    cfg = config.data
    self.sources, folder = datasets.prepare(cfg.name, cfg.data_dir or None,
                                            cfg.manual_dir or None)
    stats = preprocess.dataset_image_stats(folder, self.sources["train"], cfg.zca,
                                           cfg.standardize, cfg.zca_epsilon)

    def transform(ex):
      return {"image": preprocess.scale(ex["image"]), "label": np.int32(ex["label"])}

    def batch_transform(batch):
      return dict(batch, image=stats.apply(batch["image"]))

    def random_transform(rng, ex):
      image = ex["image"]
      if cfg.flip != "none":
        image, _ = augment.random_flip(rng, image, vertical=cfg.flip == "both")
      if cfg.shift:
        image, _ = augment.random_shift(rng, image, pixels=cfg.shift)
      return dict(ex, image=image)

    self.transform, self.batch_transform = transform, batch_transform
    self.random_transform = random_transform

  def model(self):
    return models.make_classifier(self.config.model, NUM_CLASSES)

  loss = staticmethod(classification_loss)
  eval_sums = staticmethod(classification_sums)

  def summarize(self, totals):
    count = max(float(totals["count"]), 1.0)
    accuracy = float(totals["correct"]) / count
    return {"loss": float(totals["loss_sum"]) / count, "accuracy": accuracy,
            "error": 1 - accuracy, "examples": int(totals["count"])}

  def describe(self):
    return {"task": "classification", "num_classes": NUM_CLASSES}
