"""What made a run, kept in its workdir's provenance.json and copied into results.json:

  data        dataset name, builder version, and per split its size and a fingerprint of
              its prepared examples (SHA-256 over every example's arrays, in order)
  weights     the pretrained front end's fingerprint, where the model has one
  sittings    one entry per invocation: when it started and ended, the commit and whether
              the tree was dirty, the hardware and library versions, the steps it covered,
              what stopped it, and every field that differs from config.json (which keeps
              the first sitting's values: time budget, feature cache, data on device...)

A resumed run whose data fingerprint changed says so in a warning and in its sittings
(`data_changed`); `launch.report` marks such runs.
"""

import datetime
import hashlib
import json
import os
import platform
import subprocess

from absl import logging
import jax
import numpy as np

from renet_jax import files

FILE = "provenance.json"
FINGERPRINTS = "fingerprints.json"  # beside a prepared dataset: computed once


def split_fingerprint(source, chunk: int = 1024) -> str:
  """SHA-256 of a split's examples in order: each field's name, dtype, shape and bytes."""
  h = hashlib.sha256()
  for i, example in enumerate(_in_order(source, chunk)):
    for key in sorted(example):
      value = np.ascontiguousarray(example[key])
      h.update(f"{i}/{key}/{value.dtype}/{value.shape}".encode())
      h.update(value.tobytes())
  return h.hexdigest()


def _in_order(source, chunk: int):
  """The examples of `source` in order, read `chunk` at a time where it reads many at
  once (a TFDS data source: a third faster than one by one)."""
  for start in range(0, len(source), chunk):
    indices = list(range(start, min(start + chunk, len(source))))
    if hasattr(source, "__getitems__"):
      yield from source.__getitems__(indices)
    else:
      yield from (source[i] for i in indices)


def dataset_record(name: str, version: str, folder: str, sources) -> dict:
  """{name, version, splits: {split: {examples, sha256}}, sha256 of them all}; the
  fingerprints are computed once per prepared dataset and kept in `folder`."""
  path = os.path.join(folder, FINGERPRINTS)
  saved = files.read_json(path) if os.path.isfile(path) else {}
  sizes = {split: len(source) for split, source in sources.items()}
  splits = saved.get("splits", {})
  if saved.get("version") != version or {s: v["examples"] for s, v in splits.items()} != sizes:
    logging.info("Fingerprinting the prepared %s splits in %s.", name, folder)
    splits = {split: {"examples": len(source), "sha256": split_fingerprint(source)}
              for split, source in sources.items()}
    files.write_json(path, {"version": version, "splits": splits})
  overall = hashlib.sha256("".join(
      f"{s}:{splits[s]['sha256']}" for s in sorted(splits)).encode()).hexdigest()
  return {"name": name, "version": version, "splits": splits, "sha256": overall}


def file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(os.path.expanduser(path), "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def weights_fingerprint(params: dict) -> str:
  """SHA-256 of a parameter tree's names, shapes, dtypes and values."""
  h = hashlib.sha256()
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0],
                           key=lambda kv: jax.tree_util.keystr(kv[0])):
    leaf = np.ascontiguousarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}{leaf.shape}{leaf.dtype}".encode())
    h.update(leaf.tobytes())
  return h.hexdigest()


def code_record() -> dict:
  """The commit of the checkout this package runs from and whether its tracked files
  differ from it ({"commit": None} outside a git checkout)."""
  here = os.path.dirname(os.path.abspath(__file__))

  def git(*args):
    return subprocess.run(["git", "-C", here, *args], capture_output=True, text=True,
                          timeout=30)

  try:
    head = git("rev-parse", "HEAD")
    if head.returncode:
      return {"commit": None}
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return {"commit": head.stdout.strip(), "dirty": bool(dirty)}
  except (OSError, subprocess.SubprocessError):
    return {"commit": None}


def hardware_record() -> dict:
  """The devices, the host's CPU, and the versions of the libraries that compute."""
  import flax
  import jax
  import jaxlib
  import optax
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f
                  if line.startswith("model name")), cpu)
  except OSError:
    pass
  return {"platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
          "device_count": jax.device_count(), "process_count": jax.process_count(),
          "cpu": cpu, "cpu_count": os.cpu_count(),
          "versions": {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                       "flax": flax.__version__, "optax": optax.__version__,
                       "python": platform.python_version()}}


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def changed_fields(first: dict, config: dict) -> dict:
  """{field: [config.json's value, this sitting's]} for every field that differs (after
  a JSON round trip, so tuples equal lists)."""
  old, new = (files.flatten(json.loads(json.dumps(c))) for c in (first, config))
  return {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)}


class Record:
  """A run's provenance.json: `start` appends this sitting, `end` completes it."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, FILE)
    self.record = files.read_json(self.path) if os.path.isfile(self.path) else {}

  def start(self, *, first_config: dict, config: dict, data: dict, weights: dict | None,
            start_step: int, settings: dict):
    """Records this sitting (with `settings`, what it runs with beyond the config, such
    as the feature cache) and the data it trains on, warning if that changed."""
    sittings = self.record.setdefault("sittings", [])
    before = self.record.get("data")
    changed = before is not None and before["sha256"] != data["sha256"]
    if changed:
      logging.warning(
          "The prepared %s data differs from the earlier sittings' (fingerprint %s..., was "
          "%s...): this run's results mix them; provenance.json records it.", data["name"],
          data["sha256"][:12], before["sha256"][:12])
    self.record["data"], self.record["weights"] = data, weights
    sittings.append({"started": _now(), "start_step": start_step, **code_record(),
                     "hardware": hardware_record(), **settings,
                     "changed_from_config_json": changed_fields(first_config, config),
                     "data_sha256": data["sha256"], "data_changed": changed})
    files.write_json(self.path, self.record)

  def end(self, step: int, stopped_by: str):
    self.record["sittings"][-1].update(ended=_now(), end_step=step, stopped_by=stopped_by)
    files.write_json(self.path, self.record)
