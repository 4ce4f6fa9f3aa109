"""Optimisers from optax by name, with L2 weight decay, schedules and clipping."""

from typing import Sequence

import jax
import optax

OPTIMIZERS = ("adam", "adadelta", "sgd", "momentum", "nesterov", "rmsprop", "adagrad")
SCHEDULES = ("constant", "exponential", "cosine")


def make_optimizer(cfg, steps_per_epoch: int, total_steps: int,
                   frozen: Sequence[str] = ()) -> optax.GradientTransformation:
  """cfg: name, learning_rate, momentum, weight_decay (L2, added to the gradient as the
  thesis does, not decoupled), schedule, decay_rate (per epoch, exponential),
  warmup_epochs, clip_norm (global norm; 0 = off), plus adadelta's rho and eps.

  `frozen` names top-level parameter subtrees (e.g. ReSeg's "vgg") that are never
  updated, decayed or counted in the clipping norm."""
  lr = learning_rate_schedule(cfg, steps_per_epoch, total_steps)
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


def learning_rate_schedule(cfg, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  warmup = int(cfg.warmup_epochs * steps_per_epoch)
  if cfg.schedule == "constant":
    main = optax.constant_schedule(cfg.learning_rate)
  elif cfg.schedule == "exponential":
    main = optax.exponential_decay(cfg.learning_rate, transition_steps=steps_per_epoch,
                                   decay_rate=cfg.decay_rate, staircase=True)
  elif cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(cfg.learning_rate, max(1, total_steps - warmup))
  else:
    raise ValueError(f"Unknown schedule {cfg.schedule!r}; choose one of {SCHEDULES}.")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, warmup), main],
                                [warmup])
  return main
