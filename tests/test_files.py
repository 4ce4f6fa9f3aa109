"""Atomic writes, and tools that only handle run folders not importing JAX."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from renet_jax import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_write_json_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
  path = str(tmp_path / "a.json")
  files.write_json(path, {"x": np.float32(1.5)})
  files.write_json(path, {"x": 2})
  assert files.read_json(path) == {"x": 2}
  assert os.listdir(tmp_path) == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
  path = str(tmp_path / "a.npz")
  files.write_atomic(path, lambda tmp: np.savez(tmp, a=np.arange(3)))

  def fail(tmp):
    with open(tmp, "w") as f:
      f.write("half")
    raise OSError("disk full")

  with pytest.raises(OSError, match="disk full"):
    files.write_atomic(path, fail)
  with np.load(path) as f:
    np.testing.assert_array_equal(f["a"], np.arange(3))
  assert os.listdir(tmp_path) == ["a.npz"]  # the temporary is gone


@pytest.mark.parametrize("module", ["launch.report", "launch.sweep"])
def test_launch_tools_do_not_import_jax(module):
  code = (f"import json, sys, {module}; print(json.dumps(sorted("
          "m for m in ('jax', 'flax', 'optax') if m in sys.modules)))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert json.loads(out.stdout) == []
