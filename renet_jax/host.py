"""Host-side settings that make XLA:CPU runs fast."""

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
  """Makes glibc malloc keep freed memory for reuse instead of returning it to the OS.

  glibc serves every allocation above 32 MiB with a fresh mmap and unmaps it on free,
  so each large XLA:CPU buffer (activations of a batch) is page-faulted in anew at every
  step; on 2-core machines that made minor-axis concatenations of 38 MB take 13 ms
  instead of 2.6 ms (see `python -m experiments.bench`). Heap allocation reuses the
  pages. Returns False where there is no glibc (nothing changed).
  """
  name = ctypes.util.find_library("c")
  try:
    libc = ctypes.CDLL(name)
    mallopt = libc.mallopt
  except (OSError, AttributeError, TypeError):
    return False
  return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
