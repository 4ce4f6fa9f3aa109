"""The one prediction path of a trained model, from uint8 images as read from disk to
class probabilities (`Predictor`): what training's evaluators, the trained-run loaders
(`serving.inference`, experiments.predict) and experiments.export all run."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from renet_jax.data import pipeline, preprocess


class Predictor:
  """The one prediction path of a trained model, from uint8 images as read from disk to
  class probabilities. Training's panels and original-size metrics, the trained-run
  loaders below (experiments.predict) and experiments.export all run it, so they give
  identical outputs:

  1. `to_model_size`: images (..., H, W, C) resized to the model's input size when it
     has one (Pillow's bilinear passes in exact integer arithmetic, as the data
     pipeline's resizing: `preprocess.resize_images_exactly`);
  2. `model_probabilities`: scaled to [0, 1], the fitted ZCA / standardisation
     (classification), the network (VGG front end and its preprocessing included),
     softmax;
  3. `to_input_size`: per-pixel probabilities back at the images' own size (nearest
     neighbour; segmentation only).

  `__call__` runs the three in one traceable function (what is exported). Callers
  with images of several sizes run stage 1 and 3 per image in NumPy (`xp=np`, nothing
  to compile) and stage 2 on a batch at the model's size."""

  def __init__(self, model: nn.Module, size=None, stats=None, per_pixel: bool = True):
    self.model = model
    self.size = tuple(size) if size else None  # None: each image at its own size
    self.stats = stats or {}
    self.per_pixel = per_pixel
    self._probabilities = None  # jit(model_probabilities), made on first use

  def to_model_size(self, images, xp=jnp):
    if self.size is None or tuple(images.shape[-3:-1]) == self.size:
      return images
    return preprocess.resize_images_exactly(images, self.size, xp)

  def model_probabilities(self, params, images):
    """Traceable: uint8 images (..., h, w, C) at the model's size -> (N, K), or
    per-pixel (..., h, w, K)."""
    x = preprocess.apply_image_stats(self.stats, preprocess.scale(images))
    return jax.nn.softmax(self.model.apply({"params": params}, x), -1)

  def to_input_size(self, probabilities, size, xp=jnp):
    if not self.per_pixel or tuple(probabilities.shape[-3:-1]) == tuple(size):
      return probabilities
    return preprocess.resize_nearest(probabilities, size, probabilities.ndim - 3, xp)

  def __call__(self, params, images):
    """Traceable: uint8 images (..., H, W, C) -> probabilities at their size."""
    probabilities = self.model_probabilities(params, self.to_model_size(images))
    return self.to_input_size(probabilities, images.shape[-3:-1])

  def on_host(self, params, images, batch_size: int | None = None) -> list[np.ndarray]:
    """`__call__` for a list of uint8 images (H, W, C) (clips (T, H, W, C)) of any
    sizes, each image's probabilities as NumPy. Stages 1 and 3 run per image in NumPy,
    stage 2 jitted on batches of `batch_size` (default: all) padded to one shape, so a
    model with an input size compiles once."""
    return [self.to_input_size(p, np.shape(image)[-3:-1], np)
            for p, image in self._model_size_probabilities(params, images, batch_size)]

  def labels(self, params, images, batch_size: int | None = None) -> list[np.ndarray]:
    """uint8 labels (H, W) ((T, H, W)) of `on_host`'s images: the argmax, taken at the
    model's size and then resized (nearest-neighbour resizing commutes with it)."""
    return [self.to_input_size(p.argmax(-1)[..., None], np.shape(image)[-3:-1], np)[..., 0]
            .astype(np.uint8)
            for p, image in self._model_size_probabilities(params, images, batch_size)]

  def _model_size_probabilities(self, params, images, batch_size):
    """(stage 2's probabilities, the image) for each of `images`, in order."""
    if self._probabilities is None:
      self._probabilities = jax.jit(self.model_probabilities)
    inputs = [self.to_model_size(np.asarray(image), np) for image in images]
    batch_size = batch_size or max(len(inputs), 1)
    for start in range(0, len(inputs), batch_size):
      chunk = np.stack(inputs[start:start + batch_size])
      padded = pipeline.pad_batch({"image": chunk}, batch_size)["image"]
      found = np.asarray(self._probabilities(params, padded))[:len(chunk)]
      yield from zip(found, images[start:start + batch_size])
