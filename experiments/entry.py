"""What the training entry points share: the --config/--workdir flags and `main`."""

from absl import flags, logging
import jax
from ml_collections import config_flags

from renet_jax import host, parallel, tasks, train

config_flags.DEFINE_config_file("config", None, "Experiment config file (see "
                                "experiments/configs/).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the run writes everything.")
flags.mark_flags_as_required(["config", "workdir"])


def main(task_cls: type[tasks.Task], summary_keys: tuple[str, ...]):
  """Trains `task_cls` with the parsed flags and prints `summary_keys` of the results."""
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  parallel.maybe_initialize_distributed()
  if jax.default_backend() == "cpu":
    host.keep_freed_memory()
  logging.info("devices: %s", jax.devices())
  results = train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value, task_cls)
  print({k: results[k] for k in summary_keys if k in results} or results)
