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


def test_exact_resize_equals_pillows_bilinear_passes_in_numpy_jax_and_export():
  """resize_images_exactly against Pillow itself (its horizontal pass, then its
  vertical one: two one-axis resizes), growing and shrinking each axis, odd ratios,
  one and three channels; NumPy and jitted JAX bit-equal, and a `jax.export` with
  symbolic height and width too."""
  import jax
  import jax.numpy as jnp
  from PIL import Image
  rng = np.random.default_rng(0)
  jitted = jax.jit(preprocess.resize_images_exactly, static_argnums=1)
  cases = [(32, 32, 24, 24), (7, 5, 20, 13), (300, 41, 128, 128), (97, 131, 128, 60),
           (1, 9, 4, 1), (128, 128, 128, 128)]
  for n, (h_in, w_in, h, w) in enumerate(cases):
    channels = 3 if n % 2 else 1
    image = rng.integers(0, 256, (h_in, w_in, channels), np.uint8)
    pil = Image.fromarray(image if channels == 3 else image[..., 0])
    want = np.asarray(pil.resize((w, h_in), Image.BILINEAR).resize((w, h), Image.BILINEAR))
    want = want.reshape(h, w, channels)
    np.testing.assert_array_equal(preprocess.resize_images_exactly(image, (h, w), np), want)
    np.testing.assert_array_equal(jitted(jnp.asarray(image), (h, w)), want)
  exported = jax.export.export(jax.jit(lambda x: preprocess.resize_images_exactly(x, (24, 16))))(
      jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, h, w, 3"), jnp.uint8))
  images = rng.integers(0, 256, (2, 45, 37, 3), np.uint8)
  np.testing.assert_array_equal(exported.call(images),
                                preprocess.resize_images_exactly(images, (24, 16), np))


def test_nearest_resize_takes_the_sample_under_each_output_centre():
  """Index o of n outputs from m inputs reads floor((o + 1/2) m / n), computed by hand
  for a few ratios, and NumPy and JAX agree (Pillow's own NEAREST accumulates the step
  in floating point and can land one sample lower on exact halves)."""
  import jax.numpy as jnp
  assert preprocess.nearest_indices(2, 7, np).tolist() == [0, 0, 0, 1, 1, 1, 1]
  assert preprocess.nearest_indices(5, 2, np).tolist() == [1, 3]
  assert preprocess.nearest_indices(3, 3, np).tolist() == [0, 1, 2]
  labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
  out = preprocess.resize_nearest(labels[None, ..., None], (6, 2), 1, np)[0, ..., 0]
  np.testing.assert_array_equal(out, labels[[0, 0, 1, 1, 2, 2]][:, [1, 3]])
  np.testing.assert_array_equal(
      preprocess.resize_nearest(jnp.asarray(labels)[None, ..., None], (6, 2), 1), out[None, ..., None])
