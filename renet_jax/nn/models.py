"""Models: the ReNet classifier (thesis ch. 3), a LeNet-style CNN baseline, ReSeg
(ch. 4) and the convolutional-deconvolutional RNN for video (ch. 5); `make_model`
builds the one a config names.

Models with ReNet layers take `cell`: a cell name or factory (`cells.cell_factory`),
built once by `make_model` from the config's cell name and recurrence `impl`.
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from renet_jax.errors import ModelCheckError
from renet_jax.nn import cells, conv_rnn, upsampling, vgg
from renet_jax.nn.cells import CellDef
from renet_jax.nn.renet import ReNet, pad_to_multiple


class ReNetClassifier(nn.Module):
  """input -> masking noise (train) -> ReNet layers (dropout after every sub-layer) ->
  flatten -> FC ReLU layers (dropout after each) -> class logits."""
  num_classes: int
  units: Sequence[int] = (256, 256)
  patch_sizes: Sequence[Sequence[int]] = ((2, 2), (2, 2))
  fc_units: Sequence[int] = (4096, 4096)
  cell: str | CellDef = "gru"
  order: str = "vertical_first"
  directions: str = "separate"  # renet.DIRECTIONS; "stacked": one scan (one kernel) a sweep
  pad: str = "none"  # "zero": pad images whose size the patches do not divide
  dropout_rate: float = 0.2
  input_mask_rate: float = 0.2
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = mask_pixels(self, x, self.input_mask_rate, train)
    x = renet_of(self, pad=self.pad)(x, deterministic=not train)
    return _fc_head(self, x.reshape(x.shape[0], -1), train)


class CNNClassifier(nn.Module):
  """LeNet-style baseline: [conv 5x5 (same) + ReLU + 2x2 max-pool] per entry of
  `features`, then the same FC head, dropout and input masking as ReNetClassifier."""
  num_classes: int
  features: Sequence[int] = (32, 64)
  fc_units: Sequence[int] = (512,)
  dropout_rate: float = 0.2
  input_mask_rate: float = 0.2
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = mask_pixels(self, x, self.input_mask_rate, train)
    for f in self.features:
      x = nn.relu(nn.Conv(f, (5, 5), padding="SAME", dtype=self.dtype)(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
      x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    return _fc_head(self, x.reshape(x.shape[0], -1), train)


def _fc_head(module, x, train):
  for units in module.fc_units:
    x = nn.relu(nn.Dense(units, dtype=module.dtype)(x))
    x = nn.Dropout(module.dropout_rate)(x, deterministic=not train)
  return nn.Dense(module.num_classes, dtype=module.dtype)(x).astype(jnp.float32)


def mask_pixels(module: nn.Module, x: jax.Array, rate: float, train: bool) -> jax.Array:
  """Zeroes each pixel (all its channels) with probability `rate` when training; no
  rescaling (masking noise, not dropout). Uses the "dropout" RNG stream."""
  if not train or rate == 0:
    return x
  keep = jax.random.bernoulli(module.make_rng("dropout"), 1 - rate, x.shape[:-1] + (1,))
  return jnp.where(keep, x, 0).astype(x.dtype)


def renet_of(model: nn.Module, **fields) -> ReNet:
  """The ReNet stack of a model with fields units, patch_sizes, cell, order,
  directions, dropout_rate and dtype (the cell computes in the model's dtype when set)."""
  return ReNet(tuple(model.units), tuple(tuple(p) for p in model.patch_sizes),
               cell=cells.cell_factory(model.cell, dtype=model.dtype), order=model.order,
               directions=model.directions, dropout_rate=model.dropout_rate, **fields)


class ReSeg(nn.Module):
  """image -> [frozen VGG-16 conv1_1..conv3_3, 1/4 resolution] -> ReNet layers (GRU) ->
  transposed convolutions (stride = kernel size, ReLU, Glorot uniform) -> per-pixel class
  logits (a 1x1 dense layer).

  Input (N, H, W, C) in [0, 1]; output (N, H, W, num_classes) logits for any H, W: the
  input is zero-padded to a multiple of the total stride and the output cropped back.
  The upsampling kernels must multiply to that stride (4 with VGG, times every ReNet
  patch size). The VGG parameters live under "vgg" and get no gradient; keep them out of
  the optimiser with `optim.make_optimizer(..., frozen=FROZEN)`.

  `input="features"`: x is already the frozen front end's output (`front_end_features`
  of the images, computed once: data.cache_features) and the output is cropped to
  `crop_to` (the images' (H, W)). The parameters are the same in both modes (the "vgg"
  subtree is simply not read), so checkpoints serve either.
  The upsampling is `upsampling.BlockUpsample` (nn.ConvTranspose's parameters and
  numbers, computed as a per-pixel product + depth-to-space where that is faster).
  """
  num_classes: int
  units: Sequence[int] = (100, 100)
  patch_sizes: Sequence[Sequence[int]] = ((1, 1), (1, 1))
  upsample_filters: Sequence[int] = (50, 50)
  upsample_kernels: Sequence[Sequence[int]] = ((2, 2), (2, 2))
  vgg: bool = True
  vgg_preprocessing: str = "caffe"
  cell: str | CellDef = "gru"
  order: str = "vertical_first"
  directions: str = "separate"  # renet.DIRECTIONS; "stacked": one scan (one kernel) a sweep
  dropout_rate: float = 0.0
  upsample_impl: str = "auto"  # upsampling.IMPLS
  input: str = "images"  # "images" | "features"
  crop_to: Sequence[int] = ()
  dtype: Any = None

  FROZEN = ("vgg",)

  @property
  def stride(self) -> tuple[int, int]:
    front = vgg.STRIDE if self.vgg else 1
    return tuple(front * math.prod(int(p[axis]) for p in self.patch_sizes) for axis in (0, 1))

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    self._check(x)
    if self.input == "features":
      h, w = self.crop_to
    else:
      h, w = x.shape[1:3]
      x = pad_to_multiple(x, self.stride)
      if self.vgg:
        x = jax.lax.stop_gradient(self._vgg(name="vgg")(x))
    x = renet_of(self)(x, deterministic=not train)
    for k, (filters, kernel) in enumerate(zip(self.upsample_filters, self.upsample_kernels)):
      # Named as nn.ConvTranspose was: checkpoints from before BlockUpsample still load.
      x = nn.relu(upsampling.BlockUpsample(
          filters, tuple(kernel), impl=self.upsample_impl,
          kernel_init=nn.initializers.glorot_uniform(), dtype=self.dtype,
          name=f"ConvTranspose_{k}")(x))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)
    return logits[:, :h, :w].astype(jnp.float32)

  def _vgg(self, **kwargs) -> nn.Module:
    return vgg.VGG16Features(self.vgg_preprocessing, self.dtype, **kwargs)

  def front_end_features(self, vgg_params, images: jax.Array) -> jax.Array:
    """What the frozen front end gives the ReNet layers for `images` (N, H, W, C) in
    [0, 1]: VGG features of the images padded to the stride (input="features" takes
    these). Call on an unbound ReSeg."""
    return self._vgg(parent=None).apply({"params": vgg_params},
                                        pad_to_multiple(images, self.stride))

  def _check(self, x):
    if x.ndim != 4:
      raise ModelCheckError(f"ReSeg expects images (N, H, W, C), got shape {x.shape}.")
    if self.input not in ("images", "features"):
      raise ModelCheckError(f"ReSeg: unknown input {self.input!r}; choose images or features.")
    if self.input == "features" and (not self.vgg or len(self.crop_to) != 2):
      raise ModelCheckError("ReSeg: input='features' needs vgg=True and crop_to=(H, W) of the "
                            "images.")
    if len(self.upsample_filters) != len(self.upsample_kernels):
      raise ModelCheckError(f"ReSeg: {len(self.upsample_filters)} upsample_filters but "
                            f"{len(self.upsample_kernels)} upsample_kernels; give one of each.")
    up = tuple(math.prod(int(k[axis]) for k in self.upsample_kernels) for axis in (0, 1))
    if up != self.stride:
      raise ModelCheckError(
          f"ReSeg: the upsampling kernels {tuple(map(tuple, self.upsample_kernels))} "
          f"multiply to {up} but the features are at 1/{self.stride} of the input "
          f"({'VGG 4 x ' if self.vgg else ''}ReNet patches "
          f"{tuple(map(tuple, self.patch_sizes))}); make them multiply to {self.stride}.")


class VideoSegmenter(nn.Module):
  """The convolutional-deconvolutional RNN of thesis ch. 5: clips (N, T, H, W, C) in
  [0, 1] -> per-pixel class logits (N, T, H, W, num_classes) of every frame.

  [frozen VGG-16 conv1_1..conv3_3 per frame, 1/4 resolution] -> encoder conv-RNN layers
  (`encoder_units`, each with stride `encoder_strides[k]`) -> decoder deconv-RNN layers
  (`decoder_units`, transposed convolutions upsampling by `decoder_strides[k]`) -> a 1x1
  dense layer. The decoder strides must multiply to the encoder's (times 4 with VGG);
  the input is zero-padded to a multiple of that stride and the output cropped back.
  Causal in time unless `bidirectional`. `recurrent=False` gives the same network with
  the recurrence removed, each frame segmented alone (the baseline). `input_convs` and
  `state_convs`: hidden convolutions ((features, kernel), ...) before the gate
  convolution of every input-to-state and state-to-state transition (transposed ones
  in the decoder); `peephole`: ConvLSTM's peephole terms (cell="lstm"); `dtype`: the
  computation dtype of every layer (see `renet_jax.nn.conv_rnn`).
  """
  num_classes: int
  encoder_units: Sequence[int] = (32, 32)
  encoder_strides: Sequence[int] = (2, 2)
  decoder_units: Sequence[int] = (32, 32)
  decoder_strides: Sequence[int] = (2, 2)
  cell: str = "gru"
  kernel_size: int = 3
  input_convs: Sequence[Sequence[int]] = ()
  state_convs: Sequence[Sequence[int]] = ()
  peephole: bool = True
  recurrent: bool = True
  bidirectional: bool = False
  remat: bool = False
  vgg: bool = False
  vgg_preprocessing: str = "caffe"
  dtype: Any = None

  FROZEN = ("vgg",)

  @property
  def stride(self) -> int:
    return (vgg.STRIDE if self.vgg else 1) * math.prod(self.encoder_strides)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    self._check(x)
    n, t, h, w, c = x.shape
    frames = pad_to_multiple(x.reshape(n * t, h, w, c), (self.stride, self.stride))
    if self.vgg:
      frames = jax.lax.stop_gradient(
          vgg.VGG16Features(self.vgg_preprocessing, self.dtype, name="vgg")(frames))
    seq = frames.reshape((n, t) + frames.shape[1:]).swapaxes(0, 1)  # time-major
    layers = ([(u, s, False) for u, s in zip(self.encoder_units, self.encoder_strides)]
              + [(u, s, True) for u, s in zip(self.decoder_units, self.decoder_strides)])
    for k, (units, stride, transpose) in enumerate(layers):
      seq = conv_rnn.ConvRNN(
          units, kind=self.cell, stride=stride, transpose=transpose,
          kernel_size=self.kernel_size, input_convs=self.input_convs,
          state_convs=self.state_convs, recurrent=self.recurrent,
          bidirectional=self.bidirectional, remat=self.remat, peephole=self.peephole,
          dtype=self.dtype,
          name=f"{'decoder' if transpose else 'encoder'}{k}")(seq)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(seq)
    return logits.swapaxes(0, 1)[:, :, :h, :w].astype(jnp.float32)

  def _check(self, x):
    if x.ndim != 5:
      raise ModelCheckError(f"VideoSegmenter expects clips (N, T, H, W, C), got shape {x.shape}.")
    for a, b in (("encoder_units", "encoder_strides"), ("decoder_units", "decoder_strides")):
      if len(getattr(self, a)) != len(getattr(self, b)):
        raise ModelCheckError(f"VideoSegmenter: {len(getattr(self, a))} {a} but "
                              f"{len(getattr(self, b))} {b}; give one of each per layer.")
    if any(d < self.stride for d in x.shape[2:4]):  # (symbolic sizes: no min())
      raise ModelCheckError(
          f"VideoSegmenter: the encoder takes frames to 1/{self.stride} of their size "
          f"({'VGG 4 x ' if self.vgg else ''}encoder strides {tuple(self.encoder_strides)}), "
          f"more than the {x.shape[2]}x{x.shape[3]} frames have; use fewer or smaller "
          "strides (or larger frames, data.image_size)")
    up = math.prod(self.decoder_strides)
    if up != self.stride:
      raise ModelCheckError(
          f"VideoSegmenter: the decoder strides {tuple(self.decoder_strides)} multiply to "
          f"{up} but the encoder's features are at 1/{self.stride} of the input "
          f"({'VGG 4 x ' if self.vgg else ''}encoder strides "
          f"{tuple(self.encoder_strides)}); make them multiply to {self.stride}.")


CLASSIFIERS = {"renet": ReNetClassifier, "cnn": CNNClassifier}
SEGMENTERS = {"reseg": ReSeg}
VIDEO_SEGMENTERS = {"conv_deconv_rnn": VideoSegmenter}


def make_model(model_config: ml_collections.ConfigDict, models: dict, num_classes: int,
               **fields) -> nn.Module:
  """The model of `models` (CLASSIFIERS, SEGMENTERS or VIDEO_SEGMENTERS) named by
  `model_config.name`, built from its block `model_config[name]`, `model_config.dtype`
  (the computation dtype of every layer), `model_config.precision` (the recurrences'
  float32 products) and `fields`. A ReNet block's `cell` and `impl` become one cell
  factory."""
  name = model_config.name
  if name not in models:
    raise ModelCheckError(f"Unknown model {name!r}; choose one of {tuple(models)}.")
  fields = {**model_config[name], **fields}
  dtype = model_config.get("dtype", "float32")
  if dtype != "float32":  # (None: float32, as flax's default)
    fields["dtype"] = jnp.dtype(dtype)
  if "impl" in fields:  # the ReNet models: cell and recurrence impl as one factory
    fields["cell"] = cells.cell_factory(fields["cell"], impl=fields.pop("impl"),
                                        precision=model_config.get("precision", "float32"))
  return models[name](num_classes=num_classes, **fields)
