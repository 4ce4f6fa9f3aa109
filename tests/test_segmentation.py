"""Segmentation task: loss, confusion-matrix metrics (hand-computed), accumulation over 8
devices, pictures, the digits_seg and Weizmann runs, and experiments.predict."""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments.configs import digits_seg as digits_seg_config
from experiments.configs import weizmann_horse as weizmann_config
from renet_jax import segmentation, train
from renet_jax.data import datasets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_HORSE = os.path.join(REPO, "..", "shared", "data", "weizmann_horse")


def test_confusion_matrix_and_metrics_by_hand():
  # 3 classes, void = 3. True / predicted per pixel, two images of 2x3.
  labels = np.array([[[0, 0, 1], [2, 3, 1]],
                     [[1, 1, 2], [0, 3, 3]]])
  preds = np.array([[[0, 1, 1], [2, 0, 0]],
                    [[1, 2, 2], [0, 1, 2]]])
  # Labelled pixels (true, pred): (0,0) (0,1) (1,1) (2,2) (1,0) | (1,1) (1,2) (2,2) (0,0)
  expected = np.array([[2, 1, 0],
                       [1, 2, 1],
                       [0, 0, 2]])
  cm = np.asarray(segmentation.confusion_matrix(jnp.asarray(preds), jnp.asarray(labels), 3,
                                                void=3))
  np.testing.assert_array_equal(cm, expected)
  m = segmentation.metrics_from_confusion(cm, ("a", "b", "c"))
  assert m["pixels"] == 9
  assert m["accuracy"] == pytest.approx(6 / 9)
  assert m["class_accuracy"] == pytest.approx({"a": 2 / 3, "b": 2 / 4, "c": 2 / 2})
  # IoU = TP / (TP + FP + FN): a 2/(2+1+1), b 2/(2+1+2), c 2/(2+1+0)
  assert m["class_iou"] == pytest.approx({"a": 2 / 4, "b": 2 / 5, "c": 2 / 3})
  assert m["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
  assert m["mean_iou"] == pytest.approx((1 / 2 + 2 / 5 + 2 / 3) / 3)

  # The second image masked out (a padded batch) leaves only the first one's pixels.
  cm1 = segmentation.confusion_matrix(jnp.asarray(preds), jnp.asarray(labels), 3, void=3,
                                      mask=jnp.array([1.0, 0.0]))
  np.testing.assert_array_equal(cm1, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_absent_classes_are_undefined_and_left_out_of_the_means():
  cm = np.array([[5, 1, 0], [0, 0, 0], [0, 2, 3]])  # class 1 never true; predicted twice
  m = segmentation.metrics_from_confusion(cm, ("a", "b", "c"))
  assert m["class_accuracy"]["b"] is None and m["class_iou"]["b"] == 0.0
  assert m["mean_class_accuracy"] == pytest.approx((5 / 6 + 3 / 5) / 2)
  cm = np.array([[4, 0], [0, 0]])  # class 1 neither true nor predicted: IoU undefined
  m = segmentation.metrics_from_confusion(cm, ("a", "b"))
  assert m["class_iou"]["b"] is None and m["mean_iou"] == 1.0


def test_weighted_loss_ignores_void_by_hand():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 4, 3))
  labels = rng.integers(0, 4, (2, 3, 4))  # 3 = void
  weights = np.array([0.5, 2.0, 1.5])
  total, count = segmentation.segmentation_loss(jnp.asarray(logits), jnp.asarray(labels),
                                                void=3, class_weights=weights)
  expect, n = 0.0, 0
  for idx in np.ndindex(labels.shape):
    c = labels[idx]
    if c == 3:
      continue
    z = logits[idx]
    expect += weights[c] * -(z[c] - np.log(np.exp(z).sum()))
    n += 1
  assert int(count) == n
  np.testing.assert_allclose(float(total), expect, rtol=1e-5)
  # Changing the logits of void pixels changes nothing.
  moved = np.where((labels == 3)[..., None], logits + 10 * rng.normal(size=logits.shape),
                   logits)
  again, _ = segmentation.segmentation_loss(jnp.asarray(moved), jnp.asarray(labels), void=3,
                                            class_weights=weights)
  np.testing.assert_allclose(float(again), float(total), rtol=1e-6)


def test_eight_devices_accumulate_the_same_confusion_as_one():
  code = textwrap.dedent("""
      import os
      os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
      import jax, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      from renet_jax import models, segmentation, train
      model = models.ReSeg(4, units=(4,), patch_sizes=((2, 2),), upsample_filters=(4,),
                           upsample_kernels=((2, 2),), vgg=False)
      rng = np.random.default_rng(0)
      batches = [{"image": rng.random((8, 12, 10, 3), np.float32),
                  "label": rng.integers(0, 5, (8, 12, 10)).astype(np.int32),
                  "mask": (np.arange(8) < (8 if k < 2 else 5)).astype(np.float32)}
                 for k in range(3)]
      params = model.init(jax.random.key(0), batches[0]["image"])["params"]
      sums = lambda logits, b: {"confusion": segmentation.confusion_matrix(
          jax.numpy.argmax(logits, -1), b["label"], 4, void=4, mask=b["mask"])}
      def run(devices):
        mesh = train.make_mesh(devices)
        rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
        fn = jax.jit(lambda p, b: train.eval_step(p, b, model=model, sums_fn=sums),
                     in_shardings=(rep, data), out_shardings=rep)
        p = jax.device_put(params, rep)
        return sum(np.asarray(fn(p, jax.device_put(b, data))["confusion"]) for b in batches)
      one, eight = run(jax.devices()[:1]), run(jax.devices())
      assert len(jax.devices()) == 8
      expected = 0
      for b in batches:  # independent: numpy on the unsharded logits
        pred = np.asarray(model.apply({"params": params}, b["image"])).argmax(-1)
        keep = (b["label"] != 4) & (b["mask"][:, None, None] > 0)
        expected = expected + np.bincount(b["label"][keep] * 4 + pred[keep],
                                          minlength=16).reshape(4, 4)
      np.testing.assert_array_equal(one, expected)
      np.testing.assert_array_equal(eight, expected)
      print("ok", int(expected.sum()))
  """)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_colours_and_panel_layout():
  colours = segmentation.class_colours(datasets_info("camvid"))
  assert colours.shape == (12, 3) and tuple(colours[3]) == (128, 64, 128)  # Road
  labels = np.array([[3, 11], [0, 200]])
  np.testing.assert_array_equal(segmentation.colorize(labels, colours)[0, 1], [0, 0, 0])
  voc = segmentation.voc_palette(4)
  np.testing.assert_array_equal(voc, [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
  images = np.zeros((2, 8, 6, 1), np.float32)
  p = segmentation.panel(images, labels=np.zeros((2, 8, 6), int),
                         predictions=np.ones((2, 8, 6), int), colours=colours, min_height=16)
  # rows of 16 px (enlarged 2x) with a 2-px gap; three 12-px columns with two gaps
  assert p.shape == (16 * 2 + 2, 12 * 3 + 2 * 2, 3)
  np.testing.assert_array_equal(p[0, 12 + 2 + 12 + 2], colours[1])  # prediction column


def datasets_info(name):
  from renet_jax.data.segmentation import SEGMENTATION
  return SEGMENTATION[name]


@pytest.fixture(scope="module")
def digits_seg_run(tmp_path_factory):
  """The embedded segmentation default, as configured (20 epochs, about 90 s)."""
  workdir = tmp_path_factory.mktemp("digits_seg")
  c = digits_seg_config.get_config()
  c.data.data_dir = str(workdir / "tfds")
  results = train.train_and_evaluate(c, str(workdir / "run"), segmentation.SegmentationTask)
  return workdir, results


def test_digits_seg_beats_the_all_background_baseline(digits_seg_run):
  workdir, results = digits_seg_run
  test = datasets.load("digits_seg", data_dir=str(workdir / "tfds"))["test"]
  labels = np.stack([ex["label"] for ex in test]).astype(np.int64)
  all_background = np.full_like(labels, 10)
  cm = np.bincount(labels.ravel() * 11 + all_background.ravel(),
                   minlength=121).reshape(11, 11)
  baseline = segmentation.metrics_from_confusion(cm, [str(i) for i in range(11)])
  assert baseline["mean_iou"] < 0.1  # background IoU ~0.93 over 11 classes
  assert results["test_mean_iou"] > baseline["mean_iou"] + 0.5, results["test_mean_iou"]
  assert results["test_accuracy"] > baseline["accuracy"]


def test_segmentation_workdir(digits_seg_run):
  workdir, results = digits_seg_run
  run = workdir / "run"
  saved = json.loads((run / "results.json").read_text())
  assert saved["selection_metric"] == "validation_mean_iou"
  assert set(saved["test_class_iou"]) == {str(i) for i in range(10)} | {"background"}
  task = json.loads((run / "task.json").read_text())
  assert task["class_names"][10] == "background" and task["channels"] == 1
  for picture in ("panels/validation.png", "panels/test.png", "learning_curve.png"):
    assert Image.open(run / picture).size[0] > 100
  panel = np.asarray(Image.open(run / "panels" / "test.png"))
  assert panel.shape[0] == 4 * 128 + 3 * 2  # four 32-px images enlarged 4x, gaps
  rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
  val = [r for r in rows if r["split"] == "validation"]
  assert saved["validation_mean_iou"] == pytest.approx(max(r["mean_iou"] for r in val))


def test_predict_writes_labels_and_overlays(digits_seg_run, tmp_path):
  workdir, _ = digits_seg_run
  test = datasets.load("digits_seg", data_dir=str(workdir / "tfds"))["test"]
  images = tmp_path / "images"
  images.mkdir()
  for i in range(2):  # a size the model never saw
    Image.fromarray(test[i]["image"][..., 0]).resize((40, 36)).save(images / f"im{i}.png")
  out = tmp_path / "out"
  proc = subprocess.run([sys.executable, "-m", "experiments.predict",
                         f"--workdir={workdir / 'run'}", f"--images={images}/*.png",
                         f"--out={out}"], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for i in range(2):
    label = np.asarray(Image.open(out / f"im{i}_label.png"))
    assert label.shape == (36, 40) and label.max() <= 10
    assert np.asarray(Image.open(out / f"im{i}_overlay.png")).shape == (36, 40, 3)
  # The in-process Segmenter gives the same labels as the PNG.
  segmenter = segmentation.Segmenter(str(workdir / "run"))
  np.testing.assert_array_equal(
      segmenter(np.asarray(Image.open(images / "im0.png"))),
      np.asarray(Image.open(out / "im0_label.png")))
  # At the trained size, the predicted digits cover most of the true digit pixels.
  pred = segmenter(test[0]["image"])
  ink = test[0]["label"] != 10
  assert np.mean(pred[ink] == test[0]["label"][ink]) > 0.5


def test_predict_on_a_folder_that_is_not_a_run(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a run directory"):
    segmentation.Segmenter(str(tmp_path))


def test_vgg_without_weights_is_a_clear_error(tmp_path):
  c = digits_seg_config.get_config("vgg")
  c.data.data_dir = str(tmp_path / "tfds")
  with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
    train.train_and_evaluate(c, str(tmp_path / "run"), segmentation.SegmentationTask)
  c.model.vgg_weights = str(tmp_path / "nowhere.h5")
  with pytest.raises(FileNotFoundError, match="not found"):
    train.train_and_evaluate(c, str(tmp_path / "run"), segmentation.SegmentationTask)


def test_config_options_are_checked():
  with pytest.raises(ValueError, match="Unknown config options"):
    digits_seg_config.get_config("vgg,fast")
  c = digits_seg_config.get_config("vgg,quick")
  assert c.model.vgg and c.model.patch_sizes == ((1, 1), (1, 1)) and c.train.num_epochs == 3


@pytest.mark.skipif(not os.path.isdir(SHARED_HORSE),
                    reason="../shared/data/weizmann_horse is absent on this machine")
def test_weizmann_horse_short_run(tmp_path):
  c = weizmann_config.get_config("quick")  # no VGG, 16 units, 5 epochs at 128x128
  c.data.manual_dir = SHARED_HORSE
  c.data.data_dir = str(tmp_path / "tfds")
  results = train.train_and_evaluate(c, str(tmp_path / "run"), segmentation.SegmentationTask)
  # All-background scores mean IoU = background share / 2, about 0.38 here.
  assert results["test_mean_iou"] > 0.5, results
  assert results["test_pixels"] == 65 * 128 * 128  # 328 images: 197 / 66 / 65
