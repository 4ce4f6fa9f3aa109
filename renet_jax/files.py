"""Run-folder files: atomic writes (a reader, or a run killed mid-write, never sees half
a file) and JSON configs read as flat `a.b.c` fields.

Standard library only, so that tools which only read and write run folders (`launch`)
can use it without importing JAX.
"""

import json
import os
from typing import Callable


def write_atomic(path: str, write: Callable[[str], None]):
  """Calls `write(tmp)` on a temporary path beside `path`, then renames it over `path`.

  The temporary name keeps the extension (numpy and PIL pick the format from it) and
  holds the process id, so processes writing the same file never share one.
  """
  base, ext = os.path.splitext(path)
  tmp = f"{base}.tmp{os.getpid()}{ext}"
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path: str, obj):
  """`obj` as indented JSON (numpy scalars as floats), atomically."""

  def write(tmp):
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=1, default=float)

  write_atomic(path, write)


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def read_jsonl(path: str) -> list[dict]:
  """The complete rows of a JSON-lines file such as metrics.jsonl (none if it does not
  exist; the last line of a killed run may be cut short and is left out)."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except ValueError:
        continue
  return rows


def flatten(tree: dict, prefix: str = "") -> dict:
  """{"a": {"b": 1}} -> {"a.b": 1}: a config's fields by their flag names."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
