"""A run's checkpoints: `checkpoints/` (the latest ones, to resume from) and `best/` (the
best validation score). Each holds the train state and a JSON record of the run's
progress (data-iterator state, early stopping), saved and restored together."""

import os

import jax
import orbax.checkpoint as ocp

LATEST, BEST = "checkpoints", "best"


class Checkpoints:
  """The two orbax managers of `workdir`; `state_like` (a train state) gives the types
  that restored states take."""

  def __init__(self, workdir: str, keep: int, state_like):
    self.managers = {
        LATEST: ocp.CheckpointManager(os.path.join(workdir, LATEST),
                                      options=_options(max_to_keep=keep)),
        BEST: ocp.CheckpointManager(os.path.join(workdir, BEST),
                                    options=_options(max_to_keep=1)),
    }
    self.abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)

  def step(self, which: str = LATEST) -> int | None:
    """The newest saved step of `which` (LATEST or BEST), None if none."""
    return self.managers[which].latest_step()

  def save(self, which: str, step: int, state, progress: dict):
    self.managers[which].save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress)))
    self.managers[which].wait_until_finished()

  def restore(self, which: str, step: int | None = None):
    """(state, progress) of `step` (default: the newest) of `which`."""
    step = self.step(which) if step is None else step
    restored = self.managers[which].restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(self.abstract_state),
        progress=ocp.args.JsonRestore()))
    return restored.state, restored.progress

  def close(self):
    for manager in self.managers.values():
      manager.close()


def _options(max_to_keep: int) -> ocp.CheckpointManagerOptions:
  return ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)


def load_params(directory: str) -> tuple[int, dict]:
  """(step, parameters) of the newest checkpoint in `directory` (a run's `best/` or
  `checkpoints/`), as numpy arrays, without knowing the model. FileNotFoundError if
  there is none."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No checkpoint folder {directory}.")
  manager = ocp.CheckpointManager(directory)
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {directory}.")
    return step, manager.restore(step)["state"]["params"]
  finally:
    manager.close()
