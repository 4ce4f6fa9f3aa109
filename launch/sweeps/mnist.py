"""The thesis's ReNet search on MNIST (ch. 3): cell type on a grid; units, patch sizes,
dropout and learning rate drawn at random; picked on validation error.

  python -m launch.sweep --sweep=launch/sweeps/mnist.py --workdir=runs/sweep_mnist \
      --override=data.manual_dir=~/data/mnist --launcher=slurm --time=12:00:00
"""

from launch import spec


def get_sweep():
  return spec.Sweep(
      experiment="classify",
      config="experiments/configs/mnist.py",
      grid={"model.renet.cell": ["gru", "lstm"]},
      random={
          "model.renet.units": spec.Choice([(128, 128), (256, 256), (320, 320)]),
          # Both give a 7x7 grid from 28x28.
          "model.renet.patch_sizes": spec.Choice([((2, 2), (2, 2)), ((4, 4), (1, 1))]),
          "model.renet.dropout_rate": spec.Uniform(0.0, 0.5),
          "optimizer.learning_rate": spec.LogUniform(1e-4, 3e-3),
      },
      trials=8, seed=0)
