"""Training for any task: pure steps, data-parallel over a mesh, checkpoints, early stop.

  train_and_evaluate(config, workdir, tasks.ClassificationTask)  # experiments/classify.py
  train_and_evaluate(config, workdir, tasks.SegmentationTask)    # experiments/segment.py

Everything a run produces lands in `workdir`: config.json, task.json, metrics.jsonl,
results.json, learning_curve.png, TensorBoard events, checkpoints/ (the latest and the
best validation step) and what the config's evaluators write (segmentation: panels/).
Re-running the same command resumes exactly (parameters, optimiser, RNG and data-iterator state).

The device is kept busy: batches are prefetched onto the mesh by a background thread
(or, with data.on_device, the whole split lives on the devices and only indices are
fed); augmentation runs inside the jitted step; training metrics are summed on the
device and read at logging boundaries only; checkpoints are written asynchronously.
metrics.jsonl and results.json say where the time went (step, data, evaluation,
checkpoints).
"""

import contextlib
import functools
import os
from typing import Any, Iterable, Iterator

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from renet_jax import files, parallel, pictures, provenance
from renet_jax.data import pipeline, registry
from renet_jax.errors import ConfigError, ModelCheckError
from renet_jax.evaluation import evaluators
from renet_jax.kernels import recurrence
from renet_jax.training import checkpoints, optim, workdir as workdir_lib
from renet_jax.training.checkpoints import Checkpoints
from renet_jax.training.config_checks import check_config
from renet_jax.training.early_stopping import EarlyStopping
from renet_jax.training.logs import Clock, MetricsWriter, Progress, Throughput
from renet_jax.training.tasks import Task


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data, so checkpoints hold plain arrays


def train_step(state: TrainState, batch, constants, *, model, tx, task: Task):
  """One optimiser step on a global batch (preprocessed and augmented here, from keys
  derived from the state's RNG and step); returns (state, metrics)."""
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  augment_key, dropout_key = jax.random.split(rng)
  batch = task.preprocess(constants, batch, augment_key, train=True)

  def objective(params):
    logits = model.apply({"params": params}, batch["image"], train=True,
                         rngs={"dropout": dropout_key})
    return task.loss(logits, batch)

  (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return (state.replace(step=state.step + 1, params=params, opt_state=opt_state),
          {"loss": loss, **metrics})


def eval_step(params, batch, constants, *, model, task: Task):
  """The task's evaluation sums of one (padded, masked) batch."""
  batch = task.preprocess(constants, batch, None, train=False)
  return task.eval_sums(model.apply({"params": params}, batch["image"], train=False), batch)


class Steps:
  """The jitted steps for `mesh`, both accumulating on the device:

    train(state, sums, batch) -> (state, sums + this step's metrics)
    evaluate(params, totals, batch, split) -> totals + this batch's sums

  Batches are split over the mesh's "data" axis. What the steps read besides the state
  and the batch is held here, replicated: the task's constant arrays (`task.constants`,
  fitted statistics) and, for the splits in `on_device` ((split, host arrays) pairs,
  taken one at a time so that one split at most is on the host besides the devices'
  copies: `host_splits`), the whole split on the devices, which a batch of indices then
  gathers from (other splits' batches carry their examples). Training sums also count the steps
  ("steps") and record the first step whose loss was not finite ("nonfinite_step", -1
  if none). `train_sums` and `eval_totals` give fresh (zero) sums for a first batch.
  """

  def __init__(self, model, tx, task: Task, mesh, on_device: Iterable = ()):
    self._model, self._tx, self._task = model, tx, task
    self.replicated = NamedSharding(mesh, P())
    self.split = NamedSharding(mesh, P("data"))
    r, s = self.replicated, self.split
    self.constants = jax.device_put(task.constants, r)
    self.data = {split: {k: jax.make_array_from_callback(v.shape, r,
                                                         lambda index, v=v: v[index])
                         for k, v in arrays.items()}
                 for split, arrays in on_device}
    self._train_jit = jax.jit(self._train, in_shardings=(r, r, s, r, r),
                              out_shardings=(r, r), donate_argnums=(0, 1))
    self._evaluate_jit = jax.jit(self._evaluate, in_shardings=(r, r, s, r, r),
                                 out_shardings=r, donate_argnums=1)
    # Traced once: `train_sums` and `eval_totals` read their output shapes off the same
    # trace the steps then reuse inside theirs (tracing is much of a short run's start-up).
    self._step_metrics = jax.jit(self._train_metrics)
    self._batch_sums = jax.jit(self._sums)

  def train(self, state, sums, batch):
    return self._train_jit(state, sums, batch, self.constants, self.data.get("train", {}))

  def evaluate(self, params, totals, batch, split: str):
    return self._evaluate_jit(params, totals, batch, self.constants, self.data.get(split, {}))

  def _batch(self, batch, data):
    return jax.lax.with_sharding_constraint(pipeline.gather(data, batch), self.split)

  def _train_metrics(self, state, batch, constants, data):
    """One training step's (state, metrics)."""
    return train_step(state, self._batch(batch, data), constants, model=self._model, tx=self._tx,
                      task=self._task)

  def _sums(self, params, batch, constants, data):
    return eval_step(params, self._batch(batch, data), constants, model=self._model,
                     task=self._task)

  def _train(self, state, sums, batch, constants, data):
    state, metrics = self._step_metrics(state, batch, constants, data)
    bad = (sums["nonfinite_step"] < 0) & ~jnp.isfinite(metrics["loss"])
    return state, {**{k: sums[k] + metrics[k] for k in metrics}, "steps": sums["steps"] + 1,
                   "nonfinite_step": jnp.where(bad, state.step, sums["nonfinite_step"])}

  def _evaluate(self, params, totals, batch, constants, data):
    return jax.tree.map(jnp.add, totals, self._batch_sums(params, batch, constants, data))

  def train_sums(self, state, batch):
    shapes = jax.eval_shape(self._step_metrics, state, batch, self.constants,
                            self.data.get("train", {}))[1]
    sums = {**_zeros(shapes), "steps": jnp.zeros((), jnp.int32),
            "nonfinite_step": jnp.full((), -1, jnp.int32)}
    return jax.device_put(sums, self.replicated)

  def eval_totals(self, params, batch, split: str):
    shapes = jax.eval_shape(self._batch_sums, params, batch, self.constants,
                            self.data.get(split, {}))
    return jax.device_put(_zeros(shapes), self.replicated)

  def evaluation_batches(self, source, split: str, batch_size: int, transform):
    """`split` once, in order, as padded and masked batches on the mesh: indices into
    the split on the devices where it is there, else the examples themselves."""
    on_device = split in self.data
    for batch in pipeline.evaluation_batches(len(source) if on_device else source,
                                             batch_size=batch_size, transform=transform,
                                             on_device=on_device):
      yield pipeline.on_mesh(batch, self.split)


def _zeros(shapes):
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       task_cls: type[Task]) -> dict:
  """Trains, early-stops on the task's validation metric, evaluates the best checkpoint
  on validation and test, and writes everything to `workdir`.

  Returns the run's results: with "finished" True (also written to results.json) they
  hold the best checkpoint's validation and test metrics; False means this invocation
  stopped early on purpose (train.stop_after_steps) and the same call resumes it.
  """
  clock = Clock()
  check_config(config, task_cls, jax.device_count())
  task = task_cls(config)  # opens the dataset: DatasetError if it cannot be read
  preflight(config, task)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  config_dict = config.to_dict()
  workdir_lib.check_same_run(workdir, config_dict)
  # Nothing was written before this point. Process 0 owns the workdir.
  with contextlib.ExitStack() as owned:
    if jax.process_index() == 0:
      owned.enter_context(workdir_lib.lock(workdir))
      workdir_lib.start(workdir, config_dict)
      files.write_json(os.path.join(workdir, "task.json"), task.describe())
      if task.serving_arrays():
        files.write_atomic(os.path.join(workdir, "preprocessing.npz"), lambda tmp: np.savez(
            tmp, **{k: np.asarray(v) for k, v in task.serving_arrays().items()}))
    run = Run(config, task, workdir, clock)
    record = provenance.Record(workdir)
    try:
      if run.is_main:
        record.start(first_config=files.read_json(os.path.join(workdir, workdir_lib.CONFIG)),
                     config=config_dict, data=task.data_record,
                     weights=weights_record(config, task), start_step=int(run.state.step),
                     settings={"features_cached": task.cached, "data_on_device": run.on_device})
      stopped_by = run.fit()
      best_params = None if stopped_by == "stop_after_steps" else run.best_params()
    finally:
      run.close()
    if run.is_main:
      record.end(int(run.state.step), stopped_by)
    return run.results(stopped_by, best_params, record.record)


def weights_record(config, task: Task) -> dict | None:
  """The pretrained front end's file and fingerprint (of its parameters, as loaded), or
  None for a model without one."""
  if task.vgg_weights is None:
    return None
  return {"file": os.path.basename(config.model.vgg_weights),
          "params_sha256": provenance.weights_fingerprint(task.vgg_weights.params)}


def preflight(config: ml_collections.ConfigDict, task: Task):
  """The checks that need the data, made before anything is written: the training set
  holds a batch (a user's folder smaller than train.batch_size trains with the largest
  batch it holds, said in a warning), and the model accepts the images (the library's
  own checks, such as patch sizes dividing the image size, run on an abstract trace).
  ConfigError if not; any other exception of the model's trace keeps its traceback (a
  bug, not the config)."""
  n_train, batch = len(task.sources["train"]), config.train.batch_size
  if batch > n_train and registry.is_user_folder(config.data.name):
    # A user's small folder trains, with the largest batch it holds (config.json says so).
    fitting = n_train - n_train % jax.device_count()
    if fitting:
      logging.warning("train.batch_size=%d exceeds the %d training examples of your folder: "
                      "training with batches of %d (set --config.train.batch_size to "
                      "choose another).", batch, n_train, fitting)
      config.train.batch_size = batch = fitting
  if batch > n_train:
    raise ConfigError(f"train.batch_size={batch} exceeds the {n_train} training examples "
                      f"of {config.data.name} (use a batch of at most {n_train})")
  image = example_image(task)
  try:
    jax.eval_shape(functools.partial(task.model().init, train=False), jax.random.key(0),
                   image)
  except ModelCheckError as e:  # the modules' own checks; any other error is a bug
    raise ConfigError(f"model.{config.model.name} does not fit the {config.data.name} "
                      f"images {image.shape[1:]}: {e}") from e


class Run:
  """One invocation of a training run: its steps, data, checkpoints and logs, set up
  (and resumed from `workdir` when it holds checkpoints) by the constructor."""

  def __init__(self, config, task: Task, workdir: str, clock: Clock):
    self.config, self.task, self.workdir, self.clock = config, task, workdir, clock
    tc = config.train
    self.is_main = jax.process_index() == 0
    self.steps_per_epoch = len(task.sources["train"]) // tc.batch_size  # >= 1: preflight
    self.total_steps = tc.num_epochs * self.steps_per_epoch
    self.model = model = task.model()
    tx = optim.make_optimizer(config.optimizer, self.steps_per_epoch, self.total_steps,
                              batch_size=tc.batch_size, frozen=task.frozen)
    self.on_device = data_on_device(config.data.on_device, task)
    self.steps = Steps(model, tx, task, parallel.make_mesh(),
                       on_device=host_splits(task, task.sources) if self.on_device else ())
    self.train_iter = self._train_iterator()
    min_step = tc.get("min_epochs", 0) * self.steps_per_epoch
    self.stopping = EarlyStopping(tc.patience, min_step)
    self.ckpts = None
    try:
      self.state, self.ckpts, progress = restore_or_create_state(
          workdir, tc.keep_checkpoints, config.seed, model, tx, task, self.steps.replicated,
          timer=lambda: clock("checkpoint"))
      if progress is not None:
        self.train_iter.set_state(progress["iterator"])
        self.stopping = EarlyStopping.from_json(tc.patience, progress["early_stopping"],
                                                min_step)
        logging.warning("Resumed from %s/checkpoints at step %d.", workdir,
                        self.ckpts.latest_step())
      self.iterator_state = self.train_iter.get_state()  # of what training has consumed
      self.saved_step = self.ckpts.latest_step()
      self.writer = MetricsWriter(workdir, enabled=self.is_main,
                                  resume_step=self.saved_step or 0)
    except BaseException:
      if self.ckpts is not None:
        self.ckpts.close()
      raise
    self.throughput = Throughput(tc.batch_size * task.images_per_example)
    self._checkpoint_mark = clock.spent["checkpoint"]  # checkpoint time already logged
    self.split_metrics = {split: evaluators.SplitMetrics(self.steps, task, split,
                                                         tc.eval_batch_size)
                          for split in ("validation", "test")}
    # config.evals: host-side, process 0 (they read the images and write files)
    self.evaluators = evaluators.from_config(config, task, workdir) if self.is_main else {}

  def _train_iterator(self):
    local_batch = self.config.train.batch_size // jax.process_count()
    if self.on_device:
      return iter(pipeline.index_batches(len(self.task.sources["train"]),
                                         batch_size=local_batch, seed=self.config.seed,
                                         train=True))
    return iter(pipeline.batches(self.task.sources["train"], batch_size=local_batch,
                                 seed=self.config.seed, train=True,
                                 transform=self.task.transform,
                                 worker_count=self.config.data.worker_count))

  def fit(self) -> str:
    """Trains until the epochs, early stopping, train.stop_after_steps or
    train.time_budget_s (wall time since the run started, start-up included) end it;
    returns which of "num_epochs", "early_stopping", "stop_after_steps", "time_budget"
    did. A spent budget ends with a validation pass and a checkpoint at that step (if
    the step is not an epoch end, which has them anyway), so the best checkpoint is
    never older than the budget."""
    tc, steps = self.config.train, self.steps
    step = int(self.state.step)
    stop_at = min(self.total_steps, step + tc.stop_after_steps) if tc.stop_after_steps \
        else self.total_steps
    stopped_by = "early_stopping" if self.stopping.should_stop else None
    bar = Progress(self.total_steps, step)
    prefetcher = pipeline.Prefetcher(self.train_iter, steps.split)
    zero_sums = sums = None
    try:
      while stopped_by is None and step < stop_at:
        with self.clock("data_wait"):
          batch, self.iterator_state = next(prefetcher)
        if zero_sums is None:
          zero_sums = steps.train_sums(self.state, batch)
          sums = jax.tree.map(jnp.copy, zero_sums)
          self.throughput.start_window(self.clock)
        self.state, sums = steps.train(self.state, sums, batch)
        step += 1
        bar.update(step)
        end_of_epoch = step % self.steps_per_epoch == 0 or step == self.total_steps
        checkpoint_due = bool(tc.checkpoint_every_steps) and (
            step % tc.checkpoint_every_steps == 0)
        out_of_time = bool(tc.time_budget_s) and self.clock.elapsed() >= tc.time_budget_s
        if not (step % tc.log_every_steps == 0 or end_of_epoch or checkpoint_due
                or step == stop_at or out_of_time):
          continue
        bar.show(self._end_window(step, jax.device_get(sums)))
        if end_of_epoch or out_of_time:
          if self._end_epoch(step):
            stopped_by = "early_stopping"
        elif checkpoint_due:
          self.save()
        if out_of_time and stopped_by is None and step < self.total_steps:
          stopped_by = "time_budget"
          logging.warning("train.time_budget_s=%s spent at step %d; evaluating the best "
                          "checkpoint. Rerun the same command to go on.",
                          tc.time_budget_s, step)
        sums = jax.tree.map(jnp.copy, zero_sums)
        self.throughput.start_window(self.clock)
    finally:
      prefetcher.close()
      bar.close()
    if stopped_by is None:
      stopped_by = "num_epochs" if step == self.total_steps else "stop_after_steps"
    if stopped_by == "stop_after_steps" and self.saved_step != step:
      self.save()  # an invocation cut short resumes from here
    return stopped_by

  def _end_window(self, step: int, window: dict) -> dict:
    """Checks and logs a window's training sums (read from the device: the training
    loop's only wait for it); returns its metrics row."""
    if window["nonfinite_step"] >= 0:
      raise FloatingPointError(
          f"The training loss became {window['loss']} at step {window['nonfinite_step']};"
          f" stopped. The last good checkpoint (step {self.ckpts.latest_step()}) is kept "
          f"in {self.workdir}/checkpoints. Lower optimizer.learning_rate or set "
          "optimizer.clip_norm, then rerun.")
    row = self.throughput.end_window(self.clock, window)
    spent = self.clock.spent["checkpoint"]
    row["checkpoint_s"], self._checkpoint_mark = spent - self._checkpoint_mark, spent
    self.writer.write(step, "train", {**row, "epoch": step / self.steps_per_epoch})
    return row

  def _end_epoch(self, step: int) -> bool:
    """Validation, early-stopping record, pictures, checkpoint; True to stop early.
    The row is logged before the save: a run killed between the two resumes from an
    earlier checkpoint, drops the row and logs it again."""
    task = self.task
    before = self.clock.totals()
    val = self.evaluate(self.state.params, "validation")
    score = val[task.selection] * (1 if task.higher_is_better else -1)
    self.stopping.update(score, step)
    extra = self.run_evaluators(self.state.params, ("epoch",))
    self.writer.write(step, "validation", {
        **_scalars(val), "epoch": step / self.steps_per_epoch,
        "evaluation_s": self.clock.since(before)["evaluation"]})
    for name, found in extra.items():
      if _scalars(found):
        self.writer.write(step, name, _scalars(found))
    self.save()
    if self.stopping.should_stop:
      logging.warning("Early stopping at step %d: no better validation %s for %d "
                      "evaluations.", step, task.selection, self.config.train.patience)
    return self.stopping.should_stop

  def evaluate(self, params, split: str) -> dict:
    """The task's metrics over a whole split (`evaluators.SplitMetrics`)."""
    with self.clock("evaluation"):
      result = self.split_metrics[split].run(params)
    self.throughput.evaluated(len(self.task.sources[split]) * self.task.images_per_example,
                              self.clock.last)
    return result

  def run_evaluators(self, params, cadences) -> dict:
    """{name: metrics} of the config.evals evaluators whose cadence is in `cadences`."""
    with self.clock("evaluation"):
      return {name: evaluator.run(params) for name, (at, evaluator)
              in self.evaluators.items() if at in cadences}

  def save(self):
    self.saved_step = int(self.state.step)
    best = self.stopping.best_step if self.stopping.best_score is not None else None
    with self.clock("checkpoint"):
      self.ckpts.save(self.saved_step, self.state,
                      {"iterator": self.iterator_state,
                       "early_stopping": self.stopping.to_json()}, best_step=best)

  def best_params(self):
    with self.clock("checkpoint"):
      return self.ckpts.restore(self.state, self.stopping.best_step)[0].params

  def _timing(self) -> dict:
    """Where this sitting's time went (`Throughput.summary`); a rerun of a finished run
    trains nothing, so it keeps the timing of the results.json it rewrites."""
    path = os.path.join(self.workdir, "results.json")
    if not self.throughput.windows and os.path.isfile(path):
      earlier = files.read_json(path)
      if all(k in earlier for k in TIMING):
        return {k: earlier[k] for k in TIMING}
    return self.throughput.summary(self.clock)

  def close(self):
    self.writer.close()
    with self.clock("checkpoint"):
      self.ckpts.close()  # waits for a save in flight

  def results(self, stopped_by: str, best_params, record: dict) -> dict:
    """The run's results; when it finished, with the best parameters' validation and
    test metrics and the run's provenance `record`, also written to results.json with
    the learning curves."""
    config, task = self.config, self.task
    step = int(self.state.step)
    results = {"dataset": config.data.name, "model": config.model.name,
               "finished": best_params is not None, "stopped_by": stopped_by,
               "steps": step, "epochs": step / self.steps_per_epoch}
    if best_params is None:
      logging.warning("Stopped after step %d as asked (train.stop_after_steps); rerun the "
                      "same command to resume.", step)
      return results
    val = self.evaluate(best_params, "validation")
    test = self.evaluate(best_params, "test")
    for found in self.run_evaluators(best_params, evaluators.CADENCES).values():
      results.update(found)
    results.update({
        "selection_metric": f"validation_{task.selection}",
        "selection_goal": "max" if task.higher_is_better else "min",
        "best_step": self.stopping.best_step,
        **{f"validation_{k}": v for k, v in val.items()},
        **{f"test_{k}": v for k, v in test.items()},
        "num_params": sum(int(np.prod(p.shape)) for p in jax.tree.leaves(best_params)),
        "data_on_device": self.on_device, "features_cached": task.cached,
        **self._timing(),
        "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "model_dtype": config.model.get("dtype", "float32"),
        "model_precision": config.model.get("precision", "float32"),
        "recurrences": recurrence_choices(self.model, task,
                                          config.train.batch_size // jax.device_count()),
        "provenance": record,
    })
    if self.is_main:
      checkpoints.save_released(self.workdir, self.stopping.best_step, best_params,
                                task.frozen)
      files.write_json(os.path.join(self.workdir, "results.json"), results)
      pictures.plot_learning_curves(os.path.join(self.workdir, "metrics.jsonl"),
                                    os.path.join(self.workdir, "learning_curve.png"))
    return results


TIMING = ("train_images_per_s", "eval_images_per_s", "wall_time_s", "time_train_step_s",
          "time_data_wait_s", "time_evaluation_s", "time_checkpoint_s", "time_other_s",
          "fraction_outside_step")


# The parameters' program runs once per run, so it is compiled without XLA's
# optimisations (on CPU also with the older loop emitters, which compile faster): its
# dozens of random draws took longer to optimise than to run. Compiling it on 2 CPU
# cores: the digits default 3.6-5.2 -> 1.2-1.9 s, the moving-digits video model
# 8.4-8.7 -> 0.8-1.3 s; CamVid's ReSeg init, compiled and run, 8.3 -> 2.2 s. The values
# agree with an optimised compilation's to float32 rounding (tests/test_train.py).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0,
                         "xla_llvm_disable_expensive_passes": True,
                         "xla_cpu_use_fusion_emitters": False}


def initial_state(seed: int, model, tx, task: Task, jit: bool = True) -> TrainState:
  """Fresh parameters (shaped by one training example, then `task.init_params`), the
  optimiser state, and the dropout key, all from `seed`. `jit=False` calls `model.init`
  as it is, for tracing the whole inside `jax.eval_shape`."""
  init_rng, dropout_rng = jax.random.split(jax.random.key(seed))
  init = (jax.jit(model.init, static_argnames="train", compiler_options=INIT_COMPILER_OPTIONS)
          if jit else model.init)
  params = init(init_rng, example_image(task))["params"]
  params = task.init_params(params)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), rng=jax.random.key_data(dropout_rng))


def restore_or_create_state(workdir: str, keep: int, seed: int, model, tx, task: Task,
                            sharding, timer=contextlib.nullcontext
                            ) -> tuple[TrainState, Checkpoints, dict | None]:
  """The run's state, laid out by `sharding`: restored from the latest checkpoint in
  `workdir` (with the progress saved beside it: iterator position, early stopping),
  else fresh from `seed` (`initial_state`; progress None); and the checkpoint manager,
  which the caller closes. `timer()` wraps the restore (the loop's checkpoint clock).
  A resumed run only traces the fresh state, for the types restored states take: it
  neither compiles nor runs the parameters' initialisation."""
  fresh = functools.partial(initial_state, seed, model, tx, task)
  ckpts = Checkpoints(workdir, keep)
  if ckpts.latest_step() is None:
    return jax.device_put(fresh(), sharding), ckpts, None
  try:
    state_like = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        jax.eval_shape(functools.partial(fresh, jit=False)))
    with timer():
      state, progress = ckpts.restore(state_like)
  except BaseException:
    ckpts.close()
    raise
  return state, ckpts, progress


def recurrence_choices(model, task: Task, batch_size: int) -> list[dict]:
  """Each distinct recurrence of `model` at a per-device batch of `batch_size` and what
  impl="auto" runs for it on this platform (`recurrence.auto_choices`; empty where the
  config names an impl, or the model has no ReNet sweep)."""
  x = example_image(task)
  x = jax.ShapeDtypeStruct((max(batch_size, 1),) + x.shape[1:], x.dtype)
  platform = recurrence.lowering_platform()
  return [{**{k: v for k, v in r.items() if k != "impl"}, "impl": r["impl"][platform]}
          for r in recurrence.auto_choices(lambda x: model.init(jax.random.key(0), x), x)]


def example_image(task: Task) -> jax.Array:
  """The model's input for one training example: a batch of one."""
  example = task.transform(task.sources["train"][0])
  return task.preprocess(task.constants, {k: np.asarray(v)[None] for k, v in example.items()},
                         None, train=False)["image"]


def data_on_device(setting: str, task: Task, splits=None) -> bool:
  """Whether to keep the splits used (`splits`, default all) on the devices: "true",
  "false", or "auto" (when they, transformed, take at most a quarter of a device's
  memory)."""
  if setting != "auto":
    return setting == "true"
  need = sum(pipeline.nbytes(task.sources[split], task.transform)
             for split in (task.sources if splits is None else splits))
  return need <= 0.25 * parallel.device_memory_bytes()


def host_splits(task: Task, splits) -> Iterator[tuple[str, dict]]:
  """(split, the whole split as host arrays, transformed once) for each of `splits`,
  made as they are taken: what `Steps` puts on the devices when the data lives there."""
  for split in splits:
    yield split, pipeline.split_arrays(task.sources[split], task.transform)


def _scalars(metrics: dict) -> dict:
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float, np.number))}
