"""Optimisers from optax by name, with L2 weight decay, schedules and clipping."""

from typing import Sequence

import jax
import optax

OPTIMIZERS = ("adam", "adadelta", "sgd", "momentum", "nesterov", "rmsprop", "adagrad")
SCHEDULES = ("constant", "exponential", "cosine")
LR_SCALINGS = ("none", "linear", "sqrt")


def make_optimizer(cfg, steps_per_epoch: int, total_steps: int, batch_size: int | None = None,
                   frozen: Sequence[str] = ()) -> optax.GradientTransformation:
  """cfg: name, learning_rate, momentum, weight_decay (L2, added to the gradient as the
  thesis does, not decoupled), schedule, decay_rate (per epoch, exponential),
  warmup_epochs, clip_norm (global norm; 0 = off), lr_scaling and reference_batch_size
  (see `peak_learning_rate`), plus adadelta's rho and eps.

  `frozen` names top-level parameter subtrees (e.g. ReSeg's "vgg") that are never
  updated, decayed or counted in the clipping norm."""
  lr = learning_rate_schedule(cfg, steps_per_epoch, total_steps, batch_size)
  name = cfg.name
  if name == "adam":
    opt = optax.adam(lr)
  elif name == "adadelta":
    opt = optax.adadelta(lr, rho=cfg.rho, eps=cfg.eps)
  elif name == "sgd":
    opt = optax.sgd(lr)
  elif name in ("momentum", "nesterov"):
    opt = optax.sgd(lr, momentum=cfg.momentum, nesterov=name == "nesterov")
  elif name == "rmsprop":
    opt = optax.rmsprop(lr)
  elif name == "adagrad":
    opt = optax.adagrad(lr)
  else:
    raise ValueError(f"Unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")
  chain = []
  if cfg.clip_norm:
    chain.append(optax.clip_by_global_norm(cfg.clip_norm))
  if cfg.weight_decay:
    chain.append(optax.add_decayed_weights(cfg.weight_decay))
  tx = optax.chain(*chain, opt)
  if not frozen:
    return tx
  label = lambda params: {k: jax.tree.map(lambda _: "frozen" if k in frozen else "train", v)
                          for k, v in params.items()}
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, label)


def peak_learning_rate(cfg, batch_size: int | None = None) -> float:
  """cfg.learning_rate, tuned at cfg.reference_batch_size, followed to `batch_size`:
  lr_scaling "linear" (x batch/reference: the rule for SGD, Goyal et al. 2017), "sqrt"
  (x sqrt(batch/reference): the usual rule for Adam-like optimisers), "none"."""
  if cfg.lr_scaling not in LR_SCALINGS:
    raise ValueError(f"Unknown lr_scaling {cfg.lr_scaling!r}; choose one of {LR_SCALINGS}.")
  if batch_size is None or cfg.lr_scaling == "none":
    return cfg.learning_rate
  ratio = batch_size / cfg.reference_batch_size
  return cfg.learning_rate * (ratio if cfg.lr_scaling == "linear" else ratio ** 0.5)


def learning_rate_schedule(cfg, steps_per_epoch: int, total_steps: int,
                           batch_size: int | None = None) -> optax.Schedule:
  lr = peak_learning_rate(cfg, batch_size)
  warmup = int(cfg.warmup_epochs * steps_per_epoch)
  if cfg.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif cfg.schedule == "exponential":
    main = optax.exponential_decay(lr, transition_steps=steps_per_epoch,
                                   decay_rate=cfg.decay_rate, staircase=True)
  elif cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup))
  else:
    raise ValueError(f"Unknown schedule {cfg.schedule!r}; choose one of {SCHEDULES}.")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main
