"""What a segmentation model trains and is evaluated on, as one object the data layer
returns:

  sources       {split: random-access examples}
  transform     example -> arrays at the model's size (host, deterministic)
  preprocess    (batch, key, train) -> the model's input (device, traceable; the random
                flips drawn from `key` when training)
  model_fields  how the model reads that input (`models.make_model` keywords)
  cached        whether it is the front end's cached features

  SegmentationImages             the images themselves
  feature_cache.CachedFeatures   a wrapper of them: the frozen front end's features,
                                 computed once (data.cache_features)
"""

import jax.numpy as jnp

from renet_jax.data import augment, preprocess


class SegmentationImages:
  """Images and label maps resized on the host by `resize(example)`, scaled to [0, 1]
  and, when training, flipped as `flip` says on the device (labels filled with
  `label_fill` where a shift uncovers them)."""
  cached = False
  model_fields: dict = {}

  def __init__(self, sources: dict, resize, flip: str, label_fill: int):
    self.sources, self.resize, self.flip, self.label_fill = sources, resize, flip, label_fill

  def transform(self, example: dict) -> dict:
    return self.resize(example)

  def preprocess(self, batch: dict, key, train: bool) -> dict:
    image, label = preprocess.scale(batch["image"]), batch["label"].astype(jnp.int32)
    if train:
      image, label = augment.augment(key, image, label, flip=self.flip,
                                     label_fill=self.label_fill)
    return dict(batch, image=image, label=label)
