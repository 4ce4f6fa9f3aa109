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
import time

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
  until every submitted run has ended (`wait_for`). Returns the job id."""
  todo = unfinished(runs, workdir)
  echo(f"[sweep] {len(runs)} runs: {len(runs) - len(todo)} already finished (skipped), "
       f"{len(todo)} to submit.")
  if not todo:
    return None
  os.makedirs(os.path.join(workdir, "slurm"), exist_ok=True)
  path = os.path.join(workdir, "slurm", "sweep.sbatch")
  with open(path, "w") as f:
    f.write(script(runs, todo, workdir, options))
  directories = [runs_lib.run_dir(workdir, r) for r in runs if r.index in todo]
  for d in directories:  # so that an exit.json seen below is this submission's
    runs_lib.clear_exit(d)
  argv = ["sbatch", "--parsable", path]
  echo(f"[sweep] {shlex.join(argv)}")
  proc = subprocess.run(argv, capture_output=True, text=True, check=False)
  job_id = proc.stdout.strip().split(";")[0]  # --parsable: "id" or "id;cluster"
  returncode = proc.returncode
  if job_id and not returncode:
    echo(f"[sweep] submitted array job {job_id} ({len(todo)} tasks); watch with "
         f"`squeue -j {job_id}`, logs in each run's log.txt.")
    if wait:
      returncode = wait_for(job_id, directories)
  with open(os.path.join(workdir, "slurm", "submissions.jsonl"), "a") as f:
    f.write(json.dumps({"job_id": job_id, "runs": todo, "returncode": returncode,
                        "time": datetime.datetime.now().isoformat()}) + "\n")
  if not job_id or proc.returncode:
    raise RuntimeError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip()}")
  return job_id


def wait_for(job_id: str, directories: list[str], poll_s: float = 1.0,
             queue_poll_s: float = 30.0) -> int:
  """Blocks until every run in `directories` has written its exit.json (the array task's
  last act), or the job has left the queue (a task killed before writing it); returns
  the largest exit status, 1 for a run that wrote none. The files are read every
  `poll_s` (cheap, and a short run's end is seen within a second: `sbatch --wait` polls
  with a growing interval and returned up to 20 s late), the queue only every
  `queue_poll_s`."""
  codes = lambda: [runs_lib.exit_status(d) for d in directories]
  next_queue_poll = time.monotonic() + queue_poll_s
  while True:
    found = codes()
    if all(c is not None for c in found):
      return max(found)
    if time.monotonic() >= next_queue_poll:
      next_queue_poll = time.monotonic() + queue_poll_s
      queue = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True,
                             text=True, check=False)
      # Gone: listed no more, or (once slurmctld forgets it) an invalid id.
      if not queue.stdout.strip() and (queue.returncode == 0
                                       or "Invalid job id" in queue.stderr):
        return max(1 if c is None else c for c in codes())
    time.sleep(poll_s)
