"""Checks of a run's config that the locked ConfigDict cannot make (it already rejects
unknown fields and wrong types when the flags are parsed): impossible values, all
reported at once, before any work starts."""

import jax
import ml_collections

from renet_jax import optim
from renet_jax.data import augment


ON_DEVICE = ("auto", "true", "false")


def check_config(config: ml_collections.ConfigDict, task_cls):
  problems = []

  def need(ok, message):
    if not ok:
      problems.append(message)

  need(config.model.name in task_cls.MODELS,
       f"model.name={config.model.name!r}: choose one of {task_cls.MODELS}")
  need(config.optimizer.name in optim.OPTIMIZERS,
       f"optimizer.name={config.optimizer.name!r}: choose one of {optim.OPTIMIZERS}")
  need(config.optimizer.schedule in optim.SCHEDULES,
       f"optimizer.schedule={config.optimizer.schedule!r}: choose one of {optim.SCHEDULES}")
  need(config.data.name in task_cls.DATASETS,
       f"data.name={config.data.name!r}: choose one of {task_cls.DATASETS}")
  need(config.data.flip in augment.FLIPS,
       f"data.flip={config.data.flip!r}: choose one of {augment.FLIPS}")
  need(config.data.on_device in ON_DEVICE,
       f"data.on_device={config.data.on_device!r}: choose one of {ON_DEVICE}")
  need(config.optimizer.lr_scaling in optim.LR_SCALINGS,
       f"optimizer.lr_scaling={config.optimizer.lr_scaling!r}: choose one of "
       f"{optim.LR_SCALINGS}")
  for field in ("batch_size", "eval_batch_size", "num_epochs", "log_every_steps"):
    need(config.train[field] > 0, f"train.{field}={config.train[field]} must be positive")
  for field in ("batch_size", "eval_batch_size"):
    need(config.train[field] % jax.device_count() == 0,
         f"train.{field}={config.train[field]} must be a multiple of the "
         f"{jax.device_count()} devices (the batch is split evenly over them)")
  need(config.optimizer.learning_rate > 0,
       f"optimizer.learning_rate={config.optimizer.learning_rate} must be positive")
  model = config.model.get(config.model.name, {})
  for rate in ("dropout_rate", "input_mask_rate"):
    if rate in model:
      need(0 <= model[rate] < 1,
           f"model.{config.model.name}.{rate}={model[rate]} must lie in [0, 1)")
  if problems:
    raise ValueError("Invalid config:\n  " + "\n  ".join(problems))
