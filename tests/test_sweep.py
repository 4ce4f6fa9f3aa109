"""`python -m launch.sweep` on this machine (launch/sweep.py, launch/local.py,
launch/runs.py): a real sweep of tiny digits runs end to end, with an interrupted run
that resumes, a failing run, GPU pinning, skip-on-rerun, and the report."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from fixtures import TFDS

from launch import local, spec
from launch import runs as runs_lib
from renet_jax import files
from renet_jax.errors import ConfigError

REPO = runs_lib.REPO_ROOT


def _sweep_cli(*args):
  return subprocess.run([sys.executable, "-m", "launch.sweep", *args], cwd=REPO,
                        capture_output=True, text=True, check=False, timeout=900)


def test_device_slots():
  assert local.device_slots("none", 1) == [None]
  assert local.device_slots("0,1,2,3", 1) == ["0", "1", "2", "3"]
  assert local.device_slots("0,1,2,3", 2) == ["0,1", "2,3"]
  assert local.device_slots("4,5,6", 2) == ["4,5"]  # the odd one out stays idle
  with pytest.raises(ConfigError, match="between 1 and the 3 GPUs"):
    local.device_slots("0,1,2", 4)


@pytest.mark.slow
def test_local_sweep_end_to_end(tmp_path):
  sweep_file = tmp_path / "tiny.py"
  sweep_file.write_text(textwrap.dedent(f"""
      from launch import spec
      def get_sweep():
        return spec.Sweep(
            experiment="classify", config="experiments/configs/digits.py",
            grid={{"train.batch_size": [32, 48, 100000]}},
            random={{"optimizer.learning_rate": spec.LogUniform(2e-3, 1e-2)}},
            trials=1, seed=1,
            fixed={{"train.num_epochs": 1, "model.renet.units": (16, 16),
                    "model.renet.fc_units": (64,), "data.data_dir": "{TFDS}"}})
  """))
  workdir = tmp_path / "sweep"
  args = [f"--sweep={sweep_file}", f"--workdir={workdir}"]

  # --dry_run prints every run's exact command and writes nothing.
  dry = _sweep_cli(*args, "--dry_run")
  assert dry.returncode == 0, dry.stderr
  runs = spec.expand(spec.load_sweep(str(sweep_file)))
  assert len(runs) == 3 and not workdir.exists()
  commands = re.findall(r"^  (cd .*)$", dry.stdout, re.MULTILINE)
  assert commands == [runs_lib.shell_command(runs_lib.command(
      spec.load_sweep(str(sweep_file)), r, str(workdir / r.name))) for r in runs]

  # An interrupted run: the first run's own command, stopped after 5 steps.
  interrupted = subprocess.run(
      ["bash", "-c", commands[0] + " --config.train.stop_after_steps=5"],
      capture_output=True, text=True, check=False, timeout=600)
  assert interrupted.returncode == 0, interrupted.stderr
  assert runs_lib.status(str(workdir / runs[0].name)) == runs_lib.INTERRUPTED

  # Two runs at a time, pinned to (pretend) GPUs 0 and 1: on this CPU-only machine JAX
  # ignores CUDA_VISIBLE_DEVICES, so the pinning shows in the logs only.
  out = _sweep_cli(*args, "--gpus=0,1")
  assert out.returncode == 1, out.stdout + out.stderr  # the batch too large fails
  good, bad = runs[:2], runs[2:]
  assert "2 at a time on GPUs ['0', '1']" in out.stdout
  assert f"{runs[0].name}: resuming from step 5" in out.stdout
  assert "ETA" in out.stdout and "2 finished, 1 failed" in out.stdout
  pins = set()
  for run in good:
    d = workdir / run.name
    with open(d / "results.json") as f:
      results = json.load(f)
    assert results["test_accuracy"] > 0.5  # ten classes
    with open(d / "config.json") as f:  # the overrides reached the training run
      config = files.flatten(json.load(f))
    for key, value in run.overrides.items():
      assert config[key] == runs_lib.jsonable(value), key
    log = (d / "log.txt").read_text()
    pins |= set(re.findall(r"CUDA_VISIBLE_DEVICES=(\d)", log))
    with open(d / "run.json") as f:
      assert json.load(f)["command"] == runs_lib.shell_command(
          runs_lib.command(spec.load_sweep(str(sweep_file)), run, str(d)))
  assert pins == {"0", "1"}
  assert "Resumed from" in (workdir / runs[0].name / "log.txt").read_text()
  for run in bad:
    log_path = workdir / run.name / "log.txt"
    assert f"{run.name}: FAILED (log: {log_path})" in out.stdout
    assert "train.batch_size=100000 exceeds the" in log_path.read_text()

  # Rerunning skips the finished runs (their results stay untouched) and retries the rest.
  mtimes = [os.path.getmtime(workdir / r.name / "results.json") for r in good]
  again = _sweep_cli(*args, "--gpus=none")
  assert "2 already finished (skipped), 1 to run, 1 at a time." in again.stdout
  assert [os.path.getmtime(workdir / r.name / "results.json") for r in good] == mtimes

  # A changed sweep in the same workdir is refused before anything is touched.
  sweep_file.write_text(sweep_file.read_text().replace("seed=1", "seed=2"))
  changed = _sweep_cli(*args)
  assert changed.returncode != 0 and "holds another sweep" in changed.stderr

  # The report: best first by validation accuracy, failures last with their logs.
  report = subprocess.run([sys.executable, "-m", "launch.report", f"--workdir={workdir}"],
                          cwd=REPO, capture_output=True, text=True, check=False)
  assert report.returncode == 0, report.stderr
  rows = (workdir / "report.csv").read_text().splitlines()
  header = rows[0].split(",")
  assert header[:5] == ["rank", "run", "status", "train.batch_size", "optimizer.learning_rate"]
  assert "validation_accuracy" in header and "test_accuracy" in header
  accuracy = [json.loads((workdir / r.name / "results.json").read_text())[
      "validation_accuracy"] for r in good]
  best_first = [good[i].name for i in sorted(range(2), key=lambda i: -accuracy[i])]
  assert [row.split(",")[1] for row in rows[1:3]] == best_first
  assert len(rows) == 4 and rows[3].split(",")[2] == "failed"
  for axis in ("train.batch_size", "optimizer.learning_rate"):
    with open(workdir / f"report-{axis}.png", "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "| 1 | " + best_first[0] in (workdir / "report.md").read_text()
