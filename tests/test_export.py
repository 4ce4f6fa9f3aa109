"""experiments.export: the exported function, loaded by plain JAX in a process that
never imports renet_jax, equals the in-process trained run on the same images, for a
symbolic batch (and clip length), with probabilities or labels."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fixtures import TFDS

from renet_jax.data import preprocess, registry
from renet_jax.errors import ConfigError
from renet_jax.evaluation import metrics
from renet_jax.serving import exporting, inference
from renet_jax.training import tasks, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What a user writes: JAX alone (the check that renet_jax stays unimported is ours).
PLAIN_JAX = """
import sys
import numpy as np
from jax import export
exported = export.deserialize(open(sys.argv[1], "rb").read())
for k in range(2, len(sys.argv), 2):  # pairs of input and output .npy files
  np.save(sys.argv[k + 1], np.asarray(exported.call(np.load(sys.argv[k]))))
assert not any(m.startswith("renet_jax") for m in sys.modules), "renet_jax was imported"
"""


def _export(workdir, out, *flags):
  proc = subprocess.run([sys.executable, "-m", "experiments.export", f"--workdir={workdir}",
                         f"--out={out}", *flags], cwd=REPO, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(open(f"{out}.json").read())


def _call_plain(path, batches, tmp_path):
  """The exported function at `path` on each batch of images, called by plain JAX (one
  new process for them all)."""
  args = []
  for k, images in enumerate(batches):
    np.save(tmp_path / f"in{k}.npy", images)
    args += [str(tmp_path / f"in{k}.npy"), str(tmp_path / f"out{k}.npy")]
  proc = subprocess.run([sys.executable, "-c", PLAIN_JAX, str(path), *args],
                        cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return [np.load(tmp_path / f"out{k}.npy") for k in range(len(batches))]


@pytest.mark.slow
def test_exported_classifier_equals_the_trained_run(digits_standardized_run, tmp_path):
  workdir, c = digits_standardized_run  # the fitted statistics travel inside the file
  description = _export(workdir, tmp_path / "digits.jaxexport")
  assert description["input_shape"] == "b, h, w, 1"  # resized to 8x8 in the graph
  assert description["platforms"] == ["cpu", "cuda"]
  assert description["class_names"] == [str(d) for d in range(10)]
  test = registry.prepare("digits", data_dir=c.data.data_dir)[0]["test"]
  classifier = inference.Classifier(workdir)
  one, images = (np.stack([test[i]["image"] for i in range(n)]) for n in (1, 5))
  # Another size: resized to 8x8 inside the file, as predict's Classifier resizes.
  larger = np.repeat(np.repeat(images, 2, axis=1), 3, axis=2)[:, :13]  # (5, 13, 24, 1)
  batches = (one, images, larger)  # one file serves every batch size and image size
  outputs = _call_plain(tmp_path / "digits.jaxexport", batches, tmp_path)
  for batch, got in zip(batches, outputs):
    np.testing.assert_allclose(got, classifier(batch), atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1, atol=1e-5)
  small = np.stack([preprocess.resize_images_exactly(im, (8, 8), np) for im in larger])
  np.testing.assert_allclose(outputs[-1], classifier(small), atol=1e-6)


@pytest.mark.slow
def test_exported_segmenter_gives_the_labels_of_predict(digits_seg_run, tmp_path):
  workdir, _ = digits_seg_run
  description = _export(workdir / "run", tmp_path / "seg.jaxexport", "--output=labels",
                        "--platforms=cpu")
  # Any multiple of the stride (4): H and W are symbolic.
  assert description["input_shape"] == "b, 4*h, 4*w, 1" and description["output"] == "labels"
  assert description["trained_size"] == [32, 32]
  test = registry.prepare("digits_seg", data_dir=str(workdir / "tfds"))[0]["test"]
  images = np.stack([test[i]["image"] for i in range(3)])
  # Another size: the same labels as the in-process model at that size.
  wide = np.concatenate([images, images[:, :16]], axis=1)[:, :, :]  # (3, 48, 32, 1)
  wide = np.concatenate([wide, wide[:, :, :12]], axis=2)  # (3, 48, 44, 1)
  got, got_wide = _call_plain(tmp_path / "seg.jaxexport", (images, wide), tmp_path)
  segmenter = inference.Segmenter(str(workdir / "run"))
  np.testing.assert_array_equal(got, np.stack([segmenter(im) for im in images]))
  want = np.argmax(segmenter.predictor.model_probabilities(segmenter.params, wide), -1)
  assert got_wide.shape == (3, 48, 44)
  np.testing.assert_array_equal(got_wide, want)


@pytest.mark.slow
def test_exported_video_segmenter_takes_any_clip_length(moving_digits_small_run, tmp_path):
  workdir, data_dir, c = moving_digits_small_run
  description = _export(workdir, tmp_path / "video.jaxexport", "--platforms=cpu")
  assert description["input_shape"] == "b, t, 4*h, 4*w, 3"  # any multiple of the stride
  clips = registry.prepare("moving_digits_seg", data_dir=data_dir)[0]["test"]
  video = inference.VideoSegmenter(workdir)
  batches = [np.stack([clips[i]["image"][:frames] for i in range(2)]) for frames in (10, 4)]
  for images, got in zip(batches, _call_plain(tmp_path / "video.jaxexport", batches,
                                              tmp_path)):
    assert got.shape == (2, len(images[0]), 32, 32, 11)
    np.testing.assert_array_equal(np.argmax(got, -1)[0], video(images[0]))


def test_an_unknown_output_is_refused(tmp_path):
  with pytest.raises(ConfigError, match="--output='logits': choose one of"):
    exporting.export_run(str(tmp_path), output="logits")


@pytest.mark.slow
def test_a_parallel_cell_trains_resumes_predicts_and_exports(tmp_path):
  """A ReSeg with a parallel cell (minLSTM, the one with more gates) trains, resumes to
  the uninterrupted run's parameters bit for bit, and its export (symbolic H, W: the
  sweeps' lengths are symbolic, so the sequential scan runs) gives predict's labels at
  the trained size and another."""
  import jax
  from experiments.configs import digits_seg as digits_seg_config
  from renet_jax.training import checkpoints
  c = digits_seg_config.get_config()
  c.data.data_dir = TFDS
  c.model.reseg.cell = "minlstm"
  c.model.reseg.units, c.model.reseg.upsample_filters = (8, 8), (8, 8)
  c.train.num_epochs = 1
  whole = str(tmp_path / "whole")
  train.train_and_evaluate(c, whole, tasks.SegmentationTask)
  c.train.stop_after_steps = 7  # killed part-way through the epoch, then resumed
  parts = str(tmp_path / "parts")
  train.train_and_evaluate(c, parts, tasks.SegmentationTask)
  c.train.stop_after_steps = 0
  train.train_and_evaluate(c, parts, tasks.SegmentationTask)
  for a, b in zip(*(jax.tree.leaves(checkpoints.load_params(w, "latest"))
                    for w in (whole, parts))):
    np.testing.assert_array_equal(a, b)

  serialized, description = exporting.export_run(whole, output="labels", platforms=["cpu"])
  assert description["input_shape"] == "b, 4*h, 4*w, 1"
  exported = jax.export.deserialize(serialized)
  test = registry.prepare("digits_seg", data_dir=c.data.data_dir)[0]["test"]
  images = np.stack([test[i]["image"] for i in range(3)])
  segmenter = inference.Segmenter(whole)
  for batch in (images, np.concatenate([images, images[:, :8]], axis=1)):  # 32 and 40 rows
    want = np.argmax(segmenter.predictor.model_probabilities(segmenter.params, batch), -1)
    np.testing.assert_array_equal(exported.call(batch), want)


@pytest.mark.slow
def test_predict_export_and_original_size_metrics_give_one_answer(tmp_path):
  """A run trained at data.image_size (24x24) on 32x32 images: the exported model,
  experiments.predict's Segmenter and training's original-size metrics give the same
  labels, at the stored size, the training size and a third size; the labels at the
  stored size are the 24x24 network applied by hand to the exactly resized image, then
  resized back by nearest neighbour (the issue this fixes: the export ran at the
  image's own size while predict resized)."""
  import jax
  from experiments.configs import digits_seg as digits_seg_config
  c = digits_seg_config.get_config()
  c.data.data_dir = TFDS
  c.data.image_size = (24, 24)
  c.model.reseg.units, c.model.reseg.upsample_filters = (8, 8), (8, 8)
  c.train.num_epochs = 1
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(c, workdir, tasks.SegmentationTask)
  results = json.loads(open(os.path.join(workdir, "results.json")).read())
  serialized, description = exporting.export_run(workdir, output="labels", platforms=["cpu"])
  assert description["input_shape"] == "b, h, w, 1" and description["trained_size"] == [24, 24]
  exported = jax.export.deserialize(serialized)
  segmenter = inference.Segmenter(workdir)
  test = registry.prepare("digits_seg", data_dir=c.data.data_dir)[0]["test"]

  # The original-size metrics are those of predict's labels (one confusion matrix).
  confusion = sum(metrics.confusion_matrix(segmenter(test[i]["image"]),
                                           np.asarray(test[i]["label"], np.int32),
                                           segmenter.model.num_classes)
                  for i in range(len(test)))
  found = metrics.metrics_from_confusion(confusion, segmenter.class_names)
  assert found["pixels"] == results["test_original_size_pixels"] > 0
  for name in ("accuracy", "mean_iou"):
    assert found[name] == pytest.approx(results[f"test_original_size_{name}"], abs=1e-12)

  images = np.stack([test[i]["image"] for i in range(3)])  # (3, 32, 32, 1)
  third = np.concatenate([images, images[:, :8]], axis=1)[:, :, :27]  # (3, 40, 27, 1)
  for batch in (images, images[:, 4:28, 4:28], third):
    labels = np.asarray(exported.call(batch))
    assert labels.shape == batch.shape[:3]
    np.testing.assert_array_equal(labels, np.stack([segmenter(im) for im in batch]))
  # By hand: Pillow's bilinear passes to 24x24, the network, the argmax, nearest back.
  from PIL import Image
  small = np.stack([np.asarray(Image.fromarray(im[..., 0]).resize((24, 32), Image.BILINEAR)
                               .resize((24, 24), Image.BILINEAR))[..., None]
                    for im in images])
  logits = jax.jit(segmenter.model.apply)({"params": segmenter.params},
                                          preprocess.scale(small))
  rows = (np.arange(32) * 2 + 1) * 24 // 64  # nearest source row/column of 32 from 24
  np.testing.assert_array_equal(np.asarray(exported.call(images)),
                                np.argmax(logits, -1)[:, rows][:, :, rows])
