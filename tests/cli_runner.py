"""Runs many entry-point command lines fast: this process imports the libraries once,
then each command runs in a forked child exactly as `python -m MODULE ARGS...` would
(its own flags, stdout/stderr, exit status), without paying JAX's import each time.

  python tests/cli_runner.py CASES.json RESULTS.json
CASES.json: [{"module": "experiments.classify", "args": [...], "cwd": DIR}, ...]
RESULTS.json: [{"status": int, "output": str}, ...] (stdout then stderr of each)
"""

import json
import os
import runpy
import sys
import tempfile

# What the entry points import, loaded before forking (no device is touched here: a
# child initialises its own backend).
import jax  # noqa: F401
import flax  # noqa: F401
import optax  # noqa: F401
import orbax.checkpoint  # noqa: F401
import tensorflow_datasets  # noqa: F401
import renet_jax.cli, renet_jax.inference, renet_jax.tasks, renet_jax.train  # noqa: E401,F401


def run_case(case: dict, out_path: str) -> int:
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
  _, wait_status = os.waitpid(pid, 0)
  return os.waitstatus_to_exitcode(wait_status)


def main(cases_path, results_path):
  with open(cases_path) as f:
    cases = json.load(f)
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for k, case in enumerate(cases):
      out_path = os.path.join(tmp, f"{k}.txt")
      status = run_case(case, out_path)
      with open(out_path, errors="replace") as f:
        results.append({"status": status, "output": f.read()})
  with open(results_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
