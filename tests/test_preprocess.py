"""Preprocessing: ZCA, standardisation, class weights by hand, resize/crop/pad, caches."""

import os

import numpy as np

from renet_jax.data import preprocess, registry


def test_zca_whitened_training_data_has_identity_covariance():
  rng = np.random.default_rng(0)
  mixing = rng.normal(size=(12, 12))
  x = rng.normal(size=(5000, 12)) @ mixing + 3.0  # strongly correlated, shifted
  mean, w = preprocess.fit_zca(x, epsilon=1e-6)
  white = (x - mean) @ w
  np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(12), atol=1e-3)
  np.testing.assert_allclose(w, w.T, atol=1e-5)  # ZCA (not PCA): symmetric


def test_image_stats_standardise_per_pixel_after_zca(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.random((400, 2, 2, 3)).astype(np.float32) * np.arange(1, 13).reshape(2, 2, 3)
  stats = preprocess.fit_image_stats(images, zca=True, standardize=True, zca_epsilon=1e-6)
  out = stats.apply(images)
  np.testing.assert_allclose(out.mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(out.std(0), 1, atol=1e-4)
  stats.save(str(tmp_path / "s.npz"))
  np.testing.assert_allclose(preprocess.ImageStats.load(str(tmp_path / "s.npz")).apply(images),
                             out, atol=1e-6)


def test_dataset_image_stats_are_cached(tmp_path):
  train = [{"image": np.full((2, 2, 1), v, np.uint8)} for v in (0, 51, 102, 255)]
  first = preprocess.dataset_image_stats(str(tmp_path), train, zca=False, standardize=True)
  np.testing.assert_allclose(first.pixel_mean, np.full((2, 2, 1), 102 / 255), rtol=1e-6)
  assert os.listdir(tmp_path) == ["image_stats_zca0_eps0.1_std1.npz"]
  again = preprocess.dataset_image_stats(str(tmp_path), [], zca=False, standardize=True)
  np.testing.assert_array_equal(again.pixel_std, first.pixel_std)  # read, not refitted


def test_median_frequency_weights_by_hand(tmp_path):
  void = 3
  labels = [np.array([[0, 0, 1], [1, 1, 3]]),   # 5 valid pixels: class 0 x2, class 1 x3
            np.array([[2, 2, 2], [2, 0, 3]])]   # 5 valid pixels: class 0 x1, class 2 x4
  freqs = preprocess.class_frequencies(labels, num_classes=3, void=void)
  assert freqs == {"counts": [3, 3, 4], "present_pixels": [10, 5, 5]}
  # freq = [3/10, 3/5, 4/5]; median 0.6; weights = 0.6 / freq.
  np.testing.assert_allclose(preprocess.median_frequency_weights(freqs), [2.0, 1.0, 0.75])
  np.testing.assert_allclose(preprocess.median_frequency_weights(freqs, 0.5),
                             [2 ** 0.5, 1.0, 0.75 ** 0.5], rtol=1e-6)
  np.testing.assert_allclose(preprocess.median_frequency_weights(
      {"counts": [3, 0], "present_pixels": [10, 0]}, 0.0), [1.0, 0.0])  # absent: 0
  train = [{"label": l} for l in labels]
  assert preprocess.dataset_class_frequencies(str(tmp_path), train, 3, void) == freqs
  assert preprocess.dataset_class_frequencies(str(tmp_path), [], 3, void) == freqs  # cached


def test_resize_pair_uses_nearest_for_labels():
  image = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
  label = np.array([[0, 0, 5, 5, 9, 9]] * 4, np.uint8)
  out_image, out_label = preprocess.resize_pair(image, label, (8, 3))
  assert out_image.shape == (8, 3, 3) and out_label.shape == (8, 3)
  assert set(np.unique(out_label)) <= {0, 5, 9}  # no interpolated class ids
  np.testing.assert_array_equal(out_label, np.array([[0, 5, 9]] * 8))


def test_prepare_returns_the_prepared_folder(tmp_path):
  sources, folder = registry.prepare("digits", data_dir=str(tmp_path))
  assert folder.startswith(str(tmp_path)) and os.path.isdir(folder)
  assert len(sources["train"]) == 1197
