"""Inference: experiments.predict and the trained-run loaders (Classifier, Segmenter,
VideoSegmenter) on briefly trained runs of each task, against the training code's own
preprocessing and model."""

import csv
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from fixtures import TFDS

from experiments.configs import digits_seg as digits_seg_config
from renet_jax.data import registry
from renet_jax.errors import WorkdirError
from renet_jax.serving import inference
from renet_jax.training import checkpoints, tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_predict_writes_labels_and_overlays(digits_seg_run, tmp_path):
  workdir, _ = digits_seg_run
  test = registry.prepare("digits_seg", data_dir=str(workdir / "tfds"))[0]["test"]
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
  # The PNG equals the network applied by hand (the training task's preprocessing and
  # model, the best checkpoint), not through inference.Segmenter: digits_seg keeps
  # images as stored, so the 36x40 image runs at its own size (a multiple of stride 4).
  config = digits_seg_config.get_config()
  config.data.data_dir = str(workdir / "tfds")
  by_hand = _reference(tasks.SegmentationTask, config, str(workdir / "run"), {
      "image": np.asarray(Image.open(images / "im0.png"))[None, ..., None],
      "label": np.zeros((1, 36, 40), np.uint8)}).argmax(-1)[0]
  np.testing.assert_array_equal(np.asarray(Image.open(out / "im0_label.png")), by_hand)
  # The Segmenter at the trained size agrees with the same computation on 20 test
  # images, and finds most digit pixels' classes (mean IoU 0.59 at 6 epochs).
  segmenter = inference.Segmenter(str(workdir / "run"))
  batch = {k: np.stack([test[i][k] for i in range(20)]) for k in ("image", "label")}
  by_hand = _reference(tasks.SegmentationTask, config, str(workdir / "run"),
                       batch).argmax(-1)
  predicted = np.stack([segmenter(image) for image in batch["image"]])
  np.testing.assert_array_equal(predicted, by_hand)
  ink = batch["label"] != 10
  assert np.mean(predicted[ink] == batch["label"][ink]) > 0.5


def _predict(workdir, images, out, *flags):
  return subprocess.run([sys.executable, "-m", "experiments.predict", f"--workdir={workdir}",
                         f"--images={images}", f"--out={out}", *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def _reference(task_cls, config, workdir, batch):
  """Logits of the best checkpoint the way training evaluates: the task's own
  preprocessing (ZCA / standardisation statistics included) and model."""
  task = task_cls(config)
  _, params = checkpoints.load_params(workdir, "best")
  batch = task.preprocess(task.constants, batch, None, train=False)
  return np.asarray(jax.jit(task.model().apply)({"params": params}, batch["image"]))


@pytest.mark.slow
def test_predict_classification_top_k_csv_equals_the_training_model(digits_standardized_run,
                                                                   tmp_path):
  workdir, config = digits_standardized_run
  test = registry.prepare("digits", data_dir=TFDS)[0]["test"]
  images = tmp_path / "images"
  images.mkdir()
  for i in range(3):
    Image.fromarray(test[i]["image"][..., 0]).save(images / f"d{i}.png")
  assert os.path.exists(os.path.join(workdir, "preprocessing.npz"))
  proc = _predict(workdir, f"{images}/*.png", tmp_path / "out", "--top_k=3")
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = list(csv.reader(open(tmp_path / "out" / "predictions.csv")))
  assert rows[0] == ["path", "class_1", "probability_1", "class_2", "probability_2",
                     "class_3", "probability_3"]
  assert len(rows) == 4 and "d0.png: " in proc.stdout
  logits = _reference(tasks.ClassificationTask, config, workdir,
                      {"image": np.stack([test[i]["image"] for i in range(3)])})
  expected = jax.nn.softmax(logits, -1)
  for i, row in enumerate(rows[1:]):
    assert row[0].endswith(f"d{i}.png")
    top = np.argsort(-expected[i])[:3]
    assert row[1::2] == [str(c) for c in top]  # digits: class c is named "c"
    np.testing.assert_allclose([float(p) for p in row[2::2]], expected[i][top], atol=2e-6)
    assert float(row[2]) >= float(row[4]) >= float(row[6])
  # Another size is resized to the training one (8x8), then classified as training does.
  classifier = inference.Classifier(workdir)
  small = np.asarray(Image.fromarray(test[0]["image"][..., 0]).resize((16, 16)))
  resized = np.asarray(Image.fromarray(small).resize((8, 8), Image.BILINEAR))
  expected = jax.nn.softmax(_reference(tasks.ClassificationTask, config, workdir,
                                       {"image": resized[None, ..., None]}), -1)
  np.testing.assert_allclose(classifier([small]), expected, atol=2e-6)


@pytest.mark.slow
def test_predict_video_labels_every_frame_in_order(moving_digits_small_run, tmp_path):
  workdir, data_dir, c = moving_digits_small_run
  clip = registry.prepare("moving_digits_seg", data_dir=data_dir)[0]["test"][0]
  frames = tmp_path / "frames"
  frames.mkdir()
  for t, frame in enumerate(clip["image"]):
    Image.fromarray(frame).save(frames / f"f{t:02d}.png")
  proc = _predict(workdir, f"{frames}/*.png", tmp_path / "out")
  assert proc.returncode == 0, proc.stderr[-3000:]
  labels = np.stack([np.asarray(Image.open(tmp_path / "out" / f"f{t:02d}_label.png"))
                     for t in range(len(clip["image"]))])
  logits = _reference(tasks.VideoSegmentationTask, c, workdir,
                      {"image": clip["image"][None], "label": clip["label"][None]})
  np.testing.assert_array_equal(labels, np.argmax(logits, -1)[0])
  gif = Image.open(tmp_path / "out" / "overlay.gif")
  assert gif.n_frames == len(clip["image"]) and gif.size == (32, 32)
  # The same clip as one video file (an animated GIF): the same labels.
  frames = [Image.fromarray(f) for f in clip["image"]]
  frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], loop=0)
  proc = _predict(workdir, str(tmp_path / "clip.gif"), tmp_path / "out_gif")
  assert proc.returncode == 0, proc.stderr[-3000:]
  from_gif = np.stack([np.asarray(Image.open(tmp_path / "out_gif" / f"clip_{t:04d}_label.png"))
                       for t in range(len(clip["image"]))])
  np.testing.assert_array_equal(from_gif, labels)


def test_predict_on_a_folder_that_is_not_a_run(tmp_path):
  with pytest.raises(WorkdirError, match="not a run directory"):
    inference.Segmenter(str(tmp_path))
