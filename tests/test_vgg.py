"""VGG-16 front end: weight files written in the exact Keras-h5 and torchvision layouts
load, and the features equal an independent float64 numpy convolution."""

import collections
import io
import pickle
import sys
import types
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from renet_jax.nn import vgg

CHANNELS = {"block1_conv1": (3, 64), "block1_conv2": (64, 64), "block2_conv1": (64, 128),
            "block2_conv2": (128, 128), "block3_conv1": (128, 256),
            "block3_conv2": (256, 256), "block3_conv3": (256, 256)}


def random_weights(seed=0):
  """Keras-orientation (3, 3, in, out) kernels, scaled so activations stay O(1)."""
  rng = np.random.default_rng(seed)
  return {name: {"kernel": (rng.normal(size=(3, 3, i, o)) / np.sqrt(9 * i)).astype(
      np.float32), "bias": rng.normal(scale=0.1, size=o).astype(np.float32)}
          for name, (i, o) in CHANNELS.items()}


def reference_features(images, params, preprocessing):
  """float64 numpy: 3x3 cross-correlation padded by 1, ReLU, 2x2 max-pools."""
  x = np.asarray(images, np.float64)
  if preprocessing == "caffe":
    x = x[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
  else:
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  for layer in vgg.LAYERS:
    if layer == "pool":
      n, h, w, c = x.shape
      x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
      continue
    p = params[layer[0]]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    x = np.einsum("nhwcij,ijco->nhwo", windows, np.asarray(p["kernel"], np.float64))
    x = np.maximum(x + p["bias"], 0)
  return x


def write_keras_h5(path, params, whole_model=False):
  """Keras' save_weights layout (as in vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5):
  root attr layer_names; per layer a group with attr weight_names and its datasets."""
  import h5py
  names, pools = ["input_1"], 0
  for layer in vgg.LAYERS:
    if layer == "pool":
      pools += 1
    names.append(f"block{pools}_pool" if layer == "pool" else layer[0])
  with h5py.File(path, "w") as f:
    root = f.create_group("model_weights") if whole_model else f
    root.attrs["layer_names"] = [n.encode() for n in names]
    root.attrs["backend"] = b"tensorflow"
    for name in names:
      g = root.create_group(name)
      if name in params:
        weight_names = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
        g.create_dataset(weight_names[0].decode(), data=params[name]["kernel"])
        g.create_dataset(weight_names[1].decode(), data=params[name]["bias"])
      else:
        weight_names = []
      g.attrs["weight_names"] = weight_names


def torchvision_state(params):
  """torchvision's VGG-16 state dict as numpy: OIHW kernels, features.N keys, plus the
  classifier weights the front end must ignore."""
  state = collections.OrderedDict()
  for name, index in vgg.TORCHVISION_INDEX.items():
    state[f"features.{index}.weight"] = np.ascontiguousarray(
        params[name]["kernel"].transpose(3, 2, 0, 1))
    state[f"features.{index}.bias"] = params[name]["bias"]
  state["classifier.0.weight"] = np.zeros((8, 4), np.float32)
  return state


@pytest.fixture
def fake_torch(monkeypatch):
  """Module objects named like torch's, so a plain pickler writes the same globals
  (torch._utils._rebuild_tensor_v2, torch.FloatStorage) that torch.save writes."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):
    raise AssertionError("only pickled, never called")

  class FloatStorage:
    pass

  _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = utils.__name__, \
      "_rebuild_tensor_v2"
  FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch.FloatStorage, torch._utils = FloatStorage, utils
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  return torch


class _Tensor:
  def __init__(self, key, array, rebuild):
    self.key, self.array, self.rebuild = key, array, rebuild

  def __reduce__(self):
    storage = ("storage", sys.modules["torch"].FloatStorage, self.key, "cpu",
               self.array.size)
    stride = tuple(s // self.array.itemsize for s in self.array.strides)
    return self.rebuild, (_Persistent(storage), 0, self.array.shape, stride, False,
                          collections.OrderedDict())


class _Persistent:
  def __init__(self, pid):
    self.pid = pid


class _Pickler(pickle.Pickler):
  def persistent_id(self, obj):
    return obj.pid if isinstance(obj, _Persistent) else None


def write_torch_zip(path, state, torch):
  """torch.save's zip format: archive/data.pkl + archive/data/<key> raw storages."""
  tensors = collections.OrderedDict(
      (k, _Tensor(str(i), v, torch._utils._rebuild_tensor_v2))
      for i, (k, v) in enumerate(state.items()))
  buf = io.BytesIO()
  _Pickler(buf, protocol=2).dump(tensors)
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", buf.getvalue())
    z.writestr("archive/byteorder", "little")
    for t in tensors.values():
      z.writestr(f"archive/data/{t.key}", t.array.astype("<f4").tobytes())
    z.writestr("archive/version", "3\n")


def write_torch_legacy(path, state, torch):
  """torch.save's legacy format (vgg16-397923af.pth): magic, version, sys info, the
  pickle, the storage keys, then each storage as int64 numel + raw bytes."""
  tensors = collections.OrderedDict(
      (k, _Tensor(str(i), v, torch._utils._rebuild_tensor_v2))
      for i, (k, v) in enumerate(state.items()))
  with open(path, "wb") as f:
    pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
    _Pickler(f, protocol=2).dump(tensors)
    pickle.dump([t.key for t in tensors.values()], f, protocol=2)
    for t in tensors.values():
      f.write(np.int64(t.array.size).tobytes())
      f.write(t.array.astype("<f4").tobytes())


def features(weights, images):
  module = vgg.VGG16Features(weights.preprocessing)
  return np.asarray(module.apply({"params": weights.params}, jnp.asarray(images)))


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(1).random((2, 12, 8, 3)).astype(np.float32)


@pytest.mark.parametrize("whole_model", [False, True])
def test_keras_h5_import_matches_reference(tmp_path, images, whole_model):
  params = random_weights()
  path = str(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
  write_keras_h5(path, params, whole_model)
  weights = vgg.load_vgg_weights(path)
  assert weights.preprocessing == "caffe"
  got = features(weights, images)
  assert got.shape == (2, 3, 2, 256)
  expected = reference_features(images, params, "caffe")
  np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())


@pytest.mark.parametrize("writer", [write_torch_zip, write_torch_legacy])
def test_torchvision_import_matches_reference(tmp_path, images, fake_torch, writer):
  params = random_weights(2)
  path = str(tmp_path / "vgg16-397923af.pth")
  writer(path, torchvision_state(params), fake_torch)
  weights = vgg.load_vgg_weights(path)
  assert weights.preprocessing == "torch"
  expected = reference_features(images, params, "torch")
  np.testing.assert_allclose(features(weights, images), expected, rtol=2e-4,
                             atol=2e-4 * np.abs(expected).max())


@pytest.mark.parametrize("zip_format", [True, False])
def test_files_written_by_pytorch_itself(tmp_path, zip_format):
  torch = pytest.importorskip("torch")
  params = random_weights(3)
  state = collections.OrderedDict((k, torch.from_numpy(v))
                                  for k, v in torchvision_state(params).items())
  path = str(tmp_path / "vgg16.pth")
  torch.save(state, path, _use_new_zipfile_serialization=zip_format)
  weights = vgg.load_torchvision(path)
  for name in vgg.CONVS:
    np.testing.assert_array_equal(weights.params[name]["kernel"], params[name]["kernel"])


def test_npz_round_trip_and_grey_input(tmp_path, images):
  weights = vgg.VggWeights(random_weights(4), "caffe")
  vgg.save_npz(str(tmp_path / "w.npz"), weights)
  again = vgg.load_vgg_weights(str(tmp_path / "w.npz"))
  assert again.preprocessing == "caffe"
  np.testing.assert_array_equal(features(again, images), features(weights, images))
  grey = images[..., :1]
  np.testing.assert_array_equal(features(weights, grey),
                                features(weights, np.repeat(grey, 3, -1)))


def test_bad_weight_files_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="keras-applications"):
    vgg.load_vgg_weights(str(tmp_path / "missing.h5"))
  (tmp_path / "w.bin").write_bytes(b"x")
  with pytest.raises(ValueError, match="unknown VGG weights format"):
    vgg.load_vgg_weights(str(tmp_path / "w.bin"))
  (tmp_path / "w.pth").write_bytes(b"not a pickle")
  with pytest.raises(ValueError, match="not a readable torch.save file"):
    vgg.load_vgg_weights(str(tmp_path / "w.pth"))
  params = random_weights()
  del params["block3_conv3"]
  write_keras_h5(str(tmp_path / "short.h5"), params)
  with pytest.raises(ValueError, match="block3_conv3 lists weights"):
    vgg.load_vgg_weights(str(tmp_path / "short.h5"))


def test_front_end_gets_no_gradient_in_reseg():
  from renet_jax.nn import models
  model = models.ReSeg(3, units=(4,), patch_sizes=((1, 1),), upsample_filters=(4, 4),
                       upsample_kernels=((2, 2), (2, 2)), vgg=True)
  x = jnp.ones((1, 8, 8, 3))
  params = jax.jit(model.init)(jax.random.key(0), x)["params"]
  grads = jax.jit(jax.grad(lambda p: model.apply({"params": p}, x).sum()))(params)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads["vgg"]))
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads["ReNet_0"]))
