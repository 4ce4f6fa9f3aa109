"""Runs many entry-point command lines fast: this process imports the libraries once,
then each command runs in a forked child exactly as `python -m MODULE ARGS...` would
(its own flags, stdout/stderr, exit status), without paying JAX's import each time.

  python tests/cli_runner.py CASES.json RESULTS.json
CASES.json: [{"module": "experiments.classify", "args": [...], "cwd": DIR,
              "kill_after_s": seconds (optional: SIGKILL the command then),
              "kill_once_exists": PATH (optional: SIGKILL it once PATH exists, after
              "kill_delay_s", default 0)}, ...]
RESULTS.json: [{"status": int (-9: killed), "output": str, "seconds": float}, ...]
"""

import json
import os
import runpy
import signal
import sys
import tempfile
import time

# What the entry points import, loaded before forking (no device is touched here: a
# child initialises its own backend).
import jax  # noqa: F401
import flax  # noqa: F401
import optax  # noqa: F401
import orbax.checkpoint  # noqa: F401
import tensorflow_datasets  # noqa: F401
import renet_jax.cli, renet_jax.serving.inference  # noqa: E401,F401
import renet_jax.training.tasks, renet_jax.training.train  # noqa: E401,F401


def run_case(case: dict, out_path: str) -> int:
  """Exit status of the case (-9 if it was killed)."""
  pid = os.fork()
  if pid == 0:  # the child: become `python -m module args`
    status = 1
    try:
      fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
      os.dup2(fd, 1)
      os.dup2(fd, 2)
      os.chdir(case["cwd"])
      sys.argv = [case["module"]] + case["args"]
      try:
        runpy.run_module(case["module"], run_name="__main__", alter_sys=True)
        status = 0
      except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      except BaseException:
        import traceback
        traceback.print_exc()
        status = 1
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(status)
  deadline = time.monotonic() + case.get("kill_after_s", float("inf"))
  watched = case.get("kill_once_exists")
  while True:
    done, wait_status = os.waitpid(pid, os.WNOHANG)
    if done:
      return os.waitstatus_to_exitcode(wait_status)
    if watched and os.path.exists(watched):
      deadline, watched = time.monotonic() + case.get("kill_delay_s", 0.0), None
    if time.monotonic() >= deadline:
      os.kill(pid, signal.SIGKILL)
      deadline = float("inf")
    time.sleep(0.002)


def run_commands(cases: list[dict], folder: str, timeout: float = 1200) -> list[dict]:
  """Runs `cases` through this script in a fresh process; returns their results."""
  import subprocess
  cases_path = os.path.join(folder, "cases.json")
  results_path = os.path.join(folder, "results.json")
  with open(cases_path, "w") as f:
    json.dump(cases, f)
  # The checkout first on the path: the commands run this code whatever is installed.
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (repo, os.environ.get("PYTHONPATH")) if p))
  out = subprocess.run([sys.executable, os.path.abspath(__file__), cases_path, results_path],
                       capture_output=True, text=True, timeout=timeout, env=env)
  if out.returncode:
    raise RuntimeError(f"cli_runner failed:\n{out.stderr[-3000:]}")
  with open(results_path) as f:
    return json.load(f)


def main(cases_path, results_path):
  with open(cases_path) as f:
    cases = json.load(f)
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for k, case in enumerate(cases):
      out_path = os.path.join(tmp, f"{k}.txt")
      start = time.monotonic()
      status = run_case(case, out_path)
      seconds = time.monotonic() - start
      with open(out_path, errors="replace") as f:
        results.append({"status": status, "output": f.read(), "seconds": seconds})
  with open(results_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
