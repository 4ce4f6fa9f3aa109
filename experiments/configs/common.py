"""Config blocks every experiment shares (optimiser, training loop); not a config."""

import ml_collections


def optimizer(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "adam"           # see renet_jax.optim.OPTIMIZERS
  c.learning_rate = 1e-3
  c.momentum = 0.9
  c.rho = 0.95              # adadelta
  c.eps = 1e-6              # adadelta
  c.weight_decay = 0.0      # L2, added to the gradient
  c.schedule = "constant"   # constant | exponential (per epoch) | cosine
  c.decay_rate = 0.95
  c.warmup_epochs = 0.0
  c.clip_norm = 0.0         # global norm; 0 = off
  c.update(overrides)
  return c


def train(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.batch_size = 64
  c.eval_batch_size = 256
  c.num_epochs = 200
  c.patience = 10                # evaluations (epochs) without a better validation metric
  c.log_every_steps = 50
  c.checkpoint_every_steps = 0   # besides every epoch's; 0 = only those
  c.keep_checkpoints = 2
  c.stop_after_steps = 0         # end this invocation early (resumable); 0 = off
  c.update(overrides)
  return c
