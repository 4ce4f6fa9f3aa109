"""Where a test run's CPU goes, per test: a pytest plugin, and its report.

  python -m pytest -p tests.cpu_profile --slow -n 3 --dist loadfile --no-loadscope-reorder
  python tests/cpu_profile.py [FOLDER] [--top=N]

Each pytest process (every xdist worker) writes FOLDER/<worker>.json (FOLDER:
$RENET_CPU_PROFILE_DIR, default .cache/cpu_profile of the checkout) with, per test
(setup, call and teardown, so a shared fixture counts where it is first built):
"cpu" (this process's user + system seconds), "children_cpu" (of the processes the test
started and waited for), "wall", and "compile_cpu" / "compiles" (process CPU seconds
inside XLA compilations and their count, persistent-cache hits included: it wraps
jax's private `compile_or_get_cached`, and reports none where a jax release lacks it).
The report sums the workers: totals, then the costliest tests and files.
"""

import collections
import json
import os
import resource
import sys
import time

import pytest

FOLDER = os.environ.get("RENET_CPU_PROFILE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "cpu_profile"))
_TESTS = collections.defaultdict(collections.Counter)
_CURRENT = ["(outside tests)"]


def _children_cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _count_compilations():
  from jax._src import compiler  # pylint: disable=g-import-not-at-top
  if not hasattr(compiler, "compile_or_get_cached"):
    return
  original = compiler.compile_or_get_cached

  def timed(*args, **kwargs):
    start = time.process_time()
    try:
      return original(*args, **kwargs)
    finally:
      counts = _TESTS[_CURRENT[0]]
      counts["compile_cpu"] += time.process_time() - start
      counts["compiles"] += 1

  compiler.compile_or_get_cached = timed  # what jit's lowering calls, by module attribute


def pytest_configure(config):
  _count_compilations()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  _CURRENT[0] = item.nodeid
  cpu, children, wall = time.process_time(), _children_cpu(), time.perf_counter()
  yield
  counts = _TESTS[item.nodeid]
  counts["cpu"] += time.process_time() - cpu
  counts["children_cpu"] += _children_cpu() - children
  counts["wall"] += time.perf_counter() - wall
  _CURRENT[0] = "(outside tests)"


def pytest_sessionfinish(session):
  os.makedirs(FOLDER, exist_ok=True)
  worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
  with open(os.path.join(FOLDER, f"{worker}.json"), "w") as f:
    json.dump({"process_cpu": time.process_time(), "tests": _TESTS}, f)


def report(folder: str, top: int = 30) -> str:
  tests = collections.defaultdict(collections.Counter)
  processes_cpu = 0.0
  for name in sorted(os.listdir(folder)):
    if name.endswith(".json"):
      with open(os.path.join(folder, name)) as f:
        profile = json.load(f)
      processes_cpu += profile["process_cpu"]
      for test, counts in profile["tests"].items():
        tests[test].update(counts)
  total = lambda c: c["cpu"] + c["children_cpu"]
  files = collections.defaultdict(collections.Counter)
  for test, counts in tests.items():
    files[test.split("::")[0]].update(counts)
  sums = collections.Counter()
  for counts in tests.values():
    sums.update(counts)
  lines = [f"{total(sums):.0f} CPU-s: {sums['cpu']:.0f} in pytest processes "
           f"({sums['compile_cpu']:.0f} compiling {sums['compiles']:.0f} programs), "
           f"{sums['children_cpu']:.0f} in processes the tests started; "
           f"{len(tests)} tests; besides, {processes_cpu - sums['cpu']:.0f} CPU-s in the "
           "pytest processes outside tests (imports, collection)", "", "CPU-s  cumul.  compile  wall   test"]
  cumulative = 0.0
  for test, counts in sorted(tests.items(), key=lambda kv: -total(kv[1]))[:top]:
    cumulative += total(counts)
    lines.append(f"{total(counts):5.1f}  {cumulative / total(sums):5.1%}  "
                 f"{counts['compile_cpu']:6.1f}  {counts['wall']:5.1f}  {test}")
  lines += ["", "CPU-s  compile  wall   file"]
  for file, counts in sorted(files.items(), key=lambda kv: -total(kv[1]))[:top]:
    lines.append(f"{total(counts):5.1f}  {counts['compile_cpu']:6.1f}  "
                 f"{counts['wall']:5.1f}  {file}")
  return "\n".join(lines)


if __name__ == "__main__":
  args = [a for a in sys.argv[1:] if not a.startswith("--top=")]
  tops = [int(a[6:]) for a in sys.argv[1:] if a.startswith("--top=")]
  print(report(args[0] if args else FOLDER, *tops))
