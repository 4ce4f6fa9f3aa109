"""Devices and processes: the data-parallel mesh, multi-process start-up, and running a
body on process 0 before the others."""

import contextlib
import functools
import itertools
import os

import jax
import numpy as np


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D data-parallel mesh over all devices (of all processes)."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return jax.sharding.Mesh(devices, ("data",))


def device_memory_bytes() -> int:
  """Memory of one device: what the runtime reports (accelerators), else the host's
  physical memory (CPU devices share it)."""
  stats = jax.local_devices()[0].memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def maybe_initialize_distributed():
  """jax.distributed.initialize() for multi-process runs: under SLURM with more than one
  task, on TPU pods, or when JAX_COORDINATOR_ADDRESS is set; single processes skip it."""
  slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
  if slurm_tasks > 1 or os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get(
      "TPU_WORKER_HOSTNAMES", "").count(",") > 0:
    jax.distributed.initialize()


@contextlib.contextmanager
def process_zero_first(name: str, timeout_s: int = 24 * 3600):
  """In a multi-process run the body runs on process 0 alone, then on the others, which
  find its files made: processes never write one folder at once. The barrier is the
  coordination service's (long timeout), not a collective, which would time out while
  process 0 prepares a large dataset."""
  if jax.process_count() == 1:
    yield
    return
  import orbax.checkpoint as ocp  # its barrier needs the coordination service
  barrier = functools.partial(ocp.multihost.get_barrier_sync_fn(),
                              key=f"{name} #{next(_BARRIERS)}", timeout_ms=timeout_s * 1000)
  if jax.process_index() != 0:
    barrier()
  yield
  if jax.process_index() == 0:
    barrier()


_BARRIERS = itertools.count()  # barrier keys must be unique; every process counts alike
