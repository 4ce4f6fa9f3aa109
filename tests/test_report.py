"""Sweep reports (launch/report.py) on a sweep directory with hand-written results."""

import csv
import os

import pytest

from launch import paper, report, spec
from launch import runs as runs_lib
from renet_jax.errors import ConfigError


def _sweep_dir(tmp_path, results_by_run, **sweep_kw):
  sweep = spec.Sweep(experiment="classify", config="experiments/configs/digits.py",
                     grid={"model.renet.units": [(8, 8), (16, 16)], "model.renet.cell": ["gru", "lstm"]},
                     random={"optimizer.learning_rate": spec.LogUniform(1e-4, 1e-2)},
                     **sweep_kw)
  runs = spec.expand(sweep)
  workdir = str(tmp_path / "sweep")
  runs_lib.prepare(sweep, runs, workdir, "sweep.py")
  for index, results in results_by_run.items():
    runs_lib.write_json(os.path.join(workdir, runs[index].name, "results.json"),
                        {"selection_metric": "validation_accuracy",
                         "selection_goal": "max", "wall_time_s": 10.0, **results})
  return workdir, runs


def test_rows_are_best_first_then_unfinished(tmp_path):
  workdir, runs = _sweep_dir(tmp_path, {
      0: {"validation_accuracy": 0.80, "test_accuracy": 0.79, "validation_error": 0.20},
      1: {"validation_accuracy": 0.95, "test_accuracy": 0.90, "validation_error": 0.05},
      3: {"validation_accuracy": 0.90, "test_accuracy": 0.93, "validation_error": 0.10}})
  runs_lib.write_json(os.path.join(workdir, runs[2].name, "exit.json"),
                      {"returncode": 1, "log": "x"})
  out = report.write(workdir)
  assert out["metric"] == "validation_accuracy" and out["goal"] == "max"
  with open(os.path.join(workdir, "report.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r["run"] for r in rows] == [runs[i].name for i in (1, 3, 0, 2)]
  assert [r["rank"] for r in rows] == ["1", "2", "3", ""]
  assert [float(r["test_accuracy"]) for r in rows[:3]] == [0.90, 0.93, 0.79]
  assert rows[3]["status"] == "failed"
  assert rows[3]["log"] == os.path.join(workdir, runs[2].name, "log.txt")
  assert rows[0]["model.renet.units"] == "(8, 8)" and rows[0]["model.renet.cell"] == "lstm"
  assert float(rows[0]["optimizer.learning_rate"]) == runs[1].swept[
      "optimizer.learning_rate"]
  with open(os.path.join(workdir, "report.md")) as f:
    md = f.read().splitlines()
  assert md[0] == "Ranked by validation_accuracy (higher is better)."
  assert md[4].startswith(f"| 1 | {runs[1].name} | finished | (8, 8) | lstm |")
  assert len(md) == 3 + 1 + 4
  for axis in ("model.renet.units", "model.renet.cell", "optimizer.learning_rate"):
    with open(os.path.join(workdir, f"report-{axis}.png"), "rb") as f:
      assert f.read(4) == b"\x89PNG"


def test_metric_and_goal_can_be_chosen(tmp_path):
  workdir, runs = _sweep_dir(tmp_path, {
      0: {"validation_accuracy": 0.80, "validation_error": 0.20},
      1: {"validation_accuracy": 0.95, "validation_error": 0.05},
      2: {"validation_accuracy": 0.90, "validation_error": 0.10}})
  out = report.collect(workdir, metric="validation_error", goal="min")
  assert [r["run"] for r in out["rows"][:3]] == [runs[i].name for i in (1, 2, 0)]
  with pytest.raises(ConfigError, match="choose --metric from.*validation_error"):
    report.collect(workdir, metric="validation_iou")


def test_the_sweep_file_can_set_the_metric(tmp_path):
  workdir, runs = _sweep_dir(tmp_path, {
      0: {"validation_accuracy": 0.80, "test_accuracy": 0.70},
      1: {"validation_accuracy": 0.95, "test_accuracy": 0.60}},
      metric="test_accuracy", goal="max")
  out = report.collect(workdir)
  assert out["metric"] == "test_accuracy"
  assert [r["run"] for r in out["rows"][:2]] == [runs[0].name, runs[1].name]


def test_not_a_sweep_dir(tmp_path):
  with pytest.raises(ConfigError, match="launch.sweep --workdir"):
    report.collect(str(tmp_path))


def _run_folder(root, name, data, vgg, results, balanced=False):
  folder = root / name
  folder.mkdir(parents=True)
  runs_lib.write_json(str(folder / "config.json"), {
      "data": {"name": data}, "model": {"name": "reseg", "reseg": {"vgg": vgg}},
      "loss": {"class_balancing": balanced}})
  runs_lib.write_json(str(folder / "results.json"), {"epochs": 12.0,
                                                     "stopped_by": "time_budget", **results})
  (folder / "command.txt").write_text("python -m experiments.segment ...")
  return folder


def test_paper_table_gives_thesis_ours_and_difference(tmp_path, capsys):
  _run_folder(tmp_path, "weizmann_horse-vgg", "weizmann_horse", True, {
      "test_accuracy": 0.9712, "test_mean_iou": 0.9105,
      "test_class_iou": {"background": 0.95, "foreground": 0.871},
      "test_original_size_accuracy": 0.97, "test_original_size_mean_iou": 0.905,
      "test_original_size_class_iou": {"background": 0.94, "foreground": 0.87}})
  _run_folder(tmp_path, "camvid-vgg", "camvid", True, {
      "test_accuracy": 0.80, "test_mean_iou": 0.40, "test_mean_class_accuracy": 0.50})
  _run_folder(tmp_path, "moving_digits_seg", "moving_digits_seg", False, {
      "test_accuracy": 0.93, "test_mean_iou": 0.52, "test_occluded_mean_iou": 0.53})
  (tmp_path / "notes").mkdir()  # a folder without results.json is left out
  rows = {(r["run"], r["metric"], r["at"]): r for r in paper.paper_rows(str(tmp_path))}
  horse = rows[("weizmann_horse-vgg", "avg IoU", "training size")]
  assert horse["thesis"] == 91.6 and horse["ours"] == pytest.approx(91.05)
  assert horse["difference"] == pytest.approx(-0.55)
  assert rows[("weizmann_horse-vgg", "global acc", "original size")]["ours"] == \
      pytest.approx(97.0)
  fg = rows[("weizmann_horse-vgg", "IoU foreground", "training size")]
  assert fg["thesis"] is None and fg["difference"] is None and fg["ours"] == \
      pytest.approx(87.1)
  camvid = rows[("camvid-vgg", "avg class acc", "training size")]
  assert camvid["thesis"] == 68.1 and camvid["difference"] == pytest.approx(-18.1)
  occluded = rows[("moving_digits_seg", "avg IoU occluded", "training size")]
  assert occluded["ours"] == pytest.approx(53.0) and occluded["thesis"] is None
  assert len(rows) == 6 + 3 + 3
  table = paper.markdown(paper.paper_rows(str(tmp_path)))
  assert "| camvid-vgg | avg IoU | training size | 58.80 | 40.00 | -18.80 | 12.0 " \
      "(time_budget) | not recorded |" in table
  with pytest.raises(ConfigError, match="not a folder"):
    paper.paper_rows(str(tmp_path / "missing"))


def _provenance(sha, sizes=(144, 72, 112), version="2.0.0"):
  return {"data": {"name": "weizmann_horse", "version": version, "sha256": sha,
                   "splits": {s: {"examples": n, "sha256": s + sha}
                              for s, n in zip(("train", "validation", "test"), sizes)}}}


def test_paper_table_shows_the_data_marks_other_data_and_averages_seeds(tmp_path):
  """Every row names its dataset version and split sizes; a run trained on other data
  than most runs of its dataset is marked; seed folders get a mean row."""
  for seed, (acc, iou) in enumerate([(0.96, 0.90), (0.97, 0.92), (0.98, 0.91)]):
    _run_folder(tmp_path, f"horse/seed{seed}", "weizmann_horse", True, {
        "test_accuracy": acc, "test_mean_iou": iou, "provenance": _provenance("aa")})
  _run_folder(tmp_path, "horse-old", "weizmann_horse", True, {
      "test_accuracy": 0.95, "test_mean_iou": 0.89,
      "provenance": _provenance("bb", (197, 66, 65), "1.0.0")})
  rows = {(r["run"], r["metric"]): r for r in paper.paper_rows(str(tmp_path))}
  assert rows[("horse/seed1", "global acc")]["data"] == "2.0.0, 144/72/112"
  assert rows[("horse-old", "global acc")]["data"] == "1.0.0, 197/66/65 (differs)"
  mean = rows[("horse (mean of 3)", "avg IoU")]
  assert mean["ours"] == pytest.approx(91.0) and mean["spread"] == pytest.approx(2.0)
  assert mean["difference"] == pytest.approx(91.0 - 91.6)
  assert rows[("horse (mean of 3)", "global acc")]["ours"] == pytest.approx(97.0)
  table = paper.markdown(paper.paper_rows(str(tmp_path)))
  assert "| horse (mean of 3) | avg IoU | training size | 91.60 | 91.00 (range 2.00) | " \
      "-0.60 |" in table


def test_every_thesis_row_names_a_registered_dataset():
  """A run's data.name must meet its thesis row (SVHN is registered as svhn_cropped)."""
  from renet_jax.data import registry
  assert {dataset for dataset, _, _ in paper.PAPER} <= set(registry.BUILDERS)
  from experiments.configs import svhn
  assert paper.row_key(svhn.get_config().to_dict()) in paper.PAPER
