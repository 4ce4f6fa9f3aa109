"""SLURM launcher (launch/slurm.py): the sbatch script for a known sweep, what each array
task does, and a real submission to a one-node SLURM when one can be started here."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fixtures import TFDS
import slurm_cluster

from launch import runs as runs_lib
from launch import slurm, spec

REPO = runs_lib.REPO_ROOT
CAMVID_SWEEP = os.path.join(REPO, "launch", "sweeps", "camvid.py")


def test_waiting_ends_when_every_run_has_written_its_exit_or_the_job_left_the_queue(
    tmp_path, monkeypatch):
  import threading
  runs = [tmp_path / "a", tmp_path / "b"]
  for d in runs:
    d.mkdir()
  queue = tmp_path / "queue.txt"  # what the fake squeue lists
  queue.write_text("7\n")
  fake = tmp_path / "bin"
  fake.mkdir()
  (fake / "squeue").write_text(f"#!/bin/sh\ncat {queue}\n")
  (fake / "squeue").chmod(0o755)
  monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")

  def write_exit(d, code):
    (d / "exit.json").write_text(json.dumps({"returncode": code}))

  # Both runs end (one failed) while the job is still listed: the largest status.
  timers = [threading.Timer(0.05, write_exit, (runs[0], 0)),
            threading.Timer(0.15, write_exit, (runs[1], 2))]
  for t in timers:
    t.start()
  assert slurm.wait_for("7", [str(d) for d in runs], poll_s=0.01, queue_poll_s=0.02) == 2
  # One run never writes (its task was killed): the job leaving the queue ends the wait.
  (runs[1] / "exit.json").unlink()
  threading.Timer(0.1, queue.write_text, ("",)).start()
  assert slurm.wait_for("7", [str(d) for d in runs], poll_s=0.01, queue_poll_s=0.02) == 1
  write_exit(runs[1], 0)
  assert slurm.wait_for("7", [str(d) for d in runs], poll_s=0.01, queue_poll_s=0.02) == 0


@pytest.mark.parametrize("indices, expected", [
    ([0], "0"), ([0, 1, 2, 5, 7, 8], "0-2,5,7-8"), ([3, 4, 5, 6], "3-6"), ([1, 3], "1,3")])
def test_index_ranges(indices, expected):
  assert slurm.index_ranges(indices) == expected


def test_sbatch_script_for_the_camvid_sweep(tmp_path):
  sweep = spec.load_sweep(CAMVID_SWEEP)
  runs = spec.expand(sweep)
  workdir = str(tmp_path / "sweep")
  runs_lib.prepare(sweep, runs, workdir, CAMVID_SWEEP)
  for finished in (3, 11):  # skipped on submission
    with open(os.path.join(runs_lib.run_dir(workdir, runs[finished]), "results.json"),
              "w") as f:
      f.write("{}")
  options = slurm.SlurmOptions(partition="gpu", time="24:00:00", gpus_per_node=4,
                               nodes_per_run=2, cpus_per_task=8, mem="200G",
                               max_concurrent=3, extra=("--account=visin", "--qos=high"))
  text = slurm.script(runs, slurm.unfinished(runs, workdir), workdir, options)
  directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
  assert directives == [
      "#SBATCH --job-name=renet-sweep",
      "#SBATCH --array=0-2,4-10%3",
      f"#SBATCH --output={workdir}/slurm/%A_%a.out",
      "#SBATCH --nodes=2",
      "#SBATCH --ntasks-per-node=4",  # one JAX process per GPU
      "#SBATCH --gres=gpu:4",
      "#SBATCH --cpus-per-task=8",
      "#SBATCH --mem=200G",
      "#SBATCH --partition=gpu",
      "#SBATCH --time=24:00:00",
      "#SBATCH --account=visin",
      "#SBATCH --qos=high",
  ]
  assert text.startswith("#!/bin/bash\n#SBATCH")
  for run in runs:  # array task i -> run i
    assert f"  [{run.index}]={run.name}\n" in text
  assert 'srun --kill-on-bad-exit=1 bash "$RUN_DIR/command.sh" >> "$LOG" 2>&1' in text
  subprocess.run(["bash", "-n"], input=text, text=True, check=True)

  cpu = slurm.script(runs, [0, 1], workdir, slurm.SlurmOptions(processes_per_node=2))
  cpu_directives = [line for line in cpu.splitlines() if line.startswith("#SBATCH")]
  assert "#SBATCH --ntasks-per-node=2" in cpu_directives
  assert not any("gres" in line or "partition" in line for line in cpu_directives)
  with pytest.raises(ValueError, match="--name=value"):
    slurm.script(runs, [0], workdir, slurm.SlurmOptions(extra=("account=x",)))


def test_array_task_runs_its_run_records_the_exit_and_skips_finished(tmp_path):
  """The script's body, run by bash with SLURM's variables and an srun that just runs
  its command (the real submission is the next test)."""
  sweep = spec.Sweep(experiment="classify", config="experiments/configs/digits.py",
                     grid={"seed": [0, 1, 2]})
  runs = spec.expand(sweep)
  workdir = str(tmp_path / "sweep")
  runs_lib.prepare(sweep, runs, workdir, "sweep.py")
  for run, code in zip(runs, (0, 3, 0)):  # stand-in commands with known exits
    with open(os.path.join(runs_lib.run_dir(workdir, run), "command.sh"), "w") as f:
      f.write(f"echo 'run {run.index} says hi'\nexit {code}\n")
  with open(os.path.join(runs_lib.run_dir(workdir, runs[2]), "results.json"), "w") as f:
    f.write("{}")
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "srun").write_text('#!/bin/sh\nshift\nexec "$@"\n')  # drops --kill-on-bad-exit
  (bin_dir / "srun").chmod(0o755)
  script = tmp_path / "sweep.sbatch"
  script.write_text(slurm.script(runs, [0, 1, 2], workdir, slurm.SlurmOptions()))
  codes = []
  for index in range(3):
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "SLURM_ARRAY_TASK_ID": str(index), "SLURM_ARRAY_JOB_ID": "77"}
    codes.append(subprocess.run(["bash", str(script)], env=env, check=False,
                                capture_output=True, text=True).returncode)
  assert codes == [0, 3, 0]
  for run, code in zip(runs[:2], (0, 3)):
    directory = runs_lib.run_dir(workdir, run)
    with open(os.path.join(directory, "log.txt")) as f:
      log = f.read()
    assert "slurm job 77_" in log and f"run {run.index} says hi" in log
    with open(os.path.join(directory, "exit.json")) as f:
      assert json.load(f) | {"seconds": 0} == {
          "returncode": code, "log": os.path.join(directory, "log.txt"), "seconds": 0,
          "slurm_job": f"77_{run.index}"}
  assert runs_lib.status(runs_lib.run_dir(workdir, runs[1])) == runs_lib.FAILED
  assert not os.path.exists(os.path.join(runs_lib.run_dir(workdir, runs[2]), "log.txt"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
  why_not = slurm_cluster.available()
  if why_not:
    pytest.skip(f"no local SLURM: {why_not}")
  with slurm_cluster.local_slurm(str(tmp_path_factory.mktemp("slurm"))) as env:
    yield env


@pytest.mark.slow
def test_real_slurm_sweep_with_two_process_runs(cluster, tmp_path):
  """Submits a sweep for real: a digits run of 2 JAX processes (CPU) joined by
  jax.distributed under srun, and a run that fails; then resubmits."""
  sweep_file = tmp_path / "tiny.py"
  sweep_file.write_text(textwrap.dedent(f"""
      from launch import spec
      def get_sweep():
        return spec.Sweep(
            experiment="classify", config="experiments/configs/digits.py",
            grid={{"train.batch_size": [32, 100000]}},
            fixed={{"train.num_epochs": 1, "model.renet.units": (16, 16),
                    "model.renet.fc_units": (64,), "data.data_dir": "{TFDS}"}})
  """))
  workdir = tmp_path / "sweep"
  argv = [sys.executable, "-m", "launch.sweep", f"--sweep={sweep_file}",
          f"--workdir={workdir}", "--launcher=slurm", "--gpus_per_run=0",
          "--processes_per_node=2", "--wait"]
  # This test's environment (its compilation settings: the jobs inherit them through
  # sbatch) with the cluster's configuration.
  env = {**os.environ, "SLURM_CONF": cluster["SLURM_CONF"]}
  out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                       check=False, timeout=600)
  assert out.returncode == 1, out.stdout + out.stderr  # one run failed
  assert "2 to submit" in out.stdout and "submitted array job" in out.stdout
  assert "1 finished, 1 failed" in out.stdout
  good, bad = spec.expand(spec.load_sweep(str(sweep_file)))
  with open(os.path.join(workdir, good.name, "results.json")) as f:
    results = json.load(f)
  assert results["process_count"] == 2 and results["device_count"] == 2
  assert results["test_accuracy"] > 0.5  # ten classes; chance is 0.1
  bad_dir = os.path.join(workdir, bad.name)
  assert f"{bad.name}: failed; log {bad_dir}/log.txt" in out.stdout
  with open(os.path.join(bad_dir, "log.txt")) as f:
    assert "train.batch_size=100000 exceeds the" in f.read()

  again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                         check=False, timeout=600)
  assert "1 already finished (skipped), 1 to submit" in again.stdout
  with open(os.path.join(workdir, "slurm", "submissions.jsonl")) as f:
    submissions = [json.loads(line) for line in f]
  assert [s["runs"] for s in submissions] == [[0, 1], [1]]
