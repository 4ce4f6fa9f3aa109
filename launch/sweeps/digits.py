"""A tiny sweep on the embedded digits set (no download), a few minutes on two CPU cores:
cell type x two learning-rate draws.

  python -m launch.sweep --sweep=launch/sweeps/digits.py --workdir=runs/sweep_digits
"""

from launch import spec


def get_sweep():
  return spec.Sweep(
      experiment="classify",
      config="experiments/configs/digits.py",
      grid={"model.renet.cell": ["gru", "lstm"]},
      random={"optimizer.learning_rate": spec.LogUniform(1e-3, 1e-2)},
      trials=2, seed=0,
      fixed={"train.num_epochs": 10})
