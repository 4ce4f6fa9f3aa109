"""Classification training: pure steps, data-parallel over a mesh, checkpoints, early stop.

  train_and_evaluate(config, workdir)  # what experiments/classify.py runs

Everything a run produces lands in `workdir`: config.json, metrics.jsonl, results.json,
learning_curve.png, TensorBoard events, checkpoints/ (latest) and best/ (best validation).
Re-running the same command resumes from checkpoints/ exactly (parameters, optimiser,
RNG and data-iterator state).
"""

import dataclasses
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
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P

from renet_jax import models, optim
from renet_jax.data import augment, datasets, pipeline, preprocess
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


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_step(state: TrainState, batch, *, model, tx):
  """One optimiser step on a global batch; returns (state, metrics)."""
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

  def loss_fn(params):
    logits = model.apply({"params": params}, batch["image"], train=True,
                         rngs={"dropout": rng})
    return cross_entropy(logits, batch["label"]).mean(), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return (state.replace(step=state.step + 1, params=params, opt_state=opt_state),
          {"loss": loss, "accuracy": accuracy})


def eval_step(params, batch, *, model):
  """Sums over the real (mask = 1) examples of a padded batch."""
  logits = model.apply({"params": params}, batch["image"], train=False)
  mask = batch["mask"]
  return {"loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
          "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
          "count": jnp.sum(mask)}


@dataclasses.dataclass
class ClassificationData:
  sources: dict
  num_classes: int
  transform: Any        # per example: scaling
  batch_transform: Any  # per batch: ZCA / standardisation
  random_transform: Any  # per example, after them: flips and shifts (training only)


def classification_data(cfg: ml_collections.ConfigDict) -> ClassificationData:
  """The splits of `cfg.name` with the preprocessing and augmentation of the config."""
  sources, folder = datasets.prepare(cfg.name, cfg.data_dir or None, cfg.manual_dir or None)
  stats = preprocess.dataset_image_stats(folder, sources["train"], cfg.zca, cfg.standardize,
                                         cfg.zca_epsilon)

  def transform(ex):
    return {"image": preprocess.scale(ex["image"]), "label": np.int32(ex["label"])}

  def batch_transform(batch):
    return dict(batch, image=stats.apply(batch["image"]))

  def random_transform(rng, ex):
    image = ex["image"]
    if cfg.flip != "none":
      image, _ = augment.random_flip(rng, image, vertical=cfg.flip == "both")
    if cfg.shift:
      image, _ = augment.random_shift(rng, image, pixels=cfg.shift)
    return dict(ex, image=image)

  return ClassificationData(sources, 10, transform, batch_transform, random_transform)


def evaluate(params, source, data: ClassificationData, eval_fn, batch_size, sharding):
  """Loss and error over a whole split (every example exactly once, across devices)."""
  totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
  local = batch_size // jax.process_count()
  for batch in pipeline.batches(source, batch_size=local, seed=0, train=False,
                                transform=data.transform,
                                batch_transform=data.batch_transform):
    batch = pad_batch(batch, local)
    batch = next(pipeline.on_mesh([batch], sharding))
    for k, v in eval_fn(params, batch).items():
      totals[k] += float(v)
  count = max(totals["count"], 1.0)
  accuracy = totals["correct"] / count
  return {"loss": totals["loss_sum"] / count, "accuracy": accuracy, "error": 1 - accuracy,
          "count": int(totals["count"])}


def pad_batch(batch: dict, size: int) -> dict:
  """Pads a short final batch to `size` with masked-out copies of its first example."""
  n = len(batch["label"])
  out = {k: np.concatenate([v, np.repeat(v[:1], size - n, axis=0)]) if n < size else v
         for k, v in batch.items()}
  out["mask"] = (np.arange(size) < n).astype(np.float32)
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, early-stops on validation error, evaluates the best checkpoint on test."""
  check_config(config)
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

  data = classification_data(config.data)
  steps_per_epoch = len(data.sources["train"]) // tc.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"train.batch_size {tc.batch_size} exceeds the "
                     f"{len(data.sources['train'])} training examples.")
  total_steps = tc.num_epochs * steps_per_epoch
  model = models.make_classifier(config.model, data.num_classes)
  tx = optim.make_optimizer(config.optimizer, steps_per_epoch, total_steps)

  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  sample = data.transform(data.sources["train"][0])["image"][None]  # shape only
  params = jax.jit(model.init, static_argnames="train")(init_rng, sample)["params"]
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=tx.init(params), rng=jax.random.key_data(dropout_rng))
  state = jax.device_put(state, replicated)
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))

  train_iter = iter(pipeline.batches(
      data.sources["train"], batch_size=tc.batch_size // jax.process_count(),
      seed=config.seed, train=True, transform=data.transform,
      batch_transform=data.batch_transform, random_transform=data.random_transform,
      worker_count=config.data.worker_count))
  progress_state = {"best_error": None, "best_step": 0, "evals_without_improvement": 0}

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

  step_fn = jax.jit(lambda s, b: train_step(s, b, model=model, tx=tx),
                    in_shardings=(replicated, batch_sharding),
                    out_shardings=(replicated, replicated), donate_argnums=0)
  eval_fn = jax.jit(lambda p, b: eval_step(p, b, model=model),
                    in_shardings=(replicated, batch_sharding), out_shardings=replicated)
  writer = MetricsWriter(workdir, enabled=jax.process_index() == 0)
  step = int(state.step)
  stop_at = total_steps if not tc.stop_after_steps else min(total_steps,
                                                            step + tc.stop_after_steps)
  progress = Progress(total_steps, step, tc.batch_size)
  window = {"loss": 0.0, "accuracy": 0.0, "n": 0, "t": time.time()}
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
      loss = float(metrics["loss"])
      if not np.isfinite(loss):
        raise FloatingPointError(
            f"The training loss became {loss} at step {step}; stopped. The last good "
            f"checkpoint (step {latest.latest_step()}) is kept in {workdir}/checkpoints. "
            "Lower optimizer.learning_rate or set optimizer.clip_norm, then rerun.")
      window["loss"] += loss
      window["accuracy"] += float(metrics["accuracy"])
      window["n"] += 1
      progress.update(step, loss)
      if step % tc.log_every_steps == 0 or step % steps_per_epoch == 0:
        elapsed = time.time() - window["t"]
        writer.write(step, "train", {
            "loss": window["loss"] / window["n"], "accuracy": window["accuracy"] / window["n"],
            "images_per_s": window["n"] * tc.batch_size / max(elapsed, 1e-9),
            "epoch": step / steps_per_epoch})
        window = {"loss": 0.0, "accuracy": 0.0, "n": 0, "t": time.time()}
      if step % steps_per_epoch == 0 or step == total_steps:
        val = evaluate(state.params, data.sources["validation"], data, eval_fn,
                       tc.eval_batch_size, batch_sharding)
        writer.write(step, "validation", {**val, "epoch": step / steps_per_epoch})
        improved = (progress_state["best_error"] is None or
                    val["error"] < progress_state["best_error"])
        if improved:
          progress_state.update(best_error=val["error"], best_step=step,
                                evals_without_improvement=0)
          save(best, step)
        else:
          progress_state["evals_without_improvement"] += 1
        save(latest, step)
        if tc.patience and progress_state["evals_without_improvement"] >= tc.patience:
          logging.warning("Early stopping at step %d: no better validation error for %d "
                       "evaluations.", step, tc.patience)
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
  val = evaluate(best_params, data.sources["validation"], data, eval_fn,
                 tc.eval_batch_size, batch_sharding)
  test = evaluate(best_params, data.sources["test"], data, eval_fn, tc.eval_batch_size,
                  batch_sharding)
  results = {
      "dataset": config.data.name, "model": config.model.name,
      "best_step": best_step, "steps": step, "epochs": step / steps_per_epoch,
      "stopped_early": stopped_early,
      "validation_error": val["error"], "validation_accuracy": val["accuracy"],
      "validation_loss": val["loss"], "test_error": test["error"],
      "test_accuracy": test["accuracy"], "test_loss": test["loss"],
      "test_examples": test["count"], "num_params": num_params,
      "wall_time_s": time.time() - start_time,
      "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
      "process_count": jax.process_count(),
  }
  if jax.process_index() == 0:
    write_json_atomic(os.path.join(workdir, "results.json"), results)
    plot_learning_curves(os.path.join(workdir, "metrics.jsonl"),
                         os.path.join(workdir, "learning_curve.png"))
  return results
