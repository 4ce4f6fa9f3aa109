"""A sweep's working directory: one folder per run holding its command and its state.

  DIR/sweep.json         the sweep and its expansion (what `launch.report` reads)
  DIR/<run>/run.json     the run's swept values, overrides and exact command
  DIR/<run>/command.sh   that command, runnable by hand
  DIR/<run>/log.txt      the run's output (appended on each attempt)
  DIR/<run>/exit.json    the last attempt's exit status (written by the launchers)
  DIR/<run>/...          everything the training run writes (results.json when finished)
"""

import dataclasses
import json
import os
import shlex
import sys

from launch import spec
from renet_jax.errors import ConfigError
from renet_jax.files import write_json

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FINISHED, FAILED, INTERRUPTED, PENDING = "finished", "failed", "interrupted", "pending"


def command(sweep: spec.Sweep, run: spec.Run, run_dir: str,
            python: str = sys.executable) -> list[str]:
  """The argv that trains `run` from the repository root."""
  return ([python, "-m", f"experiments.{sweep.experiment}", f"--config={sweep.config}",
           f"--workdir={run_dir}"]
          + [f"--config.{k}={spec.flag_value(v)}" for k, v in run.overrides.items()])


def shell_command(argv: list[str]) -> str:
  return f"cd {shlex.quote(REPO_ROOT)} && {shlex.join(argv)}"


def run_dir(workdir: str, run: spec.Run) -> str:
  return os.path.join(workdir, run.name)


def prepare(sweep: spec.Sweep, runs: list[spec.Run], workdir: str, sweep_path: str):
  """Writes sweep.json and each run's run.json/command.sh. A workdir that holds a
  different sweep is refused, so a rerun never mixes two sweeps' results."""
  os.makedirs(workdir, exist_ok=True)
  manifest = {
      "sweep_file": os.path.abspath(sweep_path),
      "sweep": jsonable(dataclasses.asdict(sweep) | {
          "random": {k: describe(v) for k, v in sweep.random.items()}}),
      "axes": sweep.axes,
      "log_axes": [k for k, v in sweep.random.items() if isinstance(v, spec.LogUniform)],
      "runs": [{"name": r.name, "swept": jsonable(r.swept),
                "overrides": jsonable(r.overrides)} for r in runs],
  }
  manifest_path = os.path.join(workdir, "sweep.json")
  if os.path.exists(manifest_path):
    with open(manifest_path) as f:
      old = json.load(f)
    if old["runs"] != manifest["runs"]:
      changed = [r["name"] for r in manifest["runs"] if r not in old["runs"]]
      raise ConfigError(
          f"{workdir} holds another sweep (runs differ: {changed[:3] or 'fewer runs'}); "
          "nothing was changed. Use a new --workdir for a changed sweep, or delete "
          f"{manifest_path} if the old runs are no longer wanted.")
  write_json(manifest_path, manifest)
  for run in runs:
    d = run_dir(workdir, run)
    os.makedirs(d, exist_ok=True)
    argv = command(sweep, run, d)
    write_json(os.path.join(d, "run.json"), {
        "name": run.name, "index": run.index, "swept": jsonable(run.swept),
        "overrides": jsonable(run.overrides), "command": shell_command(argv)})
    with open(os.path.join(d, "command.sh"), "w") as f:
      f.write(f"#!/usr/bin/env bash\n# Reproduces sweep run {run.name}.\n"
              f"{shell_command(argv)} \"$@\"\n")
    os.chmod(os.path.join(d, "command.sh"), 0o755)


def status(directory: str) -> str:
  """finished (results.json), failed (last exit non-zero), interrupted (checkpoints but
  no results: a rerun resumes), or pending."""
  if os.path.exists(os.path.join(directory, "results.json")):
    return FINISHED
  if exit_status(directory) not in (None, 0):
    return FAILED
  return INTERRUPTED if checkpoint_step(directory) is not None else PENDING


def summary(statuses: dict, workdir: str) -> str:
  lines = ["[sweep] done: " + ", ".join(
      f"{sum(1 for s in statuses.values() if s == k)} {k}"
      for k in (FINISHED, FAILED, INTERRUPTED, PENDING))]
  for name, s in statuses.items():
    if s != FINISHED:
      lines.append(f"  {name}: {s}; log {log_path(os.path.join(workdir, name))}")
  lines.append(f"[sweep] table and plots: python -m launch.report --workdir={workdir}")
  return "\n".join(lines)


def exit_status(directory: str) -> int | None:
  """The last attempt's exit status (exit.json), or None while there is none (or it is
  being written)."""
  try:
    with open(os.path.join(directory, "exit.json")) as f:
      return json.load(f)["returncode"]
  except (OSError, ValueError, KeyError):
    return None


def clear_exit(directory: str):
  if os.path.exists(os.path.join(directory, "exit.json")):
    os.remove(os.path.join(directory, "exit.json"))


def checkpoint_step(directory: str):
  """The latest saved training step, or None."""
  ckpt = os.path.join(directory, "checkpoints")
  steps = [int(s) for s in os.listdir(ckpt) if s.isdigit()] if os.path.isdir(ckpt) else []
  return max(steps) if steps else None


def log_path(directory: str) -> str:
  return os.path.join(directory, "log.txt")


def describe(dist) -> dict:
  return {"type": type(dist).__name__, **jsonable(dataclasses.asdict(dist))}


def jsonable(value):
  if isinstance(value, dict):
    return {k: jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  return value
