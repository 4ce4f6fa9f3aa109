"""Metrics: hand-computed confusion matrices and their metrics, accumulation over 8
devices against an independent numpy count."""

import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from renet_jax.evaluation import metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("array", [jnp.asarray, np.asarray], ids=["jax", "numpy"])
def test_confusion_matrix_and_metrics_by_hand(array):
  # 3 classes, void = 3. True / predicted per pixel, two images of 2x3.
  labels = np.array([[[0, 0, 1], [2, 3, 1]],
                     [[1, 1, 2], [0, 3, 3]]])
  preds = np.array([[[0, 1, 1], [2, 0, 0]],
                    [[1, 2, 2], [0, 1, 2]]])
  # Labelled pixels (true, pred): (0,0) (0,1) (1,1) (2,2) (1,0) | (1,1) (1,2) (2,2) (0,0)
  expected = np.array([[2, 1, 0],
                       [1, 2, 1],
                       [0, 0, 2]])
  cm = metrics.confusion_matrix(array(preds), array(labels), 3, void=3)
  assert isinstance(cm, np.ndarray) == (array is np.asarray)  # host arrays stay on host
  cm = np.asarray(cm)
  np.testing.assert_array_equal(cm, expected)
  m = metrics.metrics_from_confusion(cm, ("a", "b", "c"))
  assert m["pixels"] == 9
  assert m["accuracy"] == pytest.approx(6 / 9)
  assert m["class_accuracy"] == pytest.approx({"a": 2 / 3, "b": 2 / 4, "c": 2 / 2})
  # IoU = TP / (TP + FP + FN): a 2/(2+1+1), b 2/(2+1+2), c 2/(2+1+0)
  assert m["class_iou"] == pytest.approx({"a": 2 / 4, "b": 2 / 5, "c": 2 / 3})
  assert m["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
  assert m["mean_iou"] == pytest.approx((1 / 2 + 2 / 5 + 2 / 3) / 3)

  # The second image masked out (a padded batch) leaves only the first one's pixels.
  cm1 = metrics.confusion_matrix(array(preds), array(labels), 3, void=3,
                                 mask=array([1.0, 0.0]))
  np.testing.assert_array_equal(cm1, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_absent_classes_are_undefined_and_left_out_of_the_means():
  cm = np.array([[5, 1, 0], [0, 0, 0], [0, 2, 3]])  # class 1 never true; predicted twice
  m = metrics.metrics_from_confusion(cm, ("a", "b", "c"))
  assert m["class_accuracy"]["b"] is None and m["class_iou"]["b"] == 0.0
  assert m["mean_class_accuracy"] == pytest.approx((5 / 6 + 3 / 5) / 2)
  cm = np.array([[4, 0], [0, 0]])  # class 1 neither true nor predicted: IoU undefined
  m = metrics.metrics_from_confusion(cm, ("a", "b"))
  assert m["class_iou"]["b"] is None and m["mean_iou"] == 1.0


@pytest.mark.slow
def test_eight_devices_accumulate_the_same_confusion_as_one():
  code = textwrap.dedent("""
      import jax, numpy as np
      jax.config.update("jax_num_cpu_devices", 8)
      from jax.sharding import NamedSharding, PartitionSpec as P
      from renet_jax import parallel
      from renet_jax.evaluation import metrics
      from renet_jax.nn import models
      from renet_jax.training import tasks, train
      model = models.ReSeg(4, units=(4,), patch_sizes=((2, 2),), upsample_filters=(4,),
                           upsample_kernels=((2, 2),), vgg=False)
      rng = np.random.default_rng(0)
      batches = [{"image": rng.random((8, 12, 10, 3), np.float32),
                  "label": rng.integers(0, 5, (8, 12, 10)).astype(np.int32),
                  "mask": (np.arange(8) < (8 if k < 2 else 5)).astype(np.float32)}
                 for k in range(3)]
      params = model.init(jax.random.key(0), batches[0]["image"])["params"]

      class Confusion(tasks.Task):  # only what evaluation uses
        preprocess = lambda self, constants, batch, key, train: batch
        model = loss = summarize = None
        def eval_sums(self, logits, b):
          return {"confusion": metrics.confusion_matrix(
              jax.numpy.argmax(logits, -1), b["label"], 4, void=4, mask=b["mask"])}

      def run(devices):
        steps = train.Steps(model, None, Confusion(), parallel.make_mesh(devices))
        p = jax.device_put(params, steps.replicated)
        totals = None
        for b in batches:
          b = jax.device_put(b, steps.split)
          if totals is None:
            totals = steps.eval_totals(p, b, "validation")
          totals = steps.evaluate(p, totals, b, "validation")
        return np.asarray(totals["confusion"])
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
