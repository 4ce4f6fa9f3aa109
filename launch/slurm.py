"""Runs a sweep as one SLURM array job: array task i trains run i.

A run with G GPUs per node starts G processes per node (srun); the training entry points
then call jax.distributed.initialize(), which reads SLURM's variables (SLURM_NTASKS > 1)
and gives process k the node's GPU k. Every process sees all of its node's GPUs, so the
GPUs are requested per node (--gres), not per task. Without GPUs, `processes_per_node`
> 1 runs the same multi-process set-up on CPUs (how the tests exercise it).
"""

import dataclasses
import datetime
import json
import os
import shlex
import subprocess

from launch import runs as runs_lib
from launch import spec


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
  partition: str = ""
  time: str = ""              # per run, e.g. "24:00:00"
  gpus_per_node: int = 0      # 0: CPU only
  processes_per_node: int = 0  # 0: one per GPU (one without GPUs)
  nodes_per_run: int = 1
  cpus_per_task: int = 0      # 0: the cluster default
  mem: str = ""               # per node, e.g. "64G"
  max_concurrent: int = 0     # array throttle (%N); 0: no limit
  job_name: str = "renet-sweep"
  extra: tuple[str, ...] = ()  # more directives, e.g. ("--account=abc", "--qos=high")


def script(runs: list[spec.Run], indices: list[int], workdir: str,
           options: SlurmOptions) -> str:
  """The sbatch script for the runs at `indices` (array task ids are run indices)."""
  if not indices:
    raise ValueError("No runs to submit.")
  if options.nodes_per_run < 1 or options.gpus_per_node < 0:
    raise ValueError(f"nodes_per_run={options.nodes_per_run} must be >= 1 and "
                     f"gpus_per_node={options.gpus_per_node} >= 0.")
  array = index_ranges(indices)
  if options.max_concurrent:
    array += f"%{options.max_concurrent}"
  tasks_per_node = options.processes_per_node or max(options.gpus_per_node, 1)
  directives = [
      f"--job-name={options.job_name}",
      f"--array={array}",
      f"--output={os.path.join(workdir, 'slurm', '%A_%a.out')}",
      f"--nodes={options.nodes_per_run}",
      f"--ntasks-per-node={tasks_per_node}",
  ]
  if options.gpus_per_node:
    directives.append(f"--gres=gpu:{options.gpus_per_node}")
  if options.cpus_per_task:
    directives.append(f"--cpus-per-task={options.cpus_per_task}")
  if options.mem:
    directives.append(f"--mem={options.mem}")
  if options.partition:
    directives.append(f"--partition={options.partition}")
  if options.time:
    directives.append(f"--time={options.time}")
  for extra in options.extra:
    if not extra.startswith("-"):
      raise ValueError(f"Extra sbatch directive {extra!r} must look like '--name=value'.")
    directives.append(extra)
  names = "\n".join(f"  [{r.index}]={shlex.quote(r.name)}" for r in runs)
  return f"""#!/bin/bash
{chr(10).join('#SBATCH ' + d for d in directives)}
# Written by launch.sweep at {datetime.datetime.now().isoformat(timespec='seconds')}.
# Task i trains sweep run i; a finished run (results.json) is skipped, an interrupted
# one resumes from its checkpoints.
set -uo pipefail
declare -A RUNS=(
{names}
)
RUN_DIR={shlex.quote(workdir)}/"${{RUNS[$SLURM_ARRAY_TASK_ID]}}"
LOG="$RUN_DIR/log.txt"
if [[ -f "$RUN_DIR/results.json" ]]; then
  echo "$RUN_DIR is finished; skipping."
  exit 0
fi
START=$(date +%s)
rm -f "$RUN_DIR/exit.json"  # a stale exit status would outlive this attempt
echo "==== $(date -Iseconds) slurm job ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} on \\
$(hostname): ${{SLURM_NNODES:-1}} node(s) x ${{SLURM_NTASKS_PER_NODE:-1}} process(es)" >> "$LOG"
srun --kill-on-bad-exit=1 bash "$RUN_DIR/command.sh" >> "$LOG" 2>&1
RC=$?
printf '{{"returncode": %d, "log": "%s", "seconds": %d, "slurm_job": "%s"}}\\n' \\
  "$RC" "$LOG" "$(( $(date +%s) - START ))" \\
  "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}" > "$RUN_DIR/exit.json"
exit "$RC"
"""


def index_ranges(indices: list[int]) -> str:
  """[0, 1, 2, 5, 7, 8] -> "0-2,5,7-8" (sbatch --array syntax)."""
  parts, start = [], None
  for i, index in enumerate(indices):
    if start is None:
      start = index
    if i + 1 == len(indices) or indices[i + 1] != index + 1:
      parts.append(str(start) if start == index else f"{start}-{index}")
      start = None
  return ",".join(parts)


def unfinished(runs: list[spec.Run], workdir: str) -> list[int]:
  return [r.index for r in runs
          if runs_lib.status(runs_lib.run_dir(workdir, r)) != runs_lib.FINISHED]


def submit(runs: list[spec.Run], workdir: str, options: SlurmOptions, *,
           wait: bool = False, echo=print) -> str | None:
  """Writes DIR/slurm/sweep.sbatch for the unfinished runs and submits it; `wait` blocks
  until the array ends (sbatch --wait). Returns the job id."""
  todo = unfinished(runs, workdir)
  echo(f"[sweep] {len(runs)} runs: {len(runs) - len(todo)} already finished (skipped), "
       f"{len(todo)} to submit.")
  if not todo:
    return None
  os.makedirs(os.path.join(workdir, "slurm"), exist_ok=True)
  path = os.path.join(workdir, "slurm", "sweep.sbatch")
  with open(path, "w") as f:
    f.write(script(runs, todo, workdir, options))
  argv = ["sbatch", "--parsable"] + (["--wait"] if wait else []) + [path]
  echo(f"[sweep] {shlex.join(argv)}")
  proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  job_id = proc.stdout.readline().strip().split(";")[0]  # printed at submission
  if job_id:
    echo(f"[sweep] submitted array job {job_id} ({len(todo)} tasks); watch with "
         f"`squeue -j {job_id}`, logs in each run's log.txt.")
  _, err = proc.communicate()
  with open(os.path.join(workdir, "slurm", "submissions.jsonl"), "a") as f:
    f.write(json.dumps({"job_id": job_id, "runs": todo, "returncode": proc.returncode,
                        "time": datetime.datetime.now().isoformat()}) + "\n")
  if not job_id:
    raise RuntimeError(f"sbatch failed ({proc.returncode}): {err.strip()}")
  if proc.returncode and not wait:
    raise RuntimeError(f"sbatch failed ({proc.returncode}): {err.strip()}")
  return job_id
