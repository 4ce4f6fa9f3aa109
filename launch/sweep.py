r"""Expands a sweep file into runs and runs them here or on SLURM.

  python -m launch.sweep --sweep=launch/sweeps/digits.py --workdir=runs/sweep_digits
  python -m launch.sweep --sweep=launch/sweeps/mnist.py --workdir=/scratch/mnist_sweep \
      --override=data.manual_dir=/data/mnist --launcher=slurm --partition=gpu \
      --time=12:00:00 --gpus_per_run=1
  ... --dry_run   prints every run's command (and the sbatch script) and writes nothing.

Re-running the same command skips finished runs (results.json) and resumes interrupted
ones from their checkpoints. `python -m launch.report --workdir=DIR` tabulates results.
"""

import ast
import os
import sys

from absl import app, flags

from launch import local, slurm, spec
from launch import runs as runs_lib
from renet_jax import cli

_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file (see launch/sweeps/).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory: one folder per run.")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "slurm"], "Where runs go.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the runs' commands; run nothing.")
_OVERRIDE = flags.DEFINE_multi_string(
    "override", [], "field=value set in every run, e.g. data.manual_dir=/data/mnist "
    "(values are Python literals, else strings).")
_GPUS = flags.DEFINE_string("gpus", "auto", "local: GPUs to use, 'auto' (nvidia-smi), "
                            "'none' (no pinning, one run at a time) or e.g. '0,1,2,3'.")
_GPUS_PER_RUN = flags.DEFINE_integer(
    "gpus_per_run", 1, "GPUs each run uses (per node on SLURM; 0 on SLURM: CPU only).")
_NODES_PER_RUN = flags.DEFINE_integer("nodes_per_run", 1, "slurm: nodes each run uses.")
_PROCESSES_PER_NODE = flags.DEFINE_integer(
    "processes_per_node", 0, "slurm: JAX processes per node of a run; 0: one per GPU.")
_PARTITION = flags.DEFINE_string("partition", "", "slurm: partition.")
_TIME = flags.DEFINE_string("time", "", "slurm: time limit per run, e.g. 24:00:00.")
_CPUS_PER_TASK = flags.DEFINE_integer("cpus_per_task", 0, "slurm: CPUs per process.")
_MEM = flags.DEFINE_string("mem", "", "slurm: memory per node, e.g. 64G.")
_MAX_CONCURRENT = flags.DEFINE_integer("max_concurrent", 0,
                                       "slurm: at most this many runs at once (0: any).")
_SBATCH = flags.DEFINE_multi_string("sbatch", [], "slurm: extra directive, e.g. "
                                    "--sbatch=--account=abc (repeatable).")
_WAIT = flags.DEFINE_bool("wait", False, "slurm: block until the array job ends.")
flags.mark_flags_as_required(["sweep", "workdir"])


def parse_override(text: str):
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise app.UsageError(f"--override={text!r} must look like field=value.")
  try:
    return key.strip(), ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key.strip(), value


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}.")
  sweep = spec.load_sweep(_SWEEP.value)
  runs = spec.expand(sweep, dict(parse_override(o) for o in _OVERRIDE.value))
  spec.check_against_config(sweep, runs, runs_lib.REPO_ROOT)
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  options = slurm.SlurmOptions(
      partition=_PARTITION.value, time=_TIME.value, gpus_per_node=_GPUS_PER_RUN.value,
      processes_per_node=_PROCESSES_PER_NODE.value, nodes_per_run=_NODES_PER_RUN.value,
      cpus_per_task=_CPUS_PER_TASK.value, mem=_MEM.value, max_concurrent=_MAX_CONCURRENT.value, extra=tuple(_SBATCH.value))

  if _DRY_RUN.value:
    print(f"{len(runs)} runs of {_SWEEP.value} in {workdir}:")
    for run in runs:
      d = runs_lib.run_dir(workdir, run)
      print(f"{run.name} [{runs_lib.status(d)}]\n  "
            f"{runs_lib.shell_command(runs_lib.command(sweep, run, d))}")
    if _LAUNCHER.value == "slurm":
      print("\nsbatch script:\n" + slurm.script(
          runs, slurm.unfinished(runs, workdir) or [0], workdir, options))
    return

  runs_lib.prepare(sweep, runs, workdir, _SWEEP.value)
  if _LAUNCHER.value == "local":
    slots = local.device_slots(_GPUS.value, _GPUS_PER_RUN.value)
    statuses = local.run_sweep(sweep, runs, workdir, slots)
  else:
    job = slurm.submit(runs, workdir, options, wait=_WAIT.value)
    if job and not _WAIT.value:
      return
    statuses = {r.name: runs_lib.status(runs_lib.run_dir(workdir, r)) for r in runs}
  print(runs_lib.summary(statuses, workdir))
  if any(s != runs_lib.FINISHED for s in statuses.values()):
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
