r"""Evaluates a run's released parameters (best_params.npz) on its dataset, as its training
did at the end, and checks them against its results.json.

  python -m experiments.evaluate --workdir=results/weizmann_horse-vgg/seed0 \
      --manual_dir=../shared/data/weizmann_horse \
      --vgg_weights=../shared/data/vgg16/vgg16-397923af-conv1_1-conv3_3.pth --check

A committed run folder holds no checkpoints: config.json, task.json and best_params.npz
(without the frozen VGG front end) are all it needs, plus the raw dataset and the VGG
weights file. --check exits with status 1 unless every pixel count equals results.json's
and every metric is within 1e-6 of it.
"""

import math
import os
import sys

from absl import app, flags
import ml_collections

from renet_jax import checkpoints, cli, files, inference, tasks, train
from renet_jax.errors import WorkdirError

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

TOLERANCE = 1e-6


def run_config(workdir: str, manual_dir: str = "", data_dir: str = "",
               vgg_weights: str = "") -> ml_collections.ConfigDict:
  """The run's config.json with this machine's paths."""
  config = ml_collections.ConfigDict(files.read_json(os.path.join(workdir, "config.json")))
  if manual_dir:
    config.data.manual_dir = manual_dir
  if data_dir:
    config.data.data_dir = data_dir
  if vgg_weights:
    config.model.vgg_weights = vgg_weights
  return config


def differences(found: dict, recorded: dict) -> list[str]:
  """`metric found != recorded` for each number of `found` that results.json records
  otherwise (pixel counts exactly, the rest within TOLERANCE)."""
  out = []
  for key, value in found.items():
    if key not in recorded or not isinstance(value, (int, float)):
      continue
    exact = key.endswith("pixels")
    if (value != recorded[key]) if exact else not math.isclose(
        value, recorded[key], rel_tol=0, abs_tol=TOLERANCE):
      out.append(f"{key} {value!r} != {recorded[key]!r}")
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]} (flags take the form --name=value)")
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  inference.run_task(workdir)  # a run folder, or a one-line error
  if not os.path.isfile(os.path.join(workdir, checkpoints.RELEASED)):
    raise WorkdirError(f"{workdir} has no {checkpoints.RELEASED} (a run finished by this "
                       "version of the code releases its best parameters there)")
  config = run_config(workdir, _MANUAL_DIR.value, _DATA_DIR.value, _VGG_WEIGHTS.value)
  step, params = checkpoints.load_released(workdir)
  found = train.evaluate_released(config, params, tasks.task_class(config.data.name),
                                  tuple(_SPLITS.value))
  for key, value in found.items():
    if isinstance(value, (int, float)):
      print(f"{key}: {value}")
  if _CHECK.value:
    recorded = files.read_json(os.path.join(workdir, "results.json"))
    wrong = differences(found, recorded)
    if wrong:
      print(f"step {step}: differs from results.json: " + "; ".join(wrong))
      sys.exit(1)
    print(f"step {step}: every metric equals results.json's")


if __name__ == "__main__":
  cli.run(main)
