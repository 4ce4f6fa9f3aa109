"""What every experiment config shares: the option parser and the optimiser and
training-loop blocks; not a config."""

import difflib

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """The options after the colon of `--config=FILE.py:ARG` (big_vision's dialect).

  ARG is comma-separated `name` (sets a bool option to True) or `name=value` (parsed as
  the type of its default), e.g. `camvid.py:vgg,balanced` or `mnist.py:quick`. Every
  name must be one of `defaults`; the result holds all of them.
  """
  options = ml_collections.ConfigDict(defaults)
  for item in (arg or "").split(","):
    if not item.strip():
      continue
    name, sep, value = item.partition("=")
    name = name.strip()
    if name not in defaults:
      close = difflib.get_close_matches(name, defaults, n=1)
      raise ValueError(f"Unknown config option {name!r}"
                       + (f" (did you mean {close[0]!r}?)" if close else "")
                       + f"; this config takes {sorted(defaults) or 'none'}.")
    options[name] = _parse_value(name, value.strip(), defaults[name], bool(sep))
  return options


def _parse_value(name, text, default, has_value):
  if isinstance(default, bool):
    if not has_value:
      return True
    if text.lower() in ("true", "1", "yes"):
      return True
    if text.lower() in ("false", "0", "no"):
      return False
    raise ValueError(f"Config option {name}={text!r}: expected true or false.")
  if not has_value:
    raise ValueError(f"Config option {name!r} needs a value: {name}=...")
  try:
    return type(default)(text)
  except ValueError:
    raise ValueError(f"Config option {name}={text!r}: expected a "
                     f"{type(default).__name__}.") from None


def model(name: str) -> ml_collections.ConfigDict:
  """The model block every experiment has: which model block below `name` selects, the
  computation dtype of every layer, and the precision of the recurrences' products."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.dtype = "float32"  # float32 | bfloat16 (parameters, optimiser, loss stay float32)
  c.precision = "float32"  # float32 recurrence products: float32 | tf32 | tf32x3 (GPUs)
  return c


def data(name: str, **fields) -> ml_collections.ConfigDict:
  """The data block every experiment has; `fields` adds the task's own."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.manual_dir = ""         # raw files; empty: download where public
  c.data_dir = ""           # prepared datasets; empty: the TFDS default
  c.flip = "none"           # none | horizontal | both
  c.worker_count = 0        # host processes running the per-example transform
  c.on_device = "auto"      # keep the splits on the devices: auto | true | false
  c.update(fields)
  return c


def loss(**overrides) -> ml_collections.ConfigDict:
  """The segmentation losses' block: per-pixel cross-entropy, optionally class-balanced."""
  c = ml_collections.ConfigDict()
  c.class_balancing = False  # median-frequency class weights (Eigen and Fergus 2014)
  # The weights raised to this power: 1 as Eigen and Fergus; below 1 softens them (the
  # rare classes still weigh more, the common ones are less over-predicted); 0 = none.
  c.balancing_power = 1.0
  # The training loss: the weighted pixel cross-entropy summed, then divided by the
  # labelled pixels ("pixels") or by the images ("images": each image's sum averaged over
  # the batch, as the ReSeg authors' code); renet_jax.nn.losses.NORMALIZATIONS. Evaluation
  # reports the mean over labelled pixels either way.
  c.normalization = "pixels"
  c.update(overrides)
  return c


def optimizer(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "adam"           # see renet_jax.training.optim.OPTIMIZERS
  c.learning_rate = 1e-3
  c.momentum = 0.9
  c.rho = 0.95              # adadelta
  c.eps = 1e-6              # adadelta
  c.weight_decay = 0.0      # L2, added to the gradient
  c.schedule = "constant"   # constant | exponential (per epoch) | cosine
  c.decay_rate = 0.95
  c.warmup_epochs = 0.0
  c.clip_norm = 0.0         # global norm; 0 = off
  # How learning_rate follows train.batch_size when it differs from the batch it was
  # tuned at: none | linear | sqrt (renet_jax.training.optim.peak_learning_rate).
  c.lr_scaling = "none"
  c.reference_batch_size = 64
  c.update(overrides)
  return c


def train(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.batch_size = 64
  c.eval_batch_size = 256
  c.num_epochs = 200
  c.patience = 10                # evaluations (epochs) without a better validation metric
  c.min_epochs = 0               # never stop early before this many epochs
  c.log_every_steps = 50
  c.checkpoint_every_steps = 0   # besides every epoch's; 0 = only those
  c.keep_checkpoints = 2
  c.stop_after_steps = 0         # end this invocation early (resumable); 0 = off
  c.time_budget_s = 0.0          # stop training after this much wall time; 0 = off
  c.update(overrides)
  return c
