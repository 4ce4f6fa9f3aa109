"""Training for any task: pure steps, data-parallel over a mesh, checkpoints, early stop.

  train_and_evaluate(config, workdir, ClassificationTask)  # experiments/classify.py
  train_and_evaluate(config, workdir, SegmentationTask)    # experiments/segment.py

Everything a run produces lands in `workdir`: config.json, task.json, metrics.jsonl,
results.json, learning_curve.png, TensorBoard events, checkpoints/ (latest), best/ (best
validation) and whatever the task adds (segmentation: panels/).
Re-running the same command resumes from checkpoints/ exactly (parameters, optimiser,
RNG and data-iterator state).
"""

import abc
import os
import time
from typing import Any

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P

from renet_jax import optim
from renet_jax.data import pipeline
from renet_jax.training_utils import (MetricsWriter, Progress, check_config,
                                      plot_learning_curves, write_json_atomic)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data, so checkpoints hold plain arrays


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D data-parallel mesh over all devices (of all processes)."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return jax.sharding.Mesh(devices, ("data",))


class Task(abc.ABC):
  """What `train_and_evaluate` needs to know about a problem; subclasses fill it in
  (`renet_jax.classification.ClassificationTask`, `renet_jax.segmentation
  .SegmentationTask`). Constructed from the config after `check_config` passed.

  Data: `sources` {split: random-access examples}, `transform` (per example),
  `batch_transform` (per batch), `random_transform` (per example, training only).
  Model selection: the validation metric `selection`, better when higher if
  `higher_is_better`; it picks the best checkpoint and drives early stopping.
  """
  DATASETS: tuple[str, ...] = ()
  MODELS: tuple[str, ...] = ()
  sources: dict
  transform: Any = None
  batch_transform: Any = None
  random_transform: Any = None
  selection: str = "accuracy"
  higher_is_better: bool = True
  frozen: tuple[str, ...] = ()  # top-level parameter subtrees the optimiser leaves alone

  @abc.abstractmethod
  def model(self) -> nn.Module:
    """The flax module mapping a batch of images to logits."""

  def init_params(self, params):
    """Fresh parameters -> the ones to start from (e.g. with pretrained weights)."""
    return params

  @abc.abstractmethod
  def loss(self, logits, batch) -> tuple[jax.Array, dict]:
    """(mean training loss, {metric: value}) of a batch."""

  @abc.abstractmethod
  def eval_sums(self, logits, batch) -> dict:
    """Arrays summed over the real (batch["mask"] = 1) examples of an evaluation batch."""

  @abc.abstractmethod
  def summarize(self, totals: dict) -> dict:
    """Summed `eval_sums` of a whole split -> its metrics (the selection one included)."""

  def describe(self) -> dict:
    """What serving a trained run needs besides config.json; written to task.json."""
    return {}

  def on_evaluation(self, params, workdir: str):
    """Called after each validation pass and with the best parameters at the end."""


def train_step(state: TrainState, batch, *, model, tx, loss_fn):
  """One optimiser step on a global batch; returns (state, metrics)."""
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

  def objective(params):
    logits = model.apply({"params": params}, batch["image"], train=True,
                         rngs={"dropout": rng})
    return loss_fn(logits, batch)

  (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return (state.replace(step=state.step + 1, params=params, opt_state=opt_state),
          {"loss": loss, **metrics})


def eval_step(params, batch, *, model, sums_fn):
  logits = model.apply({"params": params}, batch["image"], train=False)
  return sums_fn(logits, batch)


def evaluate(params, source, task: Task, eval_fn, batch_size, sharding) -> dict:
  """The task's metrics over a whole split: every example exactly once, across devices
  and processes (sums are reduced over the global batch by the jitted step)."""
  totals = {}
  local = batch_size // jax.process_count()
  for batch in pipeline.batches(source, batch_size=local, seed=0, train=False,
                                transform=task.transform,
                                batch_transform=task.batch_transform):
    batch = pad_batch(batch, local)
    batch = next(pipeline.on_mesh([batch], sharding))
    for k, v in eval_fn(params, batch).items():
      totals[k] = totals.get(k, 0) + np.asarray(v, np.float64)
  return task.summarize(totals)


def pad_batch(batch: dict, size: int) -> dict:
  """Pads a short final batch to `size` with masked-out copies of its first example."""
  n = len(batch["label"])
  out = {k: np.concatenate([v, np.repeat(v[:1], size - n, axis=0)]) if n < size else v
         for k, v in batch.items()}
  out["mask"] = (np.arange(size) < n).astype(np.float32)
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       task_cls: type[Task]) -> dict:
  """Trains, early-stops on the task's validation metric, evaluates the best checkpoint
  on validation and test, and writes everything to `workdir`."""
  check_config(config, task_cls)
  start_time = time.time()
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    write_json_atomic(os.path.join(workdir, "config.json"), config.to_dict())

  mesh = make_mesh()
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  tc = config.train
  if tc.batch_size % jax.device_count() or tc.eval_batch_size % jax.device_count():
    raise ValueError(f"train.batch_size {tc.batch_size} and train.eval_batch_size "
                     f"{tc.eval_batch_size} must be multiples of the {jax.device_count()} "
                     "devices; change them or the device count.")

  task = task_cls(config)
  if jax.process_index() == 0:
    write_json_atomic(os.path.join(workdir, "task.json"), task.describe())
  steps_per_epoch = len(task.sources["train"]) // tc.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"train.batch_size {tc.batch_size} exceeds the "
                     f"{len(task.sources['train'])} training examples.")
  total_steps = tc.num_epochs * steps_per_epoch
  model = task.model()
  tx = optim.make_optimizer(config.optimizer, steps_per_epoch, total_steps,
                            frozen=task.frozen)

  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  sample = task.transform(task.sources["train"][0])["image"][None]  # shape only
  params = jax.jit(model.init, static_argnames="train")(init_rng, sample)["params"]
  params = task.init_params(params)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=tx.init(params), rng=jax.random.key_data(dropout_rng))
  state = jax.device_put(state, replicated)
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))

  train_iter = iter(pipeline.batches(
      task.sources["train"], batch_size=tc.batch_size // jax.process_count(),
      seed=config.seed, train=True, transform=task.transform,
      batch_transform=task.batch_transform, random_transform=task.random_transform,
      worker_count=config.data.worker_count))
  progress_state = {"best_score": None, "best_step": 0, "evals_without_improvement": 0}

  options = ocp.CheckpointManagerOptions(max_to_keep=tc.keep_checkpoints, create=True)
  latest = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), options=options)
  best = ocp.CheckpointManager(os.path.join(workdir, "best"),
                               options=ocp.CheckpointManagerOptions(max_to_keep=1,
                                                                    create=True))
  abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)

  def restore(manager, step):
    """(state, progress) saved by `save` at `step`, typed like the fresh state."""
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), progress=ocp.args.JsonRestore()))
    return restored.state, restored.progress

  if latest.latest_step() is not None:
    step = latest.latest_step()
    state, saved = restore(latest, step)
    train_iter.set_state(saved["iterator"])
    progress_state = saved["early_stopping"]
    logging.warning("Resumed from %s/checkpoints at step %d.", workdir, step)

  def save(manager, step):
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        progress=ocp.args.JsonSave({"iterator": train_iter.get_state(),
                                    "early_stopping": progress_state})))
    manager.wait_until_finished()

  step_fn = jax.jit(lambda s, b: train_step(s, b, model=model, tx=tx, loss_fn=task.loss),
                    in_shardings=(replicated, batch_sharding),
                    out_shardings=(replicated, replicated), donate_argnums=0)
  eval_fn = jax.jit(lambda p, b: eval_step(p, b, model=model, sums_fn=task.eval_sums),
                    in_shardings=(replicated, batch_sharding), out_shardings=replicated)

  def run_evaluation(params, split):
    return evaluate(params, task.sources[split], task, eval_fn, tc.eval_batch_size,
                    batch_sharding)

  writer = MetricsWriter(workdir, enabled=jax.process_index() == 0)
  step = int(state.step)
  stop_at = total_steps if not tc.stop_after_steps else min(total_steps,
                                                            step + tc.stop_after_steps)
  progress = Progress(total_steps, step, tc.batch_size)
  window = {"sums": {}, "n": 0, "t": time.time()}
  # A resumed run that had already early-stopped goes straight to the final evaluation.
  stopped_early = bool(tc.patience and
                       progress_state["evals_without_improvement"] >= tc.patience)
  if stopped_early:
    stop_at = step
  try:
    while step < stop_at:
      batch = next(pipeline.on_mesh([next(train_iter)], batch_sharding))
      state, metrics = step_fn(state, batch)
      step += 1
      metrics = {k: float(v) for k, v in metrics.items()}
      if not np.isfinite(metrics["loss"]):
        raise FloatingPointError(
            f"The training loss became {metrics['loss']} at step {step}; stopped. The last "
            f"good checkpoint (step {latest.latest_step()}) is kept in {workdir}/checkpoints."
            " Lower optimizer.learning_rate or set optimizer.clip_norm, then rerun.")
      for k, v in metrics.items():
        window["sums"][k] = window["sums"].get(k, 0.0) + v
      window["n"] += 1
      progress.update(step, metrics["loss"])
      if step % tc.log_every_steps == 0 or step % steps_per_epoch == 0:
        elapsed = time.time() - window["t"]
        writer.write(step, "train", {
            **{k: v / window["n"] for k, v in window["sums"].items()},
            "images_per_s": window["n"] * tc.batch_size / max(elapsed, 1e-9),
            "epoch": step / steps_per_epoch})
        window = {"sums": {}, "n": 0, "t": time.time()}
      if step % steps_per_epoch == 0 or step == total_steps:
        val = run_evaluation(state.params, "validation")
        writer.write(step, "validation", {**_scalars(val), "epoch": step / steps_per_epoch})
        score = val[task.selection] * (1 if task.higher_is_better else -1)
        if progress_state["best_score"] is None or score > progress_state["best_score"]:
          progress_state.update(best_score=score, best_step=step,
                                evals_without_improvement=0)
          save(best, step)
        else:
          progress_state["evals_without_improvement"] += 1
        save(latest, step)
        if jax.process_index() == 0:
          task.on_evaluation(state.params, workdir)
        if tc.patience and progress_state["evals_without_improvement"] >= tc.patience:
          logging.warning("Early stopping at step %d: no better validation %s for %d "
                          "evaluations.", step, task.selection, tc.patience)
          stopped_early = True
          break
      elif tc.checkpoint_every_steps and step % tc.checkpoint_every_steps == 0:
        save(latest, step)
    if step == stop_at and not stopped_early and step < total_steps:
      if latest.latest_step() != step:  # an invocation cut short resumes from here
        save(latest, step)
      logging.warning("Stopped after step %d as asked (train.stop_after_steps); rerun the "
                      "same command to resume.", step)
      return {"stopped_at_step": step}
  finally:
    progress.close()
    writer.flush()

  # The best checkpoint, evaluated on validation and test.
  best_step = best.latest_step()
  best_params = restore(best, best_step)[0].params
  val = run_evaluation(best_params, "validation")
  test = run_evaluation(best_params, "test")
  results = {
      "dataset": config.data.name, "model": config.model.name,
      "selection_metric": f"validation_{task.selection}",
      "selection_goal": "max" if task.higher_is_better else "min",
      "best_step": best_step, "steps": step, "epochs": step / steps_per_epoch,
      "stopped_early": stopped_early,
      **{f"validation_{k}": v for k, v in val.items()},
      **{f"test_{k}": v for k, v in test.items()},
      "num_params": num_params, "wall_time_s": time.time() - start_time,
      "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
      "process_count": jax.process_count(),
  }
  if jax.process_index() == 0:
    task.on_evaluation(best_params, workdir)
    write_json_atomic(os.path.join(workdir, "results.json"), results)
    plot_learning_curves(os.path.join(workdir, "metrics.jsonl"),
                         os.path.join(workdir, "learning_curve.png"))
  return results


def _scalars(metrics: dict) -> dict:
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float, np.number))}
