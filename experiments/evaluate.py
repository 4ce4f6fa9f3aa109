r"""Evaluates a run's released parameters (best_params.npz) on its dataset, as its training
did at the end, and checks them against its results.json.

  python -m experiments.evaluate --workdir=results/weizmann_horse-vgg/seed0 \
      --manual_dir=../shared/data/weizmann_horse \
      --vgg_weights=../shared/data/vgg16/vgg16-397923af-conv1_1-conv3_3.pth --check

A committed run folder holds no checkpoints: config.json, task.json and best_params.npz
are all it needs (`renet_jax.serving.released`), plus the raw dataset and the VGG weights file.
--check exits with status 1 unless every pixel count equals results.json's and every
metric is within 1e-6 of it.
"""

import os
import sys

from absl import app, flags, logging

from renet_jax import cli, files
from renet_jax.errors import WorkdirError
from renet_jax.serving import inference, released
from renet_jax.training import checkpoints, tasks

_WORKDIR = flags.DEFINE_string("workdir", None, "A run folder with best_params.npz.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "The raw dataset (default: the run's "
                                  "data.manual_dir).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Where the dataset is prepared (default: "
                                "the run's data.data_dir, else the TFDS default).")
_VGG_WEIGHTS = flags.DEFINE_string("vgg_weights", "", "The VGG-16 weights file (default: "
                                   "the run's model.vgg_weights).")
_SPLITS = flags.DEFINE_list("splits", ["test"], "Splits to evaluate.")
_CHECK = flags.DEFINE_bool("check", False, "Compare with results.json; exit 1 if any "
                           "metric differs.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]} (flags take the form --name=value)")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  inference.run_task(workdir)  # a run folder, or a one-line error
  if not os.path.isfile(os.path.join(workdir, checkpoints.RELEASED)):
    raise WorkdirError(f"{workdir} has no {checkpoints.RELEASED} (a run finished by this "
                       "version of the code releases its best parameters there)")
  config = released.run_config(workdir, _MANUAL_DIR.value, _DATA_DIR.value,
                               _VGG_WEIGHTS.value)
  step, params = checkpoints.load_released(workdir)
  found = released.evaluate(config, params, tasks.task_class(config.data.name),
                            tuple(_SPLITS.value))
  for key, value in found.items():
    if isinstance(value, (int, float)):
      print(f"{key}: {value}")
  if _CHECK.value:
    recorded = files.read_json(os.path.join(workdir, "results.json"))
    wrong = released.differences(found, recorded)
    if wrong:
      print(f"step {step}: differs from results.json: " + "; ".join(wrong))
      sys.exit(1)
    print(f"step {step}: every metric equals results.json's")


if __name__ == "__main__":
  cli.run(main)
