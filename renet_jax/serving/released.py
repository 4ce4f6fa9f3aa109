"""Released runs: a run folder's best_params.npz (`checkpoints.save_released`) evaluated
as training's final evaluation does, and checked against its results.json. A committed
run folder holds no checkpoints: config.json, task.json and best_params.npz (without the
frozen VGG front end) are all it needs, plus the raw dataset and the VGG weights file.
"""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import optax

from renet_jax import files, parallel
from renet_jax.evaluation import evaluators
from renet_jax.training import train
from renet_jax.training.config_checks import check_config
from renet_jax.training.tasks import Task

TOLERANCE = 1e-6  # of a metric recomputed from released parameters (pixel counts: exact)


def run_config(workdir: str, manual_dir: str = "", data_dir: str = "",
               vgg_weights: str = "") -> ml_collections.ConfigDict:
  """The run's config.json with this machine's paths (empty: the run's own)."""
  config = ml_collections.ConfigDict(files.read_json(os.path.join(workdir, "config.json")))
  if manual_dir:
    config.data.manual_dir = manual_dir
  if data_dir:
    config.data.data_dir = data_dir
  if vgg_weights:
    config.model.vgg_weights = vgg_weights
  return config


def evaluate(config: ml_collections.ConfigDict, params, task_cls: type[Task],
             splits=("test",)) -> dict:
  """{split_metric: value} of trained `params` (the released ones: frozen front end left
  out, added back from config.model.vgg_weights) on `splits`, computed as training's
  final evaluation does (the same task, steps and batches), without a workdir."""
  check_config(config, task_cls, jax.device_count())
  task = task_cls(config)
  params = task.init_params(jax.tree.map(jnp.asarray, params))
  on_device = train.data_on_device(config.data.on_device, task, splits)
  steps = train.Steps(task.model(), optax.identity(), task, parallel.make_mesh(),
                      on_device=train.host_splits(task, splits) if on_device else ())
  params = jax.device_put(params, steps.replicated)
  out = {}
  for split in splits:
    evaluator = evaluators.SplitMetrics(steps, task, split, config.train.eval_batch_size)
    metrics = evaluator.run(params)
    out.update({f"{split}_{k}": v for k, v in metrics.items()})
  return out


def differences(found: dict, recorded: dict) -> list[str]:
  """`metric found != recorded` for each number of `found` that results.json records
  otherwise (pixel counts exactly, the rest within TOLERANCE)."""
  out = []
  for key, value in found.items():
    if key not in recorded or not isinstance(value, (int, float)):
      continue
    exact = key.endswith("pixels")
    if (value != recorded[key]) if exact else not math.isclose(
        value, recorded[key], rel_tol=0, abs_tol=TOLERANCE):
      out.append(f"{key} {value!r} != {recorded[key]!r}")
  return out
