"""Training for any task: pure steps, data-parallel over a mesh, checkpoints, early stop.

  train_and_evaluate(config, workdir, tasks.ClassificationTask)  # experiments/classify.py
  train_and_evaluate(config, workdir, tasks.SegmentationTask)    # experiments/segment.py

Everything a run produces lands in `workdir`: config.json, task.json, metrics.jsonl,
results.json, learning_curve.png, TensorBoard events, checkpoints/ (latest), best/ (best
validation) and whatever the task adds (segmentation: panels/).
Re-running the same command resumes from checkpoints/ exactly (parameters, optimiser,
RNG and data-iterator state).
"""

import os
import time
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from renet_jax import files, optim, parallel, pictures
from renet_jax.checkpoints import BEST, LATEST, Checkpoints
from renet_jax.config_checks import check_config
from renet_jax.data import pipeline
from renet_jax.early_stopping import EarlyStopping
from renet_jax.logs import MetricsWriter, Progress, TrainWindow
from renet_jax.tasks import Task


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data, so checkpoints hold plain arrays


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
  on validation and test, and writes everything to `workdir`.

  Returns the run's results: with "finished" True (also written to results.json) they
  hold the best checkpoint's validation and test metrics; False means this invocation
  stopped early on purpose (train.stop_after_steps) and the same call resumes it.
  """
  check_config(config, task_cls)
  start_time = time.time()
  workdir = os.path.abspath(os.path.expanduser(workdir))
  tc = config.train
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  if is_main:
    files.write_json(os.path.join(workdir, "config.json"), config.to_dict())
  task = task_cls(config)
  if is_main:
    files.write_json(os.path.join(workdir, "task.json"), task.describe())
  steps_per_epoch = len(task.sources["train"]) // tc.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"train.batch_size {tc.batch_size} exceeds the "
                     f"{len(task.sources['train'])} training examples.")
  total_steps = tc.num_epochs * steps_per_epoch

  mesh = parallel.make_mesh()
  model = task.model()
  tx = optim.make_optimizer(config.optimizer, steps_per_epoch, total_steps,
                            frozen=task.frozen)
  state = jax.device_put(initial_state(config.seed, model, tx, task),
                         NamedSharding(mesh, P()))
  step_fn, eval_fn = jitted_steps(model, tx, task, mesh)
  batch_sharding = NamedSharding(mesh, P("data"))

  def run_evaluation(params, split):
    return evaluate(params, task.sources[split], task, eval_fn, tc.eval_batch_size,
                    batch_sharding)

  train_iter = iter(pipeline.batches(
      task.sources["train"], batch_size=tc.batch_size // jax.process_count(),
      seed=config.seed, train=True, transform=task.transform,
      batch_transform=task.batch_transform, random_transform=task.random_transform,
      worker_count=config.data.worker_count))
  ckpts = Checkpoints(workdir, tc.keep_checkpoints, state)
  stopping = EarlyStopping(tc.patience)
  if ckpts.step() is not None:
    state, progress = ckpts.restore(LATEST)
    train_iter.set_state(progress["iterator"])
    stopping = EarlyStopping.from_json(tc.patience, progress["early_stopping"])
    logging.warning("Resumed from %s/checkpoints at step %d.", workdir, ckpts.step())

  def save(which):
    ckpts.save(which, int(state.step), state, {"iterator": train_iter.get_state(),
                                               "early_stopping": stopping.to_json()})

  writer = MetricsWriter(workdir, enabled=is_main)
  step = int(state.step)
  stop_at = min(total_steps, step + tc.stop_after_steps) if tc.stop_after_steps else total_steps
  stopped_by = "early_stopping" if stopping.should_stop else None
  bar = Progress(total_steps, step, tc.batch_size)
  window = TrainWindow(tc.batch_size)
  try:
    while stopped_by is None and step < stop_at:
      batch = next(pipeline.on_mesh([next(train_iter)], batch_sharding))
      state, metrics = step_fn(state, batch)
      step += 1
      metrics = {k: float(v) for k, v in metrics.items()}
      if not np.isfinite(metrics["loss"]):
        raise FloatingPointError(
            f"The training loss became {metrics['loss']} at step {step}; stopped. The last "
            f"good checkpoint (step {ckpts.step()}) is kept in {workdir}/checkpoints."
            " Lower optimizer.learning_rate or set optimizer.clip_norm, then rerun.")
      window.add(metrics)
      bar.update(step, metrics["loss"])
      end_of_epoch = step % steps_per_epoch == 0
      if step % tc.log_every_steps == 0 or end_of_epoch:
        window.write(writer, step, epoch=step / steps_per_epoch)
      if end_of_epoch or step == total_steps:
        val = run_evaluation(state.params, "validation")
        writer.write(step, "validation", {**_scalars(val), "epoch": step / steps_per_epoch})
        sign = 1 if task.higher_is_better else -1
        if stopping.update(sign * val[task.selection], step):
          save(BEST)
        save(LATEST)
        if is_main:
          task.on_evaluation(state.params, workdir)
        if stopping.should_stop:
          logging.warning("Early stopping at step %d: no better validation %s for %d "
                          "evaluations.", step, task.selection, tc.patience)
          stopped_by = "early_stopping"
      elif tc.checkpoint_every_steps and step % tc.checkpoint_every_steps == 0:
        save(LATEST)
    if stopped_by is None:
      stopped_by = "num_epochs" if step == total_steps else "stop_after_steps"
    if stopped_by == "stop_after_steps" and ckpts.step() != step:
      save(LATEST)  # an invocation cut short resumes from here
    best_step = ckpts.step(BEST)
    best_params = ckpts.restore(BEST)[0].params if stopped_by != "stop_after_steps" else None
  finally:
    bar.close()
    writer.flush()
    ckpts.close()

  results = {"dataset": config.data.name, "model": config.model.name,
             "finished": best_params is not None, "stopped_by": stopped_by,
             "steps": step, "epochs": step / steps_per_epoch}
  if not results["finished"]:
    logging.warning("Stopped after step %d as asked (train.stop_after_steps); rerun the "
                    "same command to resume.", step)
    return results
  val = run_evaluation(best_params, "validation")
  test = run_evaluation(best_params, "test")
  results.update({
      "selection_metric": f"validation_{task.selection}",
      "selection_goal": "max" if task.higher_is_better else "min",
      "best_step": best_step,
      **{f"validation_{k}": v for k, v in val.items()},
      **{f"test_{k}": v for k, v in test.items()},
      "num_params": sum(int(np.prod(p.shape)) for p in jax.tree.leaves(best_params)),
      "wall_time_s": time.time() - start_time,
      "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
      "process_count": jax.process_count(),
  })
  if is_main:
    task.on_evaluation(best_params, workdir)
    files.write_json(os.path.join(workdir, "results.json"), results)
    pictures.plot_learning_curves(os.path.join(workdir, "metrics.jsonl"),
                                  os.path.join(workdir, "learning_curve.png"))
  return results


def jitted_steps(model, tx, task: Task, mesh):
  """(train step, evaluation step) jitted for `mesh`: batches split over its "data"
  axis, the state replicated; the train step donates the state it is given."""
  replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  step_fn = jax.jit(lambda s, b: train_step(s, b, model=model, tx=tx, loss_fn=task.loss),
                    in_shardings=(replicated, batch), out_shardings=(replicated, replicated),
                    donate_argnums=0)
  eval_fn = jax.jit(lambda p, b: eval_step(p, b, model=model, sums_fn=task.eval_sums),
                    in_shardings=(replicated, batch), out_shardings=replicated)
  return step_fn, eval_fn


def initial_state(seed: int, model, tx, task: Task) -> TrainState:
  """Fresh parameters (shaped by one training example, then `task.init_params`), the
  optimiser state, and the dropout key, all from `seed`."""
  init_rng, dropout_rng = jax.random.split(jax.random.key(seed))
  sample = task.transform(task.sources["train"][0])["image"][None]  # shape only
  params = jax.jit(model.init, static_argnames="train")(init_rng, sample)["params"]
  params = task.init_params(params)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), rng=jax.random.key_data(dropout_rng))


def _scalars(metrics: dict) -> dict:
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float, np.number))}
