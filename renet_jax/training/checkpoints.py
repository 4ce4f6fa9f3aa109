"""A run's checkpoints, in `workdir/checkpoints/`: the latest few (to resume from) and the
best by validation score, which is kept rather than copied (orbax keeps a step that any
of its preservation policies wants). The best step is the early-stopping record's, given
with every save: orbax 0.12 keeps the metrics it would rank by in memory only, so after
a restart its BestN policy saw none and deleted the best checkpoint of the earlier
sitting. Each holds the train state and a JSON record of
the run's progress (data-iterator state, early stopping), saved and restored together.

Saves are asynchronous: `save` returns once the arrays are copied off the devices and
the files are written in the background. orbax writes each checkpoint into a temporary
folder renamed when complete, so a run killed mid-save resumes from the last complete
one.
"""

import os

from absl import logging

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from renet_jax import files

FOLDER = "checkpoints"


class _KeepStep(policies.PreservationPolicy):
  """Preserves the checkpoint at `step` (set before each save; None: none)."""

  def __init__(self):
    self.step = None

  def should_preserve(self, checkpoints, *, context):
    del context
    return [c.step == self.step for c in checkpoints]


class Checkpoints:
  """The orbax manager of `workdir`; the `keep` latest steps are kept, and the best one."""

  def __init__(self, workdir: str, keep: int):
    self._best = _KeepStep()
    options = ocp.CheckpointManagerOptions(
        create=True, enable_async_checkpointing=True,
        preservation_policy=policies.AnyPreservationPolicy([policies.LatestN(keep),
                                                            self._best]))
    self.manager = ocp.CheckpointManager(os.path.join(workdir, FOLDER), options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state, progress: dict, best_step: int | None = None):
    """Starts saving `state` and `progress` at `step`; `best_step` (the best validated
    step so far, this one or an earlier one) is kept whatever the other policies say."""
    self._best.step = best_step
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress)))

  def restore(self, state_like, step: int | None = None):
    """(state, progress) of `step` (default: the latest), the state taking the types of
    `state_like` (a train state, or its jax.ShapeDtypeStructs with their shardings).
    Where progress names a best
    checkpoint that is gone (deleted by the checkpoint bug of before 2026-12-03), its
    early-stopping record forgets that best, so the best is chosen again from the next
    evaluation on."""
    self.manager.wait_until_finished()
    step = self.latest_step() if step is None else step
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(
            jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)),
        progress=ocp.args.JsonRestore()))
    progress = dict(restored.progress)
    stopping = dict(progress.get("early_stopping", {}))
    best = stopping.get("best_step")
    if stopping.get("best_score") is not None and best not in self.steps():
      logging.warning(
          "The best checkpoint (step %d, validation score %.4f) is missing from %s "
          "(deleted by an earlier version); the best is chosen again from the next "
          "evaluation on.", best, stopping["best_score"], self.manager.directory)
      progress["early_stopping"] = {**stopping, "best_score": None,
                                    "evals_without_improvement": 0}
    return restored.state, progress

  def wait(self):
    """Blocks until the saves in flight are written."""
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()  # waits for a save in flight


RELEASED = "best_params.npz"  # the trained parameters results.json's metrics are of
STEP_KEY = "__step__"


def save_released(workdir: str, step: int, params: dict, frozen=()):
  """Writes the best parameters as `workdir/best_params.npz` ("a/b/c" keys), without the
  frozen pretrained subtrees (`frozen`: the VGG front end, loaded from its own file):
  what a run folder releases (a few MB, no optimiser state)."""
  flat = flax.traverse_util.flatten_dict(
      {k: v for k, v in params.items() if k not in frozen}, sep="/")
  arrays = {k: np.asarray(jax.device_get(v)) for k, v in flat.items()}
  files.write_atomic(os.path.join(workdir, RELEASED), lambda tmp: np.savez(
      tmp, **arrays, **{STEP_KEY: np.int64(step)}))


def load_released(workdir: str) -> tuple[int, dict]:
  """(step, parameters) saved by `save_released`; FileNotFoundError if there are none."""
  with np.load(os.path.join(workdir, RELEASED)) as saved:
    arrays = {k: saved[k] for k in saved.files}
  step = int(arrays.pop(STEP_KEY))
  return step, flax.traverse_util.unflatten_dict(arrays, sep="/")


def load_params(workdir: str, which: str = "best") -> tuple[int, dict]:
  """(step, parameters) of a run's best ("best") or latest ("latest") checkpoint, as
  numpy arrays, without knowing the model: the best from best_params.npz where the run
  released it (a committed run folder has no checkpoints; frozen subtrees are then
  missing), else from the checkpoints. FileNotFoundError if there is none."""
  if which == "best" and os.path.isfile(os.path.join(workdir, RELEASED)):
    return load_released(workdir)
  directory = os.path.join(workdir, FOLDER)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No checkpoint folder {directory}.")
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      read_only=True))
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {directory}.")
    if which == "best":
      progress = manager.restore(step, args=ocp.args.Composite(
          progress=ocp.args.JsonRestore())).progress
      step = progress["early_stopping"]["best_step"] or step
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))
    return step, restored.state["params"]
  finally:
    manager.close()
