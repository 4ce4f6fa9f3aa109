"""The VGG-16 front end of ReSeg (conv1_1 .. conv3_3, two max-pools: 1/4 resolution) and
its ImageNet weights, imported from the files users have.

  weights = load_vgg_weights("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")  # Keras
  weights = load_vgg_weights("vgg16-397923af.pth")                                 # torchvision
  save_npz("vgg16_conv3.npz", weights); load_vgg_weights("vgg16_conv3.npz")          # 7 MB

`VggWeights.params` is the `VGG16Features` parameter tree; `.preprocessing` says what
input the weights were trained on: "caffe" (Keras: BGR, 0..255, ImageNet means
subtracted) or "torch" (torchvision: RGB, 0..1, standardised). The module takes RGB in
[0, 1] and applies the right one itself, so data pipelines stay the same either way.
Reading .pth files needs no PyTorch: both of torch.save's formats are parsed here.
"""

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from renet_jax import files
from renet_jax.errors import ModelCheckError, WeightsError

# (name, output channels) per conv layer; "pool" is a 2x2 max-pool with stride 2.
LAYERS = (("block1_conv1", 64), ("block1_conv2", 64), "pool",
          ("block2_conv1", 128), ("block2_conv2", 128), "pool",
          ("block3_conv1", 256), ("block3_conv2", 256), ("block3_conv3", 256))
CONVS = tuple(layer[0] for layer in LAYERS if layer != "pool")
STRIDE = 4
# torchvision's `features.N` index of each of those convs (ReLUs and pools in between).
TORCHVISION_INDEX = dict(zip(CONVS, (0, 2, 5, 7, 10, 12, 14)))
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_RGB_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_RGB_STD = np.array([0.229, 0.224, 0.225], np.float32)
PREPROCESSINGS = ("caffe", "torch")
WHERE_TO_GET = (
    "Get the Keras file https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 or the torchvision file "
    "https://download.pytorch.org/models/vgg16-397923af.pth and set model.vgg_weights to "
    "its path (or to an .npz saved from either with renet_jax.nn.vgg.save_npz), or set "
    "model.vgg=False for ReSeg without VGG.")


def preprocess(images: jax.Array, preprocessing: str) -> jax.Array:
  """RGB images in [0, 1] (N, H, W, 3) -> the input the weights were trained on."""
  if preprocessing == "caffe":
    return images[..., ::-1] * 255.0 - CAFFE_BGR_MEAN
  if preprocessing == "torch":
    return (images - TORCH_RGB_MEAN) / TORCH_RGB_STD
  raise ModelCheckError(f"Unknown VGG preprocessing {preprocessing!r}; choose one of "
                        f"{PREPROCESSINGS}.")


class VGG16Features(nn.Module):
  """conv1_1 .. conv3_3 of VGG-16 (3x3 convs padded by 1, ReLU; max-pool after conv1_2 and
  conv2_2): (N, H, W, 1 or 3) RGB in [0, 1] -> (N, H/4, W/4, 256). H and W must be
  multiples of 4. Grey images are repeated to three channels."""
  preprocessing: str = "caffe"
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ModelCheckError(f"VGG16Features expects (N, H, W, 3) RGB images, got {x.shape}.")
    x = preprocess(x.astype(jnp.float32), self.preprocessing)
    for layer in LAYERS:
      if layer == "pool":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      else:
        name, features = layer
        x = nn.relu(nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                            name=name)(x))
    return x


@dataclasses.dataclass
class VggWeights:
  params: dict  # {conv name: {"kernel": (3, 3, in, out) HWIO, "bias": (out,)}}
  preprocessing: str


def load_vgg_weights(path: str) -> VggWeights:
  """Weights from a Keras .h5, a torchvision .pth or an .npz written by `save_npz`."""
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"VGG-16 weights not found at {path!r}. {WHERE_TO_GET}")
  ext = os.path.splitext(path)[1].lower()
  loaders = {".h5": load_keras_h5, ".hdf5": load_keras_h5, ".pth": load_torchvision,
             ".pt": load_torchvision, ".npz": load_npz}
  if ext not in loaders:
    raise WeightsError(f"{path}: unknown VGG weights format {ext!r}; expected one of "
                       f"{sorted(loaders)}. {WHERE_TO_GET}")
  weights = loaders[ext](path)
  _check_shapes(weights.params, path)
  return weights


def load_keras_h5(path: str) -> VggWeights:
  """Keras `save_weights` layout: a group per layer named block{b}_conv{c}, its attribute
  `weight_names` listing the kernel (3, 3, in, out) then the bias. Kernels are already in
  cross-correlation (TensorFlow) form. Keras' VGG-16 expects Caffe preprocessing."""
  import h5py
  params = {}
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise WeightsError(f"{path}: not a readable HDF5 file ({e}). {WHERE_TO_GET}") from e
  with f:
    root = f["model_weights"] if "model_weights" in f else f  # a whole saved model
    for name in CONVS:
      if name not in root:
        raise WeightsError(f"{path}: no layer {name!r} (found {sorted(root)[:12]}); not a "
                           f"Keras VGG-16 weights file. {WHERE_TO_GET}")
      group = root[name]
      names = [n.decode() if isinstance(n, bytes) else str(n)
               for n in group.attrs.get("weight_names", [])]
      if len(names) != 2:
        raise WeightsError(f"{path}: layer {name} lists weights {names}, expected a kernel "
                           "and a bias.")
      params[name] = {"kernel": np.asarray(group[names[0]], np.float32),
                      "bias": np.asarray(group[names[1]], np.float32)}
  return VggWeights(params, "caffe")


def load_torchvision(path: str) -> VggWeights:
  """torchvision's state dict: features.{0,2,5,7,10,12,14}.weight (out, in, 3, 3) and
  .bias. Kernels become (3, 3, in, out); PyTorch's conv is cross-correlation like
  Flax's, so they are not flipped. torchvision's VGG expects its own preprocessing."""
  state = read_torch_state_dict(path)
  params = {}
  for name, index in TORCHVISION_INDEX.items():
    keys = [f"features.{index}.weight", f"features.{index}.bias"]
    missing = [k for k in keys if k not in state]
    if missing:
      raise WeightsError(f"{path}: keys {missing} are missing (found {list(state)[:8]}...); "
                         f"not a torchvision VGG-16 state dict. {WHERE_TO_GET}")
    params[name] = {"kernel": np.transpose(state[keys[0]], (2, 3, 1, 0)).astype(np.float32),
                    "bias": state[keys[1]].astype(np.float32)}
  return VggWeights(params, "torch")


def save_npz(path: str, weights: VggWeights):
  if not path.endswith(".npz"):
    raise WeightsError(f"{path}: name it *.npz, the extension `load_vgg_weights` reads.")
  arrays = {f"{name}/{k}": v for name, p in weights.params.items() for k, v in p.items()}
  files.write_atomic(path, lambda tmp: np.savez(
      tmp, preprocessing=np.array(weights.preprocessing), **arrays))


def load_npz(path: str) -> VggWeights:
  try:
    f = np.load(path)
  except (OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
    raise WeightsError(f"{path}: not a readable .npz file ({type(e).__name__}: {e}); write "
                       "it with renet_jax.nn.vgg.save_npz.") from e
  with f:
    params = collections.defaultdict(dict)
    for key in f.files:
      if "/" in key:
        name, k = key.split("/")
        params[name][k] = f[key]
    if "preprocessing" not in f.files:
      raise WeightsError(f"{path}: no 'preprocessing' entry; write it with "
                         "renet_jax.nn.vgg.save_npz.")
    return VggWeights(dict(params), str(f["preprocessing"]))


def _check_shapes(params: dict, path: str):
  channels = 3
  for layer in LAYERS:
    if layer == "pool":
      continue
    name, features = layer
    if name not in params:
      raise WeightsError(f"{path}: layer {name} is missing. {WHERE_TO_GET}")
    got = (tuple(params[name]["kernel"].shape), tuple(params[name]["bias"].shape))
    if got != ((3, 3, channels, features), (features,)):
      raise WeightsError(f"{path}: {name} has kernel/bias shapes {got}, expected "
                         f"{((3, 3, channels, features), (features,))}.")
    channels = features


# --- torch.save files without PyTorch ------------------------------------------------

_TORCH_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                 "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
                 "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                 "BoolStorage": np.bool_}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """{name: array} from a state dict written by torch.save, in the zip format (PyTorch
  >= 1.6) or the legacy pickle-stream format (older files, vgg16-397923af.pth)."""
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
        prefix = pkl[:-len("data.pkl")]
        storages = {}

        def storage(key, dtype):
          if key not in storages:
            storages[key] = np.frombuffer(z.read(f"{prefix}data/{key}"), dtype)
          return storages[key]

        state = _TorchUnpickler(io.BytesIO(z.read(pkl)), storage).load()
    else:
      with open(path, "rb") as f:
        state = _read_legacy(f)
  except (pickle.UnpicklingError, EOFError, KeyError, StopIteration, struct.error) as e:
    raise WeightsError(f"{path}: not a readable torch.save file ({type(e).__name__}: {e}). "
                       f"{WHERE_TO_GET}") from e
  if not isinstance(state, dict):
    raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict.")
  return {k: np.asarray(v) for k, v in state.items()}


def _read_legacy(f) -> dict:
  if pickle.load(f) != _LEGACY_MAGIC:
    raise pickle.UnpicklingError("bad magic number")
  pickle.load(f)  # protocol version
  pickle.load(f)  # system info (little-endian assumed, as torch writes on x86/ARM)
  pending = {}  # key -> (dtype, list of views waiting for the bytes)
  storages = {}

  def storage(key, dtype):
    pending.setdefault(key, dtype)
    return _LazyStorage(storages, key)

  state = _TorchUnpickler(f, storage).load()
  for key in pickle.load(f):
    (numel,) = struct.unpack("<q", f.read(8))
    dtype = np.dtype(pending[key])
    storages[key] = np.frombuffer(f.read(numel * dtype.itemsize), dtype)
  return {k: v.materialize() if isinstance(v, _LazyTensor) else v for k, v in state.items()}


class _LazyStorage:
  """A legacy-format storage whose bytes come after the pickle that references it."""

  def __init__(self, storages, key):
    self.storages, self.key = storages, key


class _LazyTensor:
  def __init__(self, storage, offset, size, stride):
    self.args = storage, offset, size, stride

  def materialize(self):
    storage, offset, size, stride = self.args
    return _view(storage.storages[storage.key], offset, size, stride)


def _view(flat: np.ndarray, offset: int, size, stride) -> np.ndarray:
  item = flat.itemsize
  return np.lib.stride_tricks.as_strided(flat[offset:], tuple(size),
                                         tuple(s * item for s in stride)).copy()


def _rebuild_tensor(storage, offset, size, stride, *unused):
  if isinstance(storage, _LazyStorage):
    return _LazyTensor(storage, offset, size, stride)
  return _view(storage, offset, size, stride)


class _TorchUnpickler(pickle.Unpickler):
  """Maps the few torch classes a state dict pickle names to numpy; anything else (code
  objects a malicious file might name) is refused."""

  def __init__(self, file, storage_fn):
    super().__init__(file)
    self.storage_fn = storage_fn

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return lambda data, requires_grad, hooks, *unused: data
    if module == "torch" and name in _TORCH_DTYPES:
      return _TORCH_DTYPES[name]
    raise pickle.UnpicklingError(f"unsupported object {module}.{name} in a state dict")

  def persistent_load(self, pid):
    # ("storage", storage class, key, location, numel[, view metadata])
    if pid[0] != "storage":
      raise pickle.UnpicklingError(f"unsupported persistent id {pid[0]!r}")
    return self.storage_fn(str(pid[2]), pid[1])
