"""A real one-node SLURM (controller and compute node on localhost) for tests, as
../shared/SLURM.md describes: Debian's slurm-wlm and munge, run as root without systemd.
`.ci/run` installs the packages; elsewhere the tests that need it skip."""

import contextlib
import os
import shutil
import socket
import subprocess
import time

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch")


def available() -> str:
  """Why a cluster cannot start here, or "" if it can."""
  missing = [d for d in DAEMONS if not (shutil.which(d) or os.path.exists(f"/usr/sbin/{d}"))]
  if missing:
    return (f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge; "
            ".ci/run does)")
  if os.geteuid() != 0:
    return "starting slurmctld/slurmd here needs root"
  return ""


def _start_munge() -> list[int]:
  """Starts munged unless it runs already: the pid to stop afterwards, if it started it."""
  if os.path.exists("/run/munge/munge.socket.2") and subprocess.run(
      ["pgrep", "-x", "munged"], capture_output=True, check=False).returncode == 0:
    return []
  subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"],
                 check=True)
  if not os.path.exists("/etc/munge/munge.key"):
    subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "--create"], check=True)
  subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
  newest = subprocess.run(["pgrep", "-n", "-x", "munged"], capture_output=True, text=True,
                          check=False).stdout.split()  # it has daemonised by now
  return [int(pid) for pid in newest]


def _config(scratch: str) -> str:
  host = socket.gethostname().split(".")[0]
  node = subprocess.run(["/usr/sbin/slurmd", "-C"], capture_output=True, text=True,
                        check=True).stdout.splitlines()[0]
  lines = [
      "ClusterName=renettest", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root",
      "AuthType=auth/munge", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
      "JobAcctGatherType=jobacct_gather/none",
      "AccountingStorageType=accounting_storage/none", "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none",
      "MailProg=/bin/true",
      f"StateSaveLocation={scratch}/state", f"SlurmdSpoolDir={scratch}/spool",
      f"SlurmctldPidFile={scratch}/slurmctld.pid", f"SlurmdPidFile={scratch}/slurmd.pid",
      f"SlurmctldLogFile={scratch}/slurmctld.log", f"SlurmdLogFile={scratch}/slurmd.log",
      f"{node} NodeAddr=127.0.0.1",
      "PartitionName=debug Nodes=ALL Default=YES State=UP MaxTime=INFINITE",
  ]
  path = os.path.join(scratch, "slurm.conf")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return path


@contextlib.contextmanager
def local_slurm(scratch: str, timeout_s: float = 60):
  """Starts the cluster and yields the environment its clients need (SLURM_CONF)."""
  os.makedirs(os.path.join(scratch, "state"), exist_ok=True)
  os.makedirs(os.path.join(scratch, "spool"), exist_ok=True)
  conf = _config(scratch)
  env = {**os.environ, "SLURM_CONF": conf}
  pids, started_munge = [], []
  try:
    started_munge = _start_munge()
    for daemon in ("slurmctld", "slurmd"):
      subprocess.run([f"/usr/sbin/{daemon}", "-f", conf], env=env, check=True)
    deadline = time.time() + timeout_s
    for daemon in ("slurmctld", "slurmd"):
      pid_file = os.path.join(scratch, f"{daemon}.pid")
      while not os.path.exists(pid_file) and time.time() < deadline:
        time.sleep(0.1)
      with open(pid_file) as f:
        pids.append(int(f.read().strip()))  # slurmd deletes its file on exit
    while True:
      state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                             text=True, check=False).stdout.strip()
      if state == "idle":
        break
      if time.time() > deadline:
        raise RuntimeError(f"SLURM node not idle after {timeout_s} s (state {state!r}); "
                           f"see {scratch}/slurmctld.log and slurmd.log.")
      time.sleep(0.5)
    yield env
  finally:
    for pid in pids:
      with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.time() + 30
    while any(_alive(pid) for pid in pids) and time.time() < deadline:
      time.sleep(0.2)
    for pid in started_munge:  # after the daemons that authenticate through it
      with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)


def _alive(pid: int) -> bool:
  """Running, not a zombie (exited daemons may linger as zombies in a sandbox)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False
