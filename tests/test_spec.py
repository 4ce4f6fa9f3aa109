"""Sweep specifications (launch/spec.py): expansion counts, order, seeds, reproducibility,
config checks, and the shipped sweeps."""

import glob
import itertools
import math
import os

import numpy as np
import pytest

from launch import spec
from launch.runs import REPO_ROOT
from renet_jax.errors import ConfigError


def _sweep(**kw):
  base = dict(experiment="classify", config="experiments/configs/digits.py")
  return spec.Sweep(**(base | kw))


def test_grid_is_the_full_product_in_grid_major_order():
  grid = {"model.renet.cell": ["gru", "lstm", "rnn"],
          "model.renet.dropout_rate": [0.0, 0.2],
          "seed": [0, 1]}
  runs = spec.expand(_sweep(grid=grid, fixed={"train.num_epochs": 3}))
  assert len(runs) == 3 * 2 * 2
  expected = list(itertools.product(*grid.values()))  # last axis fastest
  assert [tuple(r.swept.values()) for r in runs] == expected
  assert [r.index for r in runs] == list(range(12))
  assert len({r.name for r in runs}) == 12
  for run, values in zip(runs, expected):
    assert run.overrides == {"train.num_epochs": 3, **dict(zip(grid, values))}


def test_random_axes_draw_within_bounds_with_the_right_distributions():
  sweep = _sweep(random={"a": spec.Uniform(-1.0, 3.0), "b": spec.LogUniform(1e-5, 1e-1),
                         "c": spec.Choice(["x", "y", "z"])}, trials=2000, seed=7)
  runs = spec.expand(sweep)
  assert len(runs) == 2000
  a = np.array([r.swept["a"] for r in runs])
  b = np.array([r.swept["b"] for r in runs])
  c = [r.swept["c"] for r in runs]
  assert a.min() >= -1 and a.max() <= 3 and abs(a.mean() - 1.0) < 0.1
  assert b.min() >= 1e-5 and b.max() <= 1e-1
  # log-uniform: log10 b is uniform on [-5, -1], so its mean is -3 and a quarter of the
  # draws fall in each decade.
  assert abs(np.log10(b).mean() + 3) < 0.1
  assert abs(np.mean((b >= 1e-4) & (b < 1e-3)) - 0.25) < 0.05
  assert set(c) == {"x", "y", "z"}
  assert all(abs(c.count(v) / 2000 - 1 / 3) < 0.05 for v in "xyz")


def test_random_draws_are_reproducible_and_shared_across_grid_points():
  kw = dict(grid={"model.renet.cell": ["gru", "lstm"]},
            random={"optimizer.learning_rate": spec.LogUniform(1e-4, 1e-2)}, seed=3)
  first = spec.expand(_sweep(trials=5, **kw))
  again = spec.expand(_sweep(trials=5, **kw))
  assert [r.overrides for r in first] == [r.overrides for r in again]
  # The same five draws for each cell, so cells are compared at equal learning rates.
  lrs = [r.swept["optimizer.learning_rate"] for r in first]
  assert lrs[:5] == lrs[5:] and len(set(lrs[:5])) == 5
  # Draw t does not depend on how many trials there are...
  fewer = spec.expand(_sweep(trials=3, **kw))
  assert [r.swept["optimizer.learning_rate"] for r in fewer[:3]] == lrs[:3]
  # ...and another seed draws other values.
  other = spec.expand(_sweep(trials=5, **(kw | {"seed": 4})))
  assert not set(lrs) & {r.swept["optimizer.learning_rate"] for r in other}


def test_dict_values_set_several_fields():
  layers = [{"model.renet.units": (16,), "model.renet.patch_sizes": ((4, 4),)},
            {"model.renet.units": (16, 16), "model.renet.patch_sizes": ((2, 2), (2, 2))}]
  runs = spec.expand(_sweep(grid={"layers": layers}, fixed={"train.num_epochs": 1}))
  assert [r.overrides for r in runs] == [{"train.num_epochs": 1, **v} for v in layers]
  spec.check_against_config(_sweep(grid={"layers": layers}), runs, REPO_ROOT)


def test_extra_overrides_apply_to_every_run_and_win_over_fixed():
  runs = spec.expand(_sweep(grid={"seed": [0, 1]}, fixed={"train.num_epochs": 3}),
                     {"train.num_epochs": 1, "data.data_dir": "/d"})
  assert all(r.overrides["train.num_epochs"] == 1 and r.overrides["data.data_dir"] == "/d"
             for r in runs)


@pytest.mark.parametrize("kw, message", [
    (dict(trials=3), "sweep the training seed"),
    (dict(grid={"seed": []}), "non-empty list"),
    (dict(grid={"seed": "01"}), "non-empty list"),
    (dict(grid={"seed": [0]}, random={"seed": spec.Choice([1])}), "both grid and random"),
    (dict(experiment="train"), "choose one of"),
    (dict(goal="up"), "'max' or 'min'"),
])
def test_bad_sweeps_are_rejected_with_the_fix(kw, message):
  with pytest.raises(ConfigError, match=message):
    _sweep(**kw)


def test_bad_distributions_are_rejected():
  with pytest.raises(ConfigError, match="spec.Uniform"):
    _sweep(random={"seed": [1, 2]})
  with pytest.raises(ConfigError, match="0 < low < high"):
    spec.LogUniform(0.0, 1.0)
  with pytest.raises(ConfigError, match="at least one"):
    spec.Choice([])


def test_overrides_are_checked_against_the_config():
  sweep = _sweep(grid={"model.renet.celll": ["gru"], "train.num_epochs": [2]})
  with pytest.raises(ConfigError, match=r"'model.renet.celll' is not a field.*did you mean "
                                       r"'model.renet.cell'"):
    spec.check_against_config(sweep, spec.expand(sweep), REPO_ROOT)
  sweep = _sweep(grid={"train.num_epochs": ["ten"]})
  with pytest.raises(ConfigError, match="train.num_epochs='ten'"):
    spec.check_against_config(sweep, spec.expand(sweep), REPO_ROOT)
  # Values a run would refuse at start-up are refused for the whole sweep, naming the run.
  sweep = _sweep(grid={"model.renet.cell": ["gru", "no_such_cell"]})
  with pytest.raises(ConfigError, match=r"invalid config: model.renet.cell='no_such_cell' "
                     r"is unknown.*\(r001-cell=no_such_cell\)"):
    spec.check_against_config(sweep, spec.expand(sweep), REPO_ROOT)
  # A problem every run shares (here a folder that does not exist) is said once.
  sweep = _sweep(grid={"model.renet.units": [(8, 8), (16, 16), (32, 32)],
                       "data.manual_dir": ["/no/such/folder"]})
  with pytest.raises(ConfigError) as refused:
    spec.check_against_config(sweep, spec.expand(sweep), REPO_ROOT)
  message = str(refused.value)
  assert message.count("/no/such/folder") == 1 and "(all 3 runs)" in message, message


def test_run_names_are_short_safe_and_unique():
  patches = [((2, 2), (2, 2)), ((4, 4), (1, 1))]
  runs = spec.expand(_sweep(grid={"model.renet.patch_sizes": patches,
                                  "data.manual_dir": ["/a b/c?", "/d"]},
                            random={"optimizer.learning_rate": spec.LogUniform(1e-4, 1)},
                            trials=2))
  assert runs[0].name.startswith("r000-patch=2x2x2x2-manual_dir=abc-lr=")
  for r in runs:
    assert len(r.name) <= 100 and "/" not in r.name and " " not in r.name
  assert len({r.name for r in runs}) == len(runs)
  long = spec.run_name(3, {f"model.field{i}": "v" * 30 for i in range(9)})
  assert long.startswith("r003-field0=") and len(long) <= 100 and not long.endswith("=")


def test_flag_values_are_python_literals():
  assert spec.flag_value([[2, 2], (1, 1)]) == "((2, 2), (1, 1))"
  assert spec.flag_value(0.1) == "0.1" and float(spec.flag_value(1 / 3)) == 1 / 3
  assert spec.flag_value(True) == "True" and spec.flag_value("gru") == "gru"


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO_ROOT, "launch",
                                                               "sweeps", "*.py"))))
def test_shipped_sweeps_expand_and_fit_their_configs(path):
  sweep = spec.load_sweep(path)
  # A VGG sweep gets its weights file on the command line (--override), as documented.
  given = {"model.vgg_weights": __file__} if ":vgg" in sweep.config else {}
  runs = spec.expand(sweep, given)
  expected = math.prod(len(v) for v in sweep.grid.values()) * sweep.trials
  assert len(runs) == expected and expected >= 4
  spec.check_against_config(sweep, runs, REPO_ROOT)
  assert len({tuple(sorted(map(str, r.overrides.items()))) for r in runs}) == len(runs), (
      "two runs of the sweep are identical")


def test_missing_sweep_file_names_the_folder(tmp_path):
  with pytest.raises(ConfigError, match="launch/sweeps"):
    spec.load_sweep(str(tmp_path / "nope.py"))
  (tmp_path / "bad.py").write_text("x = 1\n")
  with pytest.raises(ConfigError, match="get_sweep"):
    spec.load_sweep(str(tmp_path / "bad.py"))
