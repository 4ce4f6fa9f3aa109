"""Training losses: cross-entropy over images (classification) and over labelled pixels
(segmentation: void pixels ignored, optional per-class weights)."""

# How a segmentation batch's summed pixel loss is normalised for training:
#   pixels  divided by the batch's labelled pixels (the mean over labelled pixels);
#   images  divided by the batch's images: each image's pixel losses summed, averaged over
#           the images, as the ReSeg authors trained (fvisin/reseg, reseg.py, getFunctions).
# The gradient's scale differs by the labelled pixels per image (16,384x at 128x128), which
# under Adadelta changes the regime of the update, and relative to weight decay.
NORMALIZATIONS = ("pixels", "images")

import jax
import jax.numpy as jnp
import numpy as np
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example (or per-pixel) softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def classification_loss(logits, batch) -> tuple[jax.Array, dict]:
  """(mean cross-entropy, {"accuracy"}) of a training batch."""
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return cross_entropy(logits, batch["label"]).mean(), {"accuracy": accuracy}


def valid_pixels(labels, void, mask=None):
  """Pixels that count: not void, and in a real example (mask = 1) of a padded batch."""
  xp = np if isinstance(labels, np.ndarray) else jnp  # (host NumPy stays NumPy)
  valid = xp.ones(labels.shape, bool) if void is None else labels != void
  if mask is not None:
    valid = valid & (xp.asarray(mask)[:, None, None] > 0)
  return valid


def segmentation_loss(logits, labels, *, void=None, class_weights=None, mask=None):
  """(sum over labelled pixels of class_weight[label] * cross-entropy, labelled pixels).

  logits (N, H, W, K), labels (N, H, W) ints; void pixels and masked-out examples add
  nothing. The training loss is the first divided by the second.
  """
  valid = valid_pixels(labels, void, mask)
  safe = jnp.where(valid, labels, 0)
  ce = cross_entropy(logits, safe)
  weight = valid.astype(ce.dtype)
  if class_weights is not None:
    weight = weight * jnp.asarray(class_weights, ce.dtype)[safe]
  return jnp.sum(ce * weight), jnp.sum(valid)


def normalized_segmentation_loss(logits, labels, *, void=None, class_weights=None,
                                 normalization="pixels"):
  """The training loss of a batch (N, H, W): `segmentation_loss`'s weighted sum divided
  by the labelled pixels ("pixels") or by N ("images"); see NORMALIZATIONS."""
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization={normalization!r}: choose one of {NORMALIZATIONS}")
  total, pixels = segmentation_loss(logits, labels, void=void, class_weights=class_weights)
  if normalization == "images":
    return total / labels.shape[0]
  return total / jnp.maximum(pixels, 1)
