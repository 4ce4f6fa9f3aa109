"""renet_jax.evaluation.evaluators: the config.evals checks and builder, the original-size metrics
against a confusion matrix counted pixel by pixel, and the panels' rows."""

import types

import ml_collections
import numpy as np
import pytest
from PIL import Image

from renet_jax.data.segmentation_datasets import SegmentationInfo
from renet_jax.evaluation import evaluators

INFO = SegmentationInfo(("background", "ink", "edge"), void=3)


class ThresholdPredictor:
  """Labels from the first channel's value (0: < 85, 1: < 170, else 2), whatever the
  size: a stand-in for `predictor.Predictor.labels` whose answer is known."""

  def __init__(self):
    self.calls = []

  def labels(self, params, images, batch_size=None):
    self.calls.append(len(images))
    return [np.digitize(np.asarray(image)[..., 0], (85, 170)).astype(np.uint8)
            for image in images]


def _example(rng, shape):
  return {"image": rng.integers(0, 256, shape + (3,), dtype=np.uint8),
          "label": rng.integers(0, 4, shape, dtype=np.uint8)}


def _task(images, size=(4, 4), frames=False):
  def resized(example):  # a crop stands in for the resize: what matters is the size
    return {k: v[..., :size[0], :size[1], :] if k == "image" else v[..., :size[0], :size[1]]
            for k, v in example.items()}
  return types.SimpleNamespace(
      images=images, size=size, resized=resized, predictor=ThresholdPredictor(),
      pixels=types.SimpleNamespace(info=INFO, colours=np.array(
          [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)))


def _naive_metrics(pairs):
  """Global accuracy and mean IoU over (labels, predictions) pairs, pixel by pixel."""
  k = INFO.num_classes
  cm = np.zeros((k, k), np.int64)
  for labels, predictions in pairs:
    for t, p in zip(np.ravel(labels), np.ravel(predictions)):
      if t != INFO.void:
        cm[t, p] += 1
  ious = [cm[c, c] / (cm[c].sum() + cm[:, c].sum() - cm[c, c])
          for c in range(k) if cm[c].sum() + cm[:, c].sum()]
  return cm.trace() / cm.sum(), np.mean(ious), int(cm.sum())


def test_original_size_metrics_equal_a_pixel_by_pixel_count():
  rng = np.random.default_rng(0)
  validation = [_example(rng, (5, 7)), _example(rng, (6, 4)), _example(rng, (4, 4))]
  test = [_example(rng, (4, 4)), _example(rng, (4, 4))]  # all at the model's size
  task = _task({"validation": validation, "test": test})
  found = evaluators.OriginalSizeMetrics(task, batch_size=2).run(params=None)
  accuracy, mean_iou, pixels = _naive_metrics(
      (ex["label"], np.digitize(ex["image"][..., 0], (85, 170))) for ex in validation)
  assert found["validation_original_size_accuracy"] == pytest.approx(accuracy, abs=1e-12)
  assert found["validation_original_size_mean_iou"] == pytest.approx(mean_iou, abs=1e-12)
  assert found["validation_original_size_pixels"] == pixels
  assert not any(k.startswith("test_") for k in found)  # nothing to add at the model's size
  assert task.predictor.calls == [2, 1]  # validation in batches of 2; test not run
  task.size = None  # images not resized: the per-split metrics say it all
  assert evaluators.OriginalSizeMetrics(task).run(params=None) == {}


def test_panels_draw_one_row_per_image_or_frame(tmp_path):
  rng = np.random.default_rng(1)
  images = {"validation": [_example(rng, (6, 6)) for _ in range(5)], "test": []}
  evaluators.Panels(_task(images), str(tmp_path), num_panels=3).run(params=None)
  drawn = np.asarray(Image.open(tmp_path / "panels" / "validation.png"))
  scale = 128 // 4  # 4x4 rows enlarged to 128 pixels, 2-pixel white gaps
  assert drawn.shape == (3 * 4 * scale + 2 * 2, 3 * 4 * scale + 2 * 2, 3)
  assert not (tmp_path / "panels" / "test.png").exists()  # an empty split draws nothing
  # a video task: the rows are the first clip's frames
  clips = {"validation": [_example(rng, (5, 6, 6))], "test": [_example(rng, (5, 6, 6))]}
  evaluators.Panels(_task(clips), str(tmp_path / "video"), num_panels=4).run(params=None)
  drawn = np.asarray(Image.open(tmp_path / "video" / "panels" / "test.png"))
  assert drawn.shape[0] == 4 * 4 * scale + 3 * 2
  # the prediction third of the first row is the predictor's labels, coloured
  first = _task(clips).resized(clips["test"][0])
  expected = np.digitize(first["image"][0, ..., 0], (85, 170))
  colours = _task(clips).pixels.colours
  right = drawn[:4 * scale:scale, -4 * scale::scale]
  np.testing.assert_array_equal(right, colours[expected])


def _config(**evals):
  c = ml_collections.ConfigDict({"evals": evals, "train": {"eval_batch_size": 3}})
  return c


def _problems(evals, segmentation=True):
  problems = []
  def need(ok, message):
    if not ok:
      problems.append(message)
  def one_of(field, value, choices):
    if value not in choices:
      problems.append(f"{field}={value!r} not in {choices}")
  evaluators.check(ml_collections.ConfigDict(evals), need, one_of, segmentation)
  return problems


def test_check_names_every_bad_block():
  good = {"panels": evaluators.panels().to_dict(),
          "original_size": evaluators.original_size().to_dict()}
  assert _problems(good) == []
  assert sorted(_problems(good, segmentation=False)) == [
      "evals.original_size: the original_size evaluator needs a segmentation task",
      "evals.panels: the panels evaluator needs a segmentation task"]
  bad = {"a": {"type": "panel"}, "b": {"type": "panels", "at": "step"},
         "c": {"type": "original_size", "num_panels": 2},
         "d": {"type": "panels", "splits": ("train",), "num_panels": -1}, "e": {"at": "end"}}
  assert sorted(_problems(bad)) == [
      "evals.a.type='panel' not in ('panels', 'original_size')",
      "evals.b.at='step' not in ('epoch', 'end')",
      "evals.c: unknown fields ['num_panels'] (the original_size evaluator takes at, splits)",
      "evals.d.num_panels=-1 must be >= 0",
      "evals.d.splits='train' not in ('validation', 'test')",
      "evals.e has no type (one of panels, original_size)"]


def test_from_config_builds_each_block_with_its_cadence(tmp_path):
  task = _task({"validation": [], "test": []})
  built = evaluators.from_config(_config(
      drawn=evaluators.panels(num_panels=2, splits=("test",)).to_dict(),
      measured=evaluators.original_size().to_dict()), task, str(tmp_path))
  assert {k: (at, type(e)) for k, (at, e) in built.items()} == {
      "drawn": ("epoch", evaluators.Panels), "measured": ("end", evaluators.OriginalSizeMetrics)}
  assert (built["drawn"][1].num_panels, built["drawn"][1].splits) == (2, ("test",))
  assert built["measured"][1].batch_size == 3
  assert evaluators.from_config(ml_collections.ConfigDict({"train": {}}), task, "") == {}
