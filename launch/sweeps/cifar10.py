"""The thesis's ReNet search on CIFAR-10 (ch. 3): cell type on a grid; units, patch
sizes, dropout and learning rate drawn at random; picked on validation error.

  python -m launch.sweep --sweep=launch/sweeps/cifar10.py --workdir=runs/sweep_cifar10 \
      --override=data.manual_dir=~/data/cifar10 --launcher=slurm --time=24:00:00
"""

from launch import spec


def get_sweep():
  return spec.Sweep(
      experiment="classify",
      config="experiments/configs/cifar10.py",
      grid={"model.renet.cell": ["gru", "lstm"]},
      random={
          "model.renet.units": spec.Choice([(256, 256, 256), (320, 320, 320),
                                      (384, 384, 384)]),
          # All give a 4x4 grid from 32x32.
          "model.renet.patch_sizes": spec.Choice([((2, 2), (2, 2), (2, 2)),
                                            ((4, 4), (2, 2), (1, 1))]),
          "model.renet.dropout_rate": spec.Uniform(0.0, 0.5),
          "optimizer.learning_rate": spec.LogUniform(1e-4, 3e-3),
      },
      trials=8, seed=0)
