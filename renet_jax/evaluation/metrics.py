"""Evaluation metrics, accumulated as sums over a whole split.

Classification: loss sum, correct and example counts. Segmentation: one confusion matrix
(rows: true class, columns: predicted), void pixels excluded, giving global accuracy,
per-class accuracy and its mean, per-class IoU = TP / (TP + FP + FN) and its mean.
Classes with no pixels (no true pixels for accuracy; no true or predicted pixels for
IoU) are undefined (None) and left out of the means.
"""

import jax.numpy as jnp
import numpy as np

from renet_jax.nn.losses import cross_entropy, valid_pixels


def classification_sums(logits, batch) -> dict:
  """Loss sum, correct and example counts over the real examples (mask = 1)."""
  mask = batch["mask"]
  return {"loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
          "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
          "count": jnp.sum(mask)}


def classification_metrics(totals: dict) -> dict:
  """Summed `classification_sums` of a split -> loss, accuracy, error, examples."""
  count = max(float(totals["count"]), 1.0)
  accuracy = float(totals["correct"]) / count
  return {"loss": float(totals["loss_sum"]) / count, "accuracy": accuracy,
          "error": 1 - accuracy, "examples": int(totals["count"])}


def confusion_matrix(predictions, labels, num_classes, *, void=None, mask=None):
  """(K, K) counts of labelled pixels: [true class, predicted class].

  NumPy inputs are counted on the host with NumPy (int64): the original-size metrics see
  a new image shape per image, and the traced path would compile once per shape."""
  if isinstance(predictions, np.ndarray) and isinstance(labels, np.ndarray):
    valid = valid_pixels(labels, void, mask)
    index = labels[valid].astype(np.int64) * num_classes + predictions[valid]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)
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
