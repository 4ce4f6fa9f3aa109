"""A workdir belongs to one run: the lock, the refusal of another config, and resume
after kill -9 at random moments without duplicate metrics rows."""

import collections
import json
import os
import re
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import cli_runner
import fixtures
from renet_jax.errors import WorkdirError
from renet_jax.training import checkpoints, workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lock_refuses_a_second_holder_and_is_released(tmp_path):
  with workdir.lock(str(tmp_path / "w")):
    assert (tmp_path / "w" / ".lock").read_text() == str(os.getpid())
    with pytest.raises(WorkdirError, match=rf"in use by another run \(pid {os.getpid()}\)"):
      with workdir.lock(str(tmp_path / "w")):
        pass
  with workdir.lock(str(tmp_path / "w")):  # released on exit
    pass


def test_lock_of_a_killed_process_is_released(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from renet_jax.training import workdir\n"
       "with workdir.lock(sys.argv[1]):\n  print('held', flush=True); time.sleep(600)",
       str(tmp_path / "w")], stdout=subprocess.PIPE, text=True, cwd=REPO)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(WorkdirError, match=f"pid {holder.pid}"):
    with workdir.lock(str(tmp_path / "w")):
      pass
  holder.kill()  # SIGKILL: no cleanup runs, the OS drops the lock
  holder.wait()
  with workdir.lock(str(tmp_path / "w")):
    pass


def test_only_result_changing_fields_are_refused(tmp_path):
  config = {"seed": 0, "model": {"units": [32, 32], "cell": "gru"},
            "train": {"num_epochs": 5, "batch_size": 32}, "data": {"manual_dir": ""}}
  workdir.start(str(tmp_path), config)
  saved = (tmp_path / "config.json").read_text()
  resumable = json.loads(json.dumps(config))
  resumable["train"]["num_epochs"] = 9
  resumable["data"]["manual_dir"] = "/elsewhere"
  resumable["model"]["units"] = (32, 32)  # a tuple equals the saved list
  resumable["model"]["pad"] = "none"  # a field newer code added: not the user's change
  workdir.start(str(tmp_path), resumable)
  assert (tmp_path / "config.json").read_text() == saved  # written once per run
  changed = json.loads(json.dumps(config))
  changed["seed"] = 1
  changed["model"]["cell"] = "lstm"
  changed["train"]["batch_size"] = 64
  with pytest.raises(WorkdirError, match=r"another config: model.cell 'gru' -> 'lstm'; "
                     r"seed 0 -> 1; train.batch_size 32 -> 64"):
    workdir.check_same_run(str(tmp_path), changed)


def test_num_epochs_is_fixed_under_a_cosine_schedule(tmp_path):
  config = {"optimizer": {"schedule": "cosine"}, "train": {"num_epochs": 5}}
  workdir.start(str(tmp_path), config)
  workdir.check_same_run(str(tmp_path), config)
  longer = {"optimizer": {"schedule": "cosine"}, "train": {"num_epochs": 9}}
  with pytest.raises(WorkdirError, match=r"train.num_epochs 5 -> 9 \(optimizer.schedule="
                     r"'cosine' decays over the first start's num_epochs\)"):
    workdir.check_same_run(str(tmp_path), longer)
  constant = {"optimizer": {"schedule": "constant"}, "train": {"num_epochs": 5}}
  (tmp_path / "constant").mkdir()
  workdir.start(str(tmp_path / "constant"), constant)
  workdir.check_same_run(str(tmp_path / "constant"), {**constant, "train": {"num_epochs": 9}})


def _command(workdir_path):
  """The command of conftest's `tiny_digits_whole`: experiments.classify on a tiny
  digits model, 2 epochs of 37 steps, a checkpoint every 3 steps."""
  return {"module": "experiments.classify", "cwd": REPO,
          "args": fixtures.tiny_digits_args(workdir_path, *fixtures.TINY_DIGITS_LOGGING)}


_RESUMED = re.compile(r"Resumed from \S+/checkpoints at step (\d+)\.")


def _rows(workdir_path):
  with open(os.path.join(workdir_path, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_killed_at_10_moments_resumes_bitwise_without_duplicate_rows(tmp_path,
                                                                     tiny_digits_whole):
  whole, whole_seconds = tiny_digits_whole
  killed = str(tmp_path / "killed")
  rng = np.random.default_rng(0)
  # 10 kills, each restart resuming from the checkpoint the previous one left (kills land
  # in start-up, training, saves, the evaluations; once the run is done, in a rerun of
  # the finished run), then the same command again to completion. Four kills are tied to
  # the run's progress, not the clock (so any machine's speed gives the same mid-run
  # resumes): each lands within 20 ms of the checkpoint of step 9, 27, 45 or 63
  # appearing; six more at random moments.
  by_step = [{**_command(killed), "kill_delay_s": float(rng.uniform(0, 0.02)),
              "kill_once_exists": os.path.join(killed, "checkpoints", str(step))}
             for step in (9, 27, 45, 63)]
  moments = rng.uniform(0.1, 0.6 * whole_seconds, 6)
  by_time = [{**_command(killed), "kill_after_s": float(t)} for t in moments]
  results = cli_runner.run_commands(by_step + by_time + [_command(killed)],
                                    str(tmp_path))
  summary = [(r["status"], round(r["seconds"], 2)) for r in results]
  assert all(r["status"] in (0, -9) for r in results[:-1]), [r["output"][-2000:]
                                                             for r in results]
  assert sum(r["status"] == -9 for r in results[:4]) >= 3, summary
  # The restarts resumed from mid-run checkpoints at increasing steps: at least three
  # distinct ones (each progress kill leaves a later checkpoint than the one before).
  resumed = [int(m) for r in results for m in _RESUMED.findall(r["output"])]
  assert resumed == sorted(resumed), resumed
  assert len(set(resumed) - {74}) >= 3, (resumed, summary)
  assert results[-1]["status"] == 0, results[-1]["output"][-3000:]
  step_a, params_a = checkpoints.load_params(whole, "latest")
  step_b, params_b = checkpoints.load_params(killed, "latest")
  assert step_a == step_b == 74
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(a, b)  # bitwise
  results_a, results_b = (json.loads(open(os.path.join(d, "results.json")).read())
                          for d in (whole, killed))
  for key in ("test_accuracy", "validation_accuracy", "best_step", "test_loss"):
    assert results_a[key] == results_b[key], key
  rows_a, rows_b = _rows(whole), _rows(killed)
  keys_b = [(r["step"], r["split"]) for r in rows_b]
  duplicates = [k for k, n in collections.Counter(keys_b).items() if n > 1]
  assert not duplicates, duplicates
  assert keys_b == [(r["step"], r["split"]) for r in rows_a]
  for a, b in zip(rows_a, rows_b):  # the same values, timing aside
    if a["split"] == "validation":
      assert a["accuracy"] == b["accuracy"] and a["loss"] == b["loss"], (a, b)


@pytest.mark.slow
def test_a_second_run_on_a_busy_workdir_is_refused_at_once(tmp_path):
  command = _command(str(tmp_path / "run"))
  argv = [sys.executable, "-m", command["module"], *command["args"]]
  first = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
  lock = tmp_path / "run" / ".lock"
  deadline = time.time() + 300
  while not (lock.exists() and lock.read_text()) and time.time() < deadline:
    time.sleep(0.05)
  second = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
  out, err = first.communicate(timeout=600)
  assert second.returncode == 2
  lines = [l for l in (second.stdout + second.stderr).splitlines() if l.strip()]
  assert lines == [f"error: workdir {tmp_path / 'run'} is in use by another run "
                   f"(pid {first.pid}) (wait for it to end, or give this run another "
                   "--workdir)"]
  assert first.returncode == 0, err[-3000:]
  rows = _rows(str(tmp_path / "run"))
  keys = [(r["step"], r["split"]) for r in rows]
  assert len(keys) == len(set(keys))  # the refused run wrote nothing
  assert json.loads((tmp_path / "run" / "results.json").read_text())["finished"]
