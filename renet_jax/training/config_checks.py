"""Checks of a run's config that the locked ConfigDict cannot make (it already rejects
unknown fields and wrong types when the flags are parsed): impossible values, all
reported at once in one `ConfigError`, before anything is read or written.

`check_config` needs only the config; what needs the data (patch sizes against the
image size, the batch against the training set) is checked by `train.preflight` once
the dataset is open, still before the workdir is touched.
"""

import difflib
import math
import os

import ml_collections

from renet_jax.data import augment, registry
from renet_jax.errors import ConfigError
from renet_jax.evaluation import evaluators
from renet_jax.kernels import recurrence
from renet_jax.nn import cells, losses, renet, upsampling, vgg
from renet_jax.training import optim

ON_DEVICE = ("auto", "true", "false")


def _choice(field, value, choices):
  if value in choices:
    return None
  close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
  return (f"{field}={value!r} is unknown (" + (f"did you mean {close[0]!r}? " if close else "")
          + f"choose one of {tuple(choices)})")


def _ints(value, pairs: bool = False) -> bool:
  """Whether `value` is a sequence of ints (of int pairs if `pairs`)."""
  if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
    return False
  if pairs:
    return all(_ints(p) and len(p) == 2 for p in value)
  return all(isinstance(x, int) and not isinstance(x, bool) for x in value)


def check_config(config: ml_collections.ConfigDict, task_cls, device_count: int = 1):
  """Raises ConfigError listing every impossible value of `config` for `task_cls`."""
  problems = []

  def need(ok, message):
    if not ok:
      problems.append(message)

  def one_of(field, value, choices):
    problem = _choice(field, value, choices)
    if problem:
      problems.append(problem)

  one_of("model.name", config.model.name, task_cls.MODELS)
  one_of("data.name", config.data.name, task_cls.DATASETS)
  one_of("data.flip", config.data.flip, augment.FLIPS)
  one_of("data.on_device", config.data.on_device, ON_DEVICE)
  if "cache_features" in config.data:
    one_of("data.cache_features", config.data.cache_features, ON_DEVICE)
    block = config.model.get(config.model.name, {})
    need(config.data.cache_features != "true" or block.get("vgg", False),
         "data.cache_features=true caches the frozen VGG front end's features, but "
         f"model.{config.model.name}.vgg is off (set it, or cache_features=auto|false)")
  need(config.data.get("shift", 0) >= 0, f"data.shift={config.data.get('shift')} must be >= 0")
  if "val_fraction" in config.data:
    val, test = config.data.val_fraction, config.data.get("test_fraction", 0.0)
    need(0 <= val < 1 and 0 <= test < 1 and val + test < 1,
         f"data.val_fraction={val} and data.test_fraction={test} must lie in [0, 1) and "
         "leave some for training (sum < 1)")
  need(config.data.worker_count >= 0,
       f"data.worker_count={config.data.worker_count} must be >= 0 (0: in this process)")
  if "zca_epsilon" in config.data:
    need(config.data.zca_epsilon > 0,
         f"data.zca_epsilon={config.data.zca_epsilon} must be positive")
  if "image_size" in config.data:
    size = config.data.image_size
    need(_ints(size) and len(size) == 2 and (all(s > 0 for s in size) or
                                              all(s == 0 for s in size)),
         f"data.image_size={size} must be two positive sizes (H, W), or (0, 0) to keep "
         "the stored size")
  manual = config.data.get("manual_dir", "")
  need(not manual or os.path.isdir(os.path.expanduser(manual)),
       f"data.manual_dir={manual!r} is not a folder (give the folder holding the dataset's "
       "files, or leave it empty to download them)")

  _check_optimizer(config.optimizer, need, one_of)
  _check_train(config.train, need, device_count)
  if config.model.name in config.model:
    _check_model(config.model, config.model.name, need, one_of)
    if "dtype" in config.model:
      one_of("model.dtype", config.model.dtype, ("float32", "bfloat16"))
    if "precision" in config.model:
      one_of("model.precision", config.model.precision, tuple(recurrence.PRECISIONS))
  if "loss" in config:
    power = config.loss.balancing_power
    need(0 <= power <= 4, f"loss.balancing_power={power} must lie in [0, 4] (1: "
         "median-frequency weights as they are, 0: all classes alike)")
    one_of("loss.normalization", config.loss.get("normalization", "pixels"),
           losses.NORMALIZATIONS)
  if "evals" in config:
    evaluators.check(config.evals, need, one_of,
                     segmentation=set(task_cls.DATASETS).isdisjoint(registry.CLASSIFICATION))
  if problems:
    raise ConfigError("invalid config: " + "; ".join(problems))


def _check_optimizer(opt, need, one_of):
  one_of("optimizer.name", opt.name, optim.OPTIMIZERS)
  one_of("optimizer.schedule", opt.schedule, optim.SCHEDULES)
  one_of("optimizer.lr_scaling", opt.lr_scaling, optim.LR_SCALINGS)
  need(opt.learning_rate > 0, f"optimizer.learning_rate={opt.learning_rate} must be positive")
  need(0 <= opt.momentum < 1, f"optimizer.momentum={opt.momentum} must lie in [0, 1)")
  need(0 < opt.rho < 1, f"optimizer.rho={opt.rho} must lie in (0, 1)")
  need(opt.eps > 0, f"optimizer.eps={opt.eps} must be positive")
  need(opt.weight_decay >= 0, f"optimizer.weight_decay={opt.weight_decay} must be >= 0")
  need(0 < opt.decay_rate <= 1, f"optimizer.decay_rate={opt.decay_rate} must lie in (0, 1]")
  need(opt.warmup_epochs >= 0, f"optimizer.warmup_epochs={opt.warmup_epochs} must be >= 0")
  need(opt.clip_norm >= 0, f"optimizer.clip_norm={opt.clip_norm} must be >= 0 (0: off)")
  need(opt.reference_batch_size > 0,
       f"optimizer.reference_batch_size={opt.reference_batch_size} must be positive")


def _check_train(tc, need, device_count):
  for field in ("batch_size", "eval_batch_size", "num_epochs", "log_every_steps"):
    need(tc[field] > 0, f"train.{field}={tc[field]} must be positive")
  for field in ("batch_size", "eval_batch_size"):
    need(tc[field] % device_count == 0,
         f"train.{field}={tc[field]} must be a multiple of the {device_count} devices "
         "(the batch is split evenly over them)")
  need(tc.patience >= 0, f"train.patience={tc.patience} must be >= 0 (0: never stop early)")
  need(tc.keep_checkpoints >= 1,
       f"train.keep_checkpoints={tc.keep_checkpoints} must be at least 1 (a killed run "
       "resumes from its latest checkpoint)")
  for field in ("checkpoint_every_steps", "stop_after_steps", "time_budget_s", "min_epochs"):
    if field in tc:
      need(tc[field] >= 0, f"train.{field}={tc[field]} must be >= 0 (0: off)")


def _check_model(model, name, need, one_of):
  block, where = model[name], f"model.{name}"
  if "cell" in block:
    one_of(f"{where}.cell", block.cell, cells.cell_names())
  if "impl" in block:
    one_of(f"{where}.impl", block.impl, cells.cell_impls(block.get("cell", "gru")))
    if block.impl == "pallas" and (why := recurrence.pallas_unavailable()):
      need(False, f"{where}.impl='pallas' {why}")
  if "upsample_impl" in block:
    one_of(f"{where}.upsample_impl", block.upsample_impl, upsampling.IMPLS)
  if "order" in block:
    one_of(f"{where}.order", block.order, renet.ORDERS)
  if "directions" in block:
    one_of(f"{where}.directions", block.directions, renet.DIRECTIONS)
  if "kernel_size" in block:
    need(block.kernel_size >= 1, f"{where}.kernel_size={block.kernel_size} must be >= 1")
  if "pad" in block:
    one_of(f"{where}.pad", block.pad, renet.PADS)
  ints = {f: block[f] for f in ("units", "fc_units", "features", "upsample_filters",
                                 "encoder_units", "encoder_strides", "decoder_units",
                                 "decoder_strides") if f in block}
  pairs = {f: block[f] for f in ("patch_sizes", "upsample_kernels") if f in block}
  for field in ("input_convs", "state_convs"):
    if field in block:
      need(_ints(block[field], pairs=True) and all(min(p) >= 1 for p in block[field]),
           f"{where}.{field}={block[field]!r} must be a tuple of (features, kernel) pairs "
           "of positive ints, e.g. ((16, 3),), or () for none")
  for field, value in ints.items():
    need(_ints(value) and all(u >= 1 for u in value),
         f"{where}.{field}={value!r} must be a tuple of positive ints, e.g. (64, 64)")
  for field, value in pairs.items():
    need(_ints(value, pairs=True) and all(min(p) >= 1 for p in value),
         f"{where}.{field}={value!r} must be a tuple of (height, width) pairs of positive "
         "ints, e.g. ((2, 2), (2, 2))")
  for field, other in (("units", "patch_sizes"), ("upsample_filters", "upsample_kernels"),
                       ("encoder_units", "encoder_strides"),
                       ("decoder_units", "decoder_strides")):
    if field in block and _ints(block[field]) and (_ints(block[other], pairs=True)
                                                   or _ints(block[other])):
      need(len(block[field]) == len(block[other]),
           f"{where}: {len(block[field])} entries in {field} but {len(block[other])} in "
           f"{other} (give one of each per layer)")
  if all(f in block and _ints(block[f]) for f in ("encoder_strides", "decoder_strides")):
    down = math.prod(block.encoder_strides) * (vgg.STRIDE if block.get("vgg") else 1)
    need(math.prod(block.decoder_strides) == down,
         f"{where}.decoder_strides={tuple(block.decoder_strides)} multiply to "
         f"{math.prod(block.decoder_strides)} but the encoder's features are at 1/{down} of "
         f"the frames ({'VGG 4 x ' if block.get('vgg') else ''}encoder_strides="
         f"{tuple(block.encoder_strides)}); make them multiply to {down}")
  for rate in ("dropout_rate", "input_mask_rate"):
    if rate in block:
      need(0 <= block[rate] < 1, f"{where}.{rate}={block[rate]} must lie in [0, 1)")
  if block.get("vgg"):
    path = os.path.expanduser(model.get("vgg_weights", ""))
    need(bool(path) and os.path.isfile(path),
         f"{where}.vgg=True needs ImageNet VGG-16 weights: model.vgg_weights="
         f"{model.get('vgg_weights', '')!r} is not a file (set --config.model.vgg_weights"
         f"=PATH. {vgg.WHERE_TO_GET})")
