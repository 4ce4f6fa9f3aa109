"""Inference: experiments.predict and Segmenter on a trained digits_seg run."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from renet_jax import inference
from renet_jax.data import registry
from renet_jax.errors import WorkdirError

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
  # The in-process Segmenter gives the same labels as the PNG.
  segmenter = inference.Segmenter(str(workdir / "run"))
  np.testing.assert_array_equal(
      segmenter(np.asarray(Image.open(images / "im0.png"))),
      np.asarray(Image.open(out / "im0_label.png")))
  # At the trained size, the predicted digits cover most of the true digit pixels.
  pred = segmenter(test[0]["image"])
  ink = test[0]["label"] != 10
  assert np.mean(pred[ink] == test[0]["label"][ink]) > 0.5


def test_predict_on_a_folder_that_is_not_a_run(tmp_path):
  with pytest.raises(WorkdirError, match="not a run directory"):
    inference.Segmenter(str(tmp_path))
