"""Runs a sweep on this machine: one run at a time, or one per GPU (group) in parallel
with each process pinned to its GPUs through CUDA_VISIBLE_DEVICES."""

import datetime
import json
import os
import shutil
import subprocess
import time

from tqdm import tqdm

from launch import runs as runs_lib
from launch import spec
from renet_jax.errors import ConfigError


def detect_gpus() -> list[str]:
  """Indices of this machine's NVIDIA GPUs (empty without nvidia-smi)."""
  if not shutil.which("nvidia-smi"):
    return []
  out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                       capture_output=True, text=True, check=False)
  return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]


def device_slots(gpus: str, gpus_per_run: int) -> list:
  """`gpus`: "auto" (all GPUs nvidia-smi lists), "none", or "0,1,2,3". Returns one entry
  per concurrent run: a comma-separated device list to pin, or None (no pinning, one
  run at a time)."""
  if gpus == "none":
    return [None]
  ids = detect_gpus() if gpus == "auto" else [g.strip() for g in gpus.split(",") if g]
  if not ids:
    return [None]
  if gpus_per_run < 1 or len(ids) < gpus_per_run:
    raise ConfigError(f"--gpus_per_run={gpus_per_run} needs between 1 and the "
                     f"{len(ids)} GPUs given ({','.join(ids)}).")
  return [",".join(ids[i:i + gpus_per_run])
          for i in range(0, len(ids) - gpus_per_run + 1, gpus_per_run)]


def run_sweep(sweep: spec.Sweep, runs: list[spec.Run], workdir: str, slots: list,
              echo=print, poll_s: float = 0.5) -> dict[str, str]:
  """Runs every unfinished run; returns run name -> final status. A failing run is
  reported with its log and the others go on."""
  statuses = {r.name: runs_lib.status(runs_lib.run_dir(workdir, r)) for r in runs}
  todo = [r for r in runs if statuses[r.name] != runs_lib.FINISHED]
  skipped = len(runs) - len(todo)
  echo(f"[sweep] {len(runs)} runs: {skipped} already finished (skipped), {len(todo)} to "
       f"run, {len(slots)} at a time" + (f" on GPUs {slots}" if slots[0] else "") + ".")
  free = list(slots)
  active = {}  # Popen -> (run, slot, start time)
  durations = []
  start = time.time()
  try:
    while todo or active:
      while todo and free:
        run, slot = todo.pop(0), free.pop(0)
        active[launch(sweep, run, workdir, slot, echo)] = (run, slot, time.time())
      time.sleep(poll_s)
      for proc in [p for p in active if p.poll() is not None]:
        run, slot, t0 = active.pop(proc)
        free.append(slot)
        durations.append(time.time() - t0)
        statuses[run.name] = finish(workdir, run, proc, time.time() - t0)
        echo(f"[sweep] {run.name}: {describe_outcome(workdir, run, statuses[run.name])} "
             f"after {tqdm.format_interval(durations[-1])} | "
             + progress_line(statuses, active, todo, durations, len(slots), start))
  except KeyboardInterrupt:
    for proc, (run, _, _) in active.items():
      proc.terminate()
      proc.wait()
      statuses[run.name] = runs_lib.status(runs_lib.run_dir(workdir, run))
      echo(f"[sweep] stopped {run.name}; rerun the same command to resume it.")
  return statuses


def launch(sweep, run, workdir, slot, echo) -> subprocess.Popen:
  directory = runs_lib.run_dir(workdir, run)
  argv = runs_lib.command(sweep, run, directory)
  env = dict(os.environ)
  if slot is not None:
    env["CUDA_VISIBLE_DEVICES"] = slot
  resume = runs_lib.checkpoint_step(directory)
  runs_lib.clear_exit(directory)  # a stale exit status would outlive this attempt
  echo(f"[sweep] {run.name}: " + (f"resuming from step {resume}" if resume is not None
                                  else "starting") + (f" on GPU {slot}" if slot else ""))
  with open(runs_lib.log_path(directory), "a") as log:  # the child keeps its own copy
    log.write(f"\n==== {datetime.datetime.now().isoformat(timespec='seconds')} "
              f"CUDA_VISIBLE_DEVICES={slot or '(not pinned)'} "
              f"{'resuming from step ' + str(resume) if resume is not None else 'start'}\n"
              f"==== {runs_lib.shell_command(argv)}\n")
    log.flush()
    return subprocess.Popen(argv, cwd=runs_lib.REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def finish(workdir, run, proc, seconds) -> str:
  directory = runs_lib.run_dir(workdir, run)
  runs_lib.write_json(os.path.join(directory, "exit.json"), {
      "returncode": proc.returncode, "log": runs_lib.log_path(directory),
      "seconds": seconds})
  return runs_lib.status(directory)


def describe_outcome(workdir, run, state) -> str:
  directory = runs_lib.run_dir(workdir, run)
  if state == runs_lib.FINISHED:
    with open(os.path.join(directory, "results.json")) as f:
      results = json.load(f)
    metric = results.get("selection_metric", "")
    return f"finished, {metric}={results.get(metric, float('nan')):.4g}"
  if state == runs_lib.FAILED:
    return f"FAILED (log: {runs_lib.log_path(directory)})"
  return f"stopped before the end (resumable; log: {runs_lib.log_path(directory)})"


def progress_line(statuses, active, todo, durations, parallel, start) -> str:
  counts = {s: 0 for s in (runs_lib.FINISHED, runs_lib.FAILED, runs_lib.INTERRUPTED)}
  for s in statuses.values():
    counts[s] = counts.get(s, 0) + 1
  remaining = len(todo) + len(active)
  eta = sum(durations) / len(durations) * remaining / parallel if durations else 0
  return (f"{counts[runs_lib.FINISHED]}/{len(statuses)} finished, "
          f"{counts[runs_lib.FAILED]} failed, {len(active)} running, {len(todo)} queued; "
          f"elapsed {tqdm.format_interval(time.time() - start)}, "
          f"ETA {tqdm.format_interval(eta)}")

