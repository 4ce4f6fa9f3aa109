"""Sweep specifications: what a file in launch/sweeps/ declares, and its expansion into runs.

A sweep file defines `get_sweep()` returning a `Sweep`:

  def get_sweep():
    return spec.Sweep(
        experiment="classify", config="experiments/configs/mnist.py",
        grid={"model.renet.cell": ["gru", "lstm"]},
        random={"optimizer.learning_rate": spec.LogUniform(1e-4, 1e-2),
                "model.renet.dropout_rate": spec.Uniform(0.0, 0.5)},
        trials=4, seed=0, fixed={"train.patience": 5})

Runs are the product of the grid axes, each combined with `trials` draws of the random
axes (the same draws for every grid point, so grid values are compared on equal terms).
Draw t of a sweep with seed s is the same whatever else is in the sweep file changes,
except the random axes themselves. An axis value that is a dict sets several fields at
once (e.g. a layer count changes `model.renet.units` and `model.renet.patch_sizes` together).
"""

import dataclasses
import difflib
import importlib.util
import itertools
import math
import os
import re
from typing import Any

import numpy as np

from renet_jax import files
from renet_jax.errors import ConfigError

EXPERIMENTS = ("classify", "segment", "segment_video")


@dataclasses.dataclass(frozen=True)
class Uniform:
  low: float
  high: float

  def sample(self, rng: np.random.Generator):
    return float(rng.uniform(self.low, self.high))


@dataclasses.dataclass(frozen=True)
class LogUniform:
  low: float
  high: float

  def __post_init__(self):
    if not 0 < self.low < self.high:
      raise ConfigError(f"LogUniform({self.low}, {self.high}) needs 0 < low < high.")

  def sample(self, rng: np.random.Generator):
    return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclasses.dataclass(frozen=True)
class Choice:
  options: tuple

  def __init__(self, options):
    if not options:
      raise ConfigError("Choice needs at least one option.")
    object.__setattr__(self, "options", tuple(options))

  def sample(self, rng: np.random.Generator):
    return self.options[int(rng.integers(len(self.options)))]


@dataclasses.dataclass
class Sweep:
  """experiment: "classify", "segment" or "segment_video" (the module
  experiments.<experiment>);
  config: the config file (relative to the repository root), with ":arg" if it takes one;
  grid: axis -> list of values; random: axis -> Uniform | LogUniform | Choice;
  trials: draws of the random axes; seed: seeds the draws (not training: sweep `seed`
  as an axis for that); fixed: overrides for every run; metric/goal: what the report
  ranks by (empty: each run's results.json `selection_metric`/`selection_goal`)."""
  experiment: str
  config: str
  grid: dict[str, list] = dataclasses.field(default_factory=dict)
  random: dict[str, Any] = dataclasses.field(default_factory=dict)
  trials: int = 1
  seed: int = 0
  fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
  metric: str = ""
  goal: str = ""

  def __post_init__(self):
    if self.experiment not in EXPERIMENTS:
      raise ConfigError(f"experiment={self.experiment!r}: choose one of {EXPERIMENTS}.")
    if self.trials < 1:
      raise ConfigError(f"trials={self.trials} must be at least 1.")
    if self.trials > 1 and not self.random:
      raise ConfigError(f"trials={self.trials} repeats draws of the random axes, but there "
                       "are none; add random axes, or sweep the training seed as a grid "
                       "axis: grid={'seed': [0, 1, 2]}.")
    for name, values in self.grid.items():
      if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not values:
        raise ConfigError(f"grid axis {name!r} needs a non-empty list of values, got "
                         f"{values!r}.")
    for name, dist in self.random.items():
      if not isinstance(dist, (Uniform, LogUniform, Choice)):
        raise ConfigError(f"random axis {name!r} must be spec.Uniform, spec.LogUniform or "
                         f"spec.Choice, got {dist!r}.")
    both = set(self.grid) & set(self.random)
    if both:
      raise ConfigError(f"Axes {sorted(both)} are both grid and random; keep one.")
    if self.goal not in ("", "max", "min"):
      raise ConfigError(f"goal={self.goal!r}: choose 'max' or 'min' (or leave empty).")

  @property
  def axes(self) -> list[str]:
    return list(self.grid) + list(self.random)

  @property
  def config_file(self) -> str:
    return self.config.split(":", 1)[0]

  @property
  def config_arg(self):
    return self.config.split(":", 1)[1] if ":" in self.config else None


@dataclasses.dataclass(frozen=True)
class Run:
  """One point of a sweep: `swept` holds the axis values, `overrides` the config fields
  they set (with the fixed ones)."""
  index: int
  name: str
  swept: dict
  overrides: dict


def load_sweep(path: str) -> Sweep:
  if not os.path.isfile(path):
    raise ConfigError(f"No sweep file {path!r}; sweeps live in launch/sweeps/.")
  module = _load_module("sweep_file", path)
  if not hasattr(module, "get_sweep"):
    raise ConfigError(f"{path} defines no get_sweep(); see launch/spec.py.")
  sweep = module.get_sweep()
  if not isinstance(sweep, Sweep):
    raise ConfigError(f"{path}: get_sweep() must return a launch.spec.Sweep.")
  return sweep


def draws(sweep: Sweep) -> list[dict]:
  """`trials` dicts of random-axis values; draw t depends only on (seed, t, the axes)."""
  out = []
  for t in range(sweep.trials):
    rng = np.random.default_rng([sweep.seed, t])
    out.append({name: dist.sample(rng) for name, dist in sweep.random.items()})
  return out


def expand(sweep: Sweep, extra_fixed: dict | None = None) -> list[Run]:
  """All runs, grid-major (the grid's last axis varies fastest), then trial."""
  grid_points = [dict(zip(sweep.grid, values))
                 for values in itertools.product(*sweep.grid.values())]
  random_draws = draws(sweep)
  runs = []
  for point in grid_points:
    for draw in random_draws:
      swept = {**point, **draw}
      overrides = {**sweep.fixed, **(extra_fixed or {})}
      for name, value in swept.items():
        overrides.update(value if isinstance(value, dict) else {name: value})
      index = len(runs)
      runs.append(Run(index=index, name=run_name(index, swept), swept=swept,
                      overrides=overrides))
  return runs


ABBREVIATIONS = {"learning_rate": "lr", "dropout_rate": "dropout", "patch_sizes": "patch",
                 "class_balancing": "balanced", "upsample_filters": "up",
                 "input_mask_rate": "mask", "weight_decay": "wd"}


def run_name(index: int, swept: dict, max_len: int = 100) -> str:
  """`r007-cell=lstm-lr=0.00123`: the index keeps names unique and ordered, the values
  make directory listings readable (whole parts are dropped past `max_len`)."""
  name = f"r{index:03d}"
  for axis, value in swept.items():
    field = axis.rsplit(".", 1)[-1]
    part = re.sub(r"[^A-Za-z0-9._=+-]", "",
                  f"-{ABBREVIATIONS.get(field, field)}={short(value)}")
    if len(name) + len(part) > max_len:
      break
    name += part
  return name


def short(value) -> str:
  if isinstance(value, float):
    return f"{value:.3g}"
  if isinstance(value, dict):
    return "+".join(short(v) for v in value.values())
  if isinstance(value, (tuple, list)):
    return "x".join(short(v) for v in value)
  return str(value)


def flag_value(value) -> str:
  """The text ml_collections' config flags parse back into `value`."""
  if isinstance(value, (list, tuple)):
    return repr(to_tuple(value))
  if isinstance(value, float):
    return repr(value)
  return str(value)


def to_tuple(value):
  if isinstance(value, (list, tuple)):
    return tuple(to_tuple(v) for v in value)
  return value


def check_against_config(sweep: Sweep, runs: list[Run], repo_root: str):
  """Every override names a field of the base config and has its type, and every run's
  config passes the checks its run would make at start-up, so a typo or an impossible
  value fails here, before anything is launched, rather than in every run."""
  config = load_config(sweep, repo_root)
  flat = files.flatten(config.to_dict())
  problems = []
  for key in sorted({k for run in runs for k in run.overrides}):
    if key not in flat:
      close = difflib.get_close_matches(key, flat, n=1)
      problems.append(f"{key!r} is not a field of {sweep.config_file}"
                      + (f" (did you mean {close[0]!r}?)" if close else ""))
  from renet_jax.training import config_checks, tasks  # imported here: they import JAX
  task_cls = {"classify": tasks.ClassificationTask, "segment": tasks.SegmentationTask,
              "segment_video": tasks.VideoSegmentationTask}[sweep.experiment]
  refused = {}  # a start-up check's message -> the runs it refuses
  for run in runs:
    trial = config.copy_and_resolve_references()
    typed = True
    for key, value in run.overrides.items():
      if key in flat:
        try:
          trial.update_from_flattened_dict({key: to_tuple(value)})
        except (TypeError, ValueError) as e:
          problems.append(f"{key}={value!r} ({run.name}): {e}")
          typed = False
    if typed and all(key in flat for key in run.overrides):
      try:  # the values every run's own start-up would refuse, refused for all at once
        config_checks.check_config(trial, task_cls)
      except ConfigError as e:
        refused.setdefault(str(e), []).append(run.name)
  for message, names in refused.items():  # said once, with the runs it concerns
    which = (f"all {len(runs)} runs" if len(names) == len(runs) > 1
             else ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3
                                          else ""))
    problems.append(f"{message} ({which})")
  if problems:
    raise ConfigError(f"The sweep does not fit {sweep.config}:\n  "
                     + "\n  ".join(dict.fromkeys(problems)))


def load_config(sweep: Sweep, repo_root: str):
  path = os.path.join(repo_root, sweep.config_file)
  if not os.path.isfile(path):
    raise ConfigError(f"The sweep's config {sweep.config_file!r} does not exist "
                            f"under {repo_root}.")
  module = _load_module("sweep_config", path)
  arg = sweep.config_arg
  return module.get_config(arg) if arg is not None else module.get_config()


def _load_module(name: str, path: str):
  """Executes the Python file at `path` as a module (sweep files, config files)."""
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module
