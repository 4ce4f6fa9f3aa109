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

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

FOLDER = "checkpoints"


class _KeepStep(policies.PreservationPolicy):
  """Preserves the checkpoint at `step` (set before each save; None: none)."""

  def __init__(self):
    self.step = None

  def should_preserve(self, checkpoints, *, context):
    del context
    return [c.step == self.step for c in checkpoints]


class Checkpoints:
  """The orbax manager of `workdir`; `state_like` (a train state) gives the types that
  restored states take; the `keep` latest steps are kept, and the best one."""

  def __init__(self, workdir: str, keep: int, state_like):
    self._best = _KeepStep()
    options = ocp.CheckpointManagerOptions(
        create=True, enable_async_checkpointing=True,
        preservation_policy=policies.AnyPreservationPolicy([policies.LatestN(keep),
                                                            self._best]))
    self.manager = ocp.CheckpointManager(os.path.join(workdir, FOLDER), options=options)
    self.abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)

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

  def restore(self, step: int | None = None):
    """(state, progress) of `step` (default: the latest)."""
    self.manager.wait_until_finished()
    step = self.latest_step() if step is None else step
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(self.abstract_state),
        progress=ocp.args.JsonRestore()))
    return restored.state, restored.progress

  def wait(self):
    """Blocks until the saves in flight are written."""
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()  # waits for a save in flight


def load_params(workdir: str, which: str = "best") -> tuple[int, dict]:
  """(step, parameters) of a run's best ("best") or latest ("latest") checkpoint, as
  numpy arrays, without knowing the model. FileNotFoundError if there is none."""
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
