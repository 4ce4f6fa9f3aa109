"""provenance.json and results.json["provenance"]: the data (version, split sizes,
fingerprints), the code, the hardware and one entry per sitting, with what a resumed
sitting changed."""

import hashlib
import os

import numpy as np
import pytest

from renet_jax import files, provenance
from tests.test_train import _tiny_digits, run


def test_split_fingerprint_by_hand_and_sensitive_to_one_label():
  examples = [{"image": np.arange(6, dtype=np.uint8).reshape(2, 3), "label": np.int64(k)}
              for k in range(3)]
  h = hashlib.sha256()
  for i, ex in enumerate(examples):
    for key in ("image", "label"):  # sorted field names
      value = np.ascontiguousarray(ex[key])
      h.update(f"{i}/{key}/{value.dtype}/{value.shape}".encode())
      h.update(value.tobytes())
  assert provenance.split_fingerprint(examples) == h.hexdigest()
  changed = [dict(ex) for ex in examples]
  changed[2]["label"] = np.int64(1)
  assert provenance.split_fingerprint(changed) != h.hexdigest()
  assert provenance.split_fingerprint(examples[::-1]) != h.hexdigest()  # order counts


def test_dataset_record_is_computed_once_and_again_when_the_splits_change(tmp_path):
  sources = {"train": [{"label": np.int64(0)}] * 3, "test": [{"label": np.int64(1)}]}
  first = provenance.dataset_record("toy", "1.0.0", str(tmp_path), sources)
  assert first["splits"]["train"]["examples"] == 3 and first["version"] == "1.0.0"
  saved = files.read_json(str(tmp_path / provenance.FINGERPRINTS))
  assert saved["splits"] == first["splits"]
  # Read back, not recomputed: a planted value shows.
  saved["splits"]["test"]["sha256"] = "planted"
  files.write_json(str(tmp_path / provenance.FINGERPRINTS), saved)
  assert provenance.dataset_record("toy", "1.0.0", str(tmp_path),
                                   sources)["splits"]["test"]["sha256"] == "planted"
  grown = {**sources, "test": sources["test"] * 2}
  again = provenance.dataset_record("toy", "1.0.0", str(tmp_path), grown)
  assert again["splits"]["test"]["examples"] == 2 and again["sha256"] != first["sha256"]


def test_changed_fields_after_a_json_round_trip():
  first = {"train": {"time_budget_s": 100.0, "size": (2, 2)}, "data": {"on": "auto"}}
  now = {"train": {"time_budget_s": 50.0, "size": [2, 2]}, "data": {"on": "auto"},
         "new": {"field": 1}}
  assert provenance.changed_fields(first, now) == {"new.field": [None, 1],
                                                   "train.time_budget_s": [100.0, 50.0]}


@pytest.mark.slow
def test_a_resumed_run_records_each_sitting_and_what_changed(tmp_path):
  workdir = str(tmp_path / "run")
  first = run(_tiny_digits(stop_after_steps=10), workdir)
  assert not first["finished"]
  record = files.read_json(os.path.join(workdir, provenance.FILE))
  assert len(record["sittings"]) == 1
  one = record["sittings"][0]
  assert (one["start_step"], one["end_step"], one["stopped_by"]) == (0, 10, "stop_after_steps")
  assert one["changed_from_config_json"] == {}
  # The second sitting changes the budget: config.json keeps the first's, the sitting
  # says what changed.
  results = run(_tiny_digits(time_budget_s=3600.0), workdir)
  assert results["finished"]
  record = files.read_json(os.path.join(workdir, provenance.FILE))
  assert results["provenance"] == record
  two = record["sittings"][1]
  assert two["start_step"] == 10 and two["end_step"] == results["steps"]
  assert two["changed_from_config_json"] == {
      "train.stop_after_steps": [10, 0], "train.time_budget_s": [0.0, 3600.0]}
  assert files.read_json(os.path.join(workdir, "config.json"))["train"][
      "time_budget_s"] == 0.0
  data = record["data"]
  assert data["name"] == "digits" and not two["data_changed"]
  sizes = {s: v["examples"] for s, v in data["splits"].items()}
  assert sizes == {"train": 1197, "validation": 300, "test": 300}  # of the 1,797 digits
  assert two["hardware"]["device_count"] >= 1 and "jax" in two["hardware"]["versions"]
  assert len(two["commit"] or "") in (0, 40)
  # A rerun of the finished run trains nothing: a sitting of no steps is recorded, and
  # results.json keeps the timing of the sitting that trained.
  again = run(_tiny_digits(time_budget_s=3600.0), workdir)
  assert again["steps"] == results["steps"]
  for key in ("wall_time_s", "train_images_per_s", "time_train_step_s"):
    assert again[key] == results[key] > 0, key
  three = files.read_json(os.path.join(workdir, provenance.FILE))["sittings"][2]
  assert three["start_step"] == three["end_step"] == results["steps"]
