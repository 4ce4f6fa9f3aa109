"""renet_jax.training.checkpoints: the latest `keep` steps and the best one are kept, also across
a restart (a new manager on the same folder), where orbax's own metric-ranked policy
had lost the earlier sitting's scores and deleted its best checkpoint."""

import jax.numpy as jnp
import numpy as np

from renet_jax.training import checkpoints


def _state(value):
  return {"w": jnp.full((3,), value, jnp.float32)}


def test_the_best_step_survives_a_restart_and_later_saves(tmp_path):
  workdir = str(tmp_path)
  ckpts = checkpoints.Checkpoints(workdir, keep=1)
  for step in (1, 2):
    ckpts.save(step, _state(step), {"step": step}, best_step=1)
  ckpts.close()
  assert ckpts.manager.all_steps() == [1, 2]
  # A restart: the same folder, a fresh manager; the best is still step 1.
  ckpts = checkpoints.Checkpoints(workdir, keep=1)
  for step in (3, 4):
    ckpts.save(step, _state(step), {"step": step}, best_step=1)
  ckpts.wait()
  assert ckpts.manager.all_steps() == [1, 4]
  state, progress = ckpts.restore(_state(0.0), 1)
  np.testing.assert_array_equal(state["w"], [1, 1, 1])
  assert progress == {"step": 1}
  # A new best: the old one goes once it is neither best nor latest.
  for step in (5, 6):
    ckpts.save(step, _state(step), {"step": step}, best_step=5)
  ckpts.close()
  assert ckpts.manager.all_steps() == [5, 6]
