"""A workdir belongs to one run: a lock against a second process, and the check that a
rerun continues the same run (config.json is written once, by the run's first start).

The lock is an advisory `fcntl.flock` on `<workdir>/.lock`: the OS releases it when
the process exits in any way (kill -9 included), so it never goes stale; the file
holds the holder's pid for the error message.
"""

import contextlib
import fcntl
import json
import os

from renet_jax import files
from renet_jax.errors import WorkdirError

LOCK = ".lock"
CONFIG = "config.json"
# Fields a rerun may change: they decide how long, where from and how verbosely a run
# goes, not what it computes.
RESUMABLE = (
    "train.num_epochs", "train.stop_after_steps", "train.time_budget_s",
    "train.patience", "train.min_epochs", "train.log_every_steps",
    "train.checkpoint_every_steps", "train.keep_checkpoints", "data.manual_dir",
    "data.data_dir", "data.worker_count",
    "data.on_device", "data.cache_features", "model.vgg_weights", "evals.*",
)  # "evals.*": every field of config.evals (what is drawn or measured beside the run)

# A cosine schedule decays over num_epochs: changed on resume, the remaining steps
# would follow another curve than the steps already taken (matching neither length).
SCHEDULE_LENGTH = ("train.num_epochs",)
COSINE_NOTE = " (optimizer.schedule='cosine' decays over the first start's num_epochs)"


@contextlib.contextmanager
def lock(workdir: str):
  """Holds `workdir`'s lock (creating the folder) while the block runs; WorkdirError at
  once if another live process holds it."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"workdir {workdir} is a file, not a folder (give a folder path)")
  os.makedirs(workdir, exist_ok=True)
  fd = os.open(os.path.join(workdir, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
      raise WorkdirError(
          f"workdir {workdir} is in use by another run (pid {holder}) (wait for it to end, "
          "or give this run another --workdir)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the lock


def _normal(value):
  """JSON round trip, so tuples and lists compare equal."""
  return json.loads(json.dumps(value))


def differences(saved: dict, config: dict) -> list[str]:
  """`field saved -> new` for every result-changing field that differs. Fields only one
  side has are left out: they come from another version of the code (a field added
  with a default that keeps the old behaviour), not from the user (configs are
  locked)."""
  old, new = files.flatten(_normal(saved)), files.flatten(_normal(config))
  resumable = set(RESUMABLE)
  if old.get("optimizer.schedule") == "cosine":
    resumable -= set(SCHEDULE_LENGTH)

  def may_change(key):
    return key in resumable or any(key.startswith(r[:-1]) for r in resumable if r.endswith(".*"))

  return [f"{k} {old[k]!r} -> {new[k]!r}" + (COSINE_NOTE if k in SCHEDULE_LENGTH else "")
          for k in sorted(set(old) & set(new)) if not may_change(k) and old[k] != new[k]]


def check_same_run(workdir: str, config: dict):
  """Refuses (WorkdirError) a config that would compute something else than the run
  already in `workdir`; reads only."""
  path = os.path.join(workdir, CONFIG)
  if not os.path.isfile(path):
    return
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirError(f"{path} cannot be read ({e}) (give this run another --workdir, or "
                       "remove the damaged file if the workdir holds no checkpoints)") from e
  diff = differences(saved, config)
  if diff:
    raise WorkdirError(
        f"workdir {workdir} holds a run with another config: {'; '.join(diff)} (rerun with "
        f"the same values to resume it, or give this config another --workdir; only "
        f"{', '.join(RESUMABLE)} may change on resume)")


def start(workdir: str, config: dict):
  """With the lock held: checks the config against the run in `workdir` again (another
  run may have started it meanwhile) and writes config.json on the run's first start."""
  check_same_run(workdir, config)
  path = os.path.join(workdir, CONFIG)
  if not os.path.exists(path):
    files.write_json(path, config)
