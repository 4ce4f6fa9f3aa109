"""What the training entry points share: the --config/--workdir flags and `main`."""

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from renet_jax import cli, host, parallel
from renet_jax.errors import ConfigError
from renet_jax.training import tasks, train

config_flags.DEFINE_config_file("config", None, "Experiment config file (see "
                                "experiments/configs/).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the run writes everything.")
flags.mark_flags_as_required(["config", "workdir"])


def config():
  """The parsed --config; ConfigError if its file could not be loaded."""
  try:
    config = flags.FLAGS.config
    config.get("seed")  # a config that failed to load raises here
    return config
  except OSError as e:  # ml_collections defers the error of a missing config file
    raise ConfigError(cli.config_not_loaded(e, flags.FLAGS["config"].serialize())) from e


def main(argv, task_cls: type[tasks.Task], summary_keys: tuple[str, ...]):
  """Trains `task_cls` with the parsed flags and prints `summary_keys` of the results."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]} (flags take the form "
                         "--name=value; config fields --config.a.b=value)")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  parallel.maybe_initialize_distributed()
  if jax.default_backend() == "cpu":
    host.keep_freed_memory()
  logging.info("devices: %s", jax.devices())
  results = train.train_and_evaluate(config(), _WORKDIR.value, task_cls)
  print({k: results[k] for k in summary_keys if k in results} or results)
