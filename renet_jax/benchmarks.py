"""Timers of the library's pieces, shared by the benchmark entry points
(`experiments.bench`, `experiments.gpu_check`): one ReNet layer (ours, and the same layer
written the PyTorch way), a conv-RNN layer, a whole training step, the matmul peak, the
input pipeline's reading; the layer shapes of the thesis's models."""

import functools
import os
import resource
import statistics
import tempfile
import time

import grain
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from renet_jax import parallel
from renet_jax.data import pipeline
from renet_jax.kernels import linear_scan, recurrence
from renet_jax.nn import cells, vgg
from renet_jax.nn.cells import cell_factory
from renet_jax.nn.renet import ReNetLayer
from renet_jax.training import optim, tasks, train

# One ReNet layer of each thesis model, (N, H, W, C, patch, units): MNIST and CIFAR-10
# layer 1 at batch 64 (and 512), CamVid's ReSeg layer on VGG features at batch 5 (20).
SHAPES = {
    "mnist": (64, 28, 28, 1, (2, 2), 256),        # MNIST ReNet layer 1
    "mnist_l2": (64, 14, 14, 512, (2, 2), 256),   # MNIST ReNet layer 2 (on layer 1's 2x256)
    "cifar10": (64, 32, 32, 3, (2, 2), 320),      # CIFAR-10 ReNet layer 1
    "horse": (5, 32, 32, 256, (1, 1), 100),       # Weizmann Horse ReSeg layer 1 (VGG, 128x128)
    "camvid": (5, 90, 120, 256, (2, 2), 100),
    "mnist_n512": (512, 28, 28, 1, (2, 2), 256),
    "camvid_n20": (20, 90, 120, 256, (2, 2), 100),
}
GPU_SHAPES = ["mnist", "cifar10", "mnist_n512", "camvid", "camvid_n20"]
# Conv-RNN clips (N, T, H, W, C, units): one encoder layer (stride 2, a hidden 3x3
# convolution in each transition) of the video model; images/s counts frames.
CLIP_SHAPES = {
    "moving_digits_clip": (8, 10, 32, 32, 3, 16),
    "camvid_clip": (2, 5, 90, 120, 64, 64),  # CamVid VGG features, 5-frame clips
}


def layer_flops(n, h, w, c, patch, units, cell) -> float:
  """Forward matmul FLOPs of one ReNet layer (4 RNNs of `cell`); the parallel cells have
  no recurrent product (their elementwise scan is not counted)."""
  gates = cells.num_gates(cell)
  recurrent = 0 if cell in cells.PARALLEL_CELLS else units
  positions = n * (h // patch[0]) * (w // patch[1])
  per_rnn = lambda f: 2 * positions * (f + recurrent) * gates * units
  return 2 * per_rnn(patch[0] * patch[1] * c) + 2 * per_rnn(2 * units)


def time_fn(fn, *args, repeats, warmup):
  """Median seconds of `fn(*args)` over `repeats` runs, after compile and warm-up."""
  jax.block_until_ready(fn(*args))
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_peak(size, repeats) -> float:
  """Measured fp32 GFLOP/s of one size^3 matrix product."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  seconds = time_fn(jax.jit(jnp.matmul), a, b, repeats=repeats, warmup=1)
  return 2 * size**3 / seconds / 1e9


def bench_layer(shape, cell, impl, directions, dtype, repeats, warmup,
                reset_after=False, precision="float32") -> dict:
  """Forward and forward+backward of one ReNet layer: seconds, images/s, GFLOP/s, the
  compiled forward+backward's memory (arguments, outputs and temporaries), the seconds
  spent compiling both (forward_backward's "compile_s"), and for impl="auto" what it
  runs for each sweep on this platform."""
  n, h, w, c, patch, units = shape
  options = {"reset_after": True} if reset_after else {}
  layer = ReNetLayer(units, patch, cell=cell_factory(cell, impl=impl, dtype=dtype,
                                                     precision=precision, **options),
                     directions=directions)
  x = jax.random.normal(jax.random.key(0), (n, h, w, c), dtype)
  params = jax.jit(layer.init)(jax.random.key(1), x)
  platform = recurrence.lowering_platform()
  if cell in cells.PARALLEL_CELLS:  # the two sweeps' lengths: rows, then columns
    chosen = sorted({linear_scan.auto_impl(platform, length)
                     for length in (h // patch[0], w // patch[1])})
  else:
    chosen = sorted({r["impl"][platform]
                     for r in recurrence.auto_choices(layer.apply, params, x)})
  cotangent = jax.random.normal(jax.random.key(2), jax.eval_shape(layer.apply, params, x).shape,
                                dtype)

  loss = lambda p, x: jnp.sum(layer.apply(p, x).astype(jnp.float32) * cotangent)
  # Compiled ahead of time once: timed, and its memory read from the same executable.
  start = time.perf_counter()
  forward = jax.jit(layer.apply).lower(params, x).compile()
  forward_backward = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile()
  compile_s = time.perf_counter() - start

  flops = layer_flops(n, h, w, c, patch, units, cell)
  result = {}
  for name, fn, fl in (("forward", forward, flops),
                       ("forward_backward", forward_backward, 3 * flops)):
    start = time.perf_counter()
    seconds = time_fn(fn, params, x, repeats=repeats, warmup=warmup)
    result[name] = {"seconds": seconds, "images_per_s": n / seconds, "gflop": fl / 1e9,
                    "gflop_per_s": fl / seconds / 1e9,
                    "wall_incl_compile_s": time.perf_counter() - start}
  memory = forward_backward.memory_analysis()
  if memory is not None:
    result["forward_backward"]["peak_bytes"] = int(
        memory.argument_size_in_bytes + memory.output_size_in_bytes
        + memory.temp_size_in_bytes)
  for r in result.values():
    r["runs"] = "+".join(chosen) if impl == "auto" else impl
  result["forward_backward"]["compile_s"] = compile_s  # both programs
  return result


def recurrent_product_rate(shape, cell, repeats, warmup) -> dict:
  """The ceiling of a sweep's sequential part at this layer shape: a scan of only the
  recurrent products h <- tanh(h @ W) (W: U x G*U, the state kept to U columns), with
  each sweep's line batch (vertical: N*J lines of I steps; horizontal: N*I of J), in
  GFLOP/s and as the seconds of both sweeps' forward products. A layer cannot run its
  recurrence faster than this, however its elementwise work and layouts are arranged."""
  n, h, w, c, patch, units = shape
  grid_i, grid_j = h // patch[0], w // patch[1]
  gates = cells.num_gates(cell)
  kernel = jax.random.normal(jax.random.key(0), (units, gates * units)) / units**0.5
  result = {}
  for axis, lines, length in (("vertical", n * grid_j, grid_i),
                              ("horizontal", n * grid_i, grid_j)):

    @jax.jit
    def products(h0, length=length):
      def step(h, _):
        h = jnp.tanh((h @ kernel)[:, :units])
        return h, ()
      return lax.scan(step, h0, None, length=length)[0]

    h0 = jax.random.normal(jax.random.key(1), (lines, units))
    seconds = time_fn(products, h0, repeats=repeats, warmup=warmup)
    flops = 2 * lines * units * gates * units * length
    result[axis] = {"lines": lines, "steps": length, "seconds": seconds,
                    "gflop_per_s": flops / seconds / 1e9}
  return result


def bench_clip(shape, cell, repeats, warmup) -> dict:
  """Forward and forward+backward of one conv-RNN encoder layer on a clip batch."""
  from renet_jax.nn.conv_rnn import ConvRNN
  n, t, h, w, c, units = shape
  layer = ConvRNN(units, kind=cell, stride=2, input_convs=((units, 3),),
                  state_convs=((units, 3),))
  xs = jax.random.normal(jax.random.key(0), (t, n, h, w, c))
  params = jax.jit(layer.init)(jax.random.key(1), xs)
  loss = lambda p, x: jnp.sum(layer.apply(p, x) ** 2)
  result = {}
  for name, fn in (("forward", jax.jit(layer.apply)),
                   ("forward_backward", jax.jit(jax.grad(loss, argnums=(0, 1))))):
    seconds = time_fn(fn, params, xs, repeats=repeats, warmup=warmup)
    result[name] = {"seconds": seconds, "images_per_s": n * t / seconds}
  return result


def bench_torch_layer(shape, cell, dtype, repeats, warmup, allow_tf32=True) -> dict:
  """The same layer written the PyTorch way: patches, a bidirectional nn.GRU (nn.LSTM,
  nn.RNN) down the columns, another along the rows (cuDNN on a GPU, whose GRU is the
  reset-after form); `allow_tf32` as cuDNN's default (True). Peak memory from torch's
  CUDA allocator (None on CPU)."""
  import torch
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.backends.cuda.matmul.allow_tf32 = allow_tf32
  torch.backends.cudnn.allow_tf32 = allow_tf32
  tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[str(jnp.dtype(dtype))]
  n, h, w, c, (ph, pw), units = shape
  rnn = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}[cell]
  vertical = rnn(ph * pw * c, units, bidirectional=True).to(device, tdtype)
  horizontal = rnn(2 * units, units, bidirectional=True).to(device, tdtype)
  i, j = h // ph, w // pw

  def layer(x):  # (N, H, W, C) -> (N, I, J, 2U)
    x = x.reshape(n, i, ph, j, pw, c).permute(0, 1, 3, 2, 4, 5).reshape(n, i, j, -1)
    cols = vertical(x.permute(1, 0, 2, 3).reshape(i, n * j, -1))[0]  # time = rows
    x = cols.reshape(i, n, j, -1).permute(2, 1, 0, 3)                # (J, N, I, 2U)
    rows = horizontal(x.reshape(j, n * i, -1))[0]                     # time = columns
    return rows.reshape(j, n, i, -1).permute(1, 2, 0, 3)

  x = torch.randn(n, h, w, c, device=device, dtype=tdtype, requires_grad=True)
  cotangent = torch.randn(n, i, j, 2 * units, device=device, dtype=tdtype)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def forward():
    with torch.no_grad():
      layer(x)

  def forward_backward():
    torch.autograd.grad((layer(x) * cotangent).sum(),
                        [x, *vertical.parameters(), *horizontal.parameters()])

  result = {}
  for name, fn in (("forward", forward), ("forward_backward", forward_backward)):
    for _ in range(1 + warmup):
      fn()
    sync()
    if device == "cuda":
      torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      fn()
      sync()
      times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    result[name] = {"seconds": seconds, "images_per_s": n / seconds,
                    "peak_bytes": torch.cuda.max_memory_allocated() if device == "cuda"
                    else None}
  return result


def bench_training_step(config, repeats: int, warmup: int) -> dict:
  """Seconds per training step of `config` on one synthetic batch kept on the devices
  (median over three runs of `repeats` consecutive steps)."""
  run, info = training_step_timer(config, warmup)
  seconds = statistics.median(run(repeats) for _ in range(3))
  return {**info, "seconds_per_step": seconds,
          "images_per_s": info["images_per_step"] / seconds}


def training_step_timer(config, warmup: int):
  """(run(n) -> seconds per step of n steps back to back, info) for `config`'s
  training step on one synthetic batch kept on the devices, compiled and warmed up;
  info has the seconds spent preparing the data ("prepare_s") and compiling with the
  warm-up steps ("compile_s")."""
  task_cls = tasks.task_class(config.data.name)
  if config.model.get(config.model.name, {}).get("vgg") and not config.model.vgg_weights:
    config.model.vgg_weights = random_vgg_weights()
  start = time.perf_counter()
  task = task_cls(config)  # prepares the dataset (and a feature cache) where needed
  prepare_s = time.perf_counter() - start
  model = task.model()
  batch_size = config.train.batch_size
  tx = optim.make_optimizer(config.optimizer, 100, 10_000, batch_size=batch_size,
                            frozen=task.frozen)
  steps = train.Steps(model, tx, task, parallel.make_mesh())
  state = jax.device_put(train.initial_state(config.seed, model, tx, task), steps.replicated)
  example = task.transform(task.sources["train"][0])
  rng = np.random.default_rng(0)
  host_batch = {k: np.stack([np.asarray(example[k])] * batch_size) for k in example}
  if "image" in host_batch:  # (cached front-end features stay the example's own)
    host_batch["image"] = rng.integers(0, 256, host_batch["image"].shape).astype(np.uint8)
  batch = jax.device_put(host_batch, steps.split)
  sums = steps.train_sums(state, batch)

  def run(n):  # n steps back to back, one wait at the end: as the training loop runs
    nonlocal state, sums
    start = time.perf_counter()
    for _ in range(n):
      state, sums = steps.train(state, sums, batch)
    jax.block_until_ready(sums)
    return (time.perf_counter() - start) / n

  start = time.perf_counter()
  run(1 + warmup)  # compile and warm up
  return run, {"config": config.data.name, "model": config.model.name,
               "batch_size": batch_size, "features_cached": task.cached,
               "images_per_step": batch_size * task.images_per_example,
               "prepare_s": prepare_s, "compile_s": time.perf_counter() - start}



def random_vgg_weights() -> str:
  shapes = jax.eval_shape(vgg.VGG16Features().init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))["params"]
  params = jax.tree.map(lambda s: np.random.default_rng(0).normal(0, 0.01, s.shape)
                        .astype(np.float32), shapes)
  path = os.path.join(tempfile.mkdtemp(), "random_vgg16.npz")
  vgg.save_npz(path, vgg.VggWeights(params, "caffe"))
  print(f"timing only: random VGG-16 weights ({path})")
  return path


def _cpu_s() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def bench_input_pipeline(steps: int = 74, runs: int = 3, step_s: float = 0.01,
                         num_examples: int = 1000, batch_size: int = 32) -> list[dict]:
  """The CPU a training iterator's reading costs: `runs` iterators of `steps` batches,
  each batch taken `step_s` after the last (a device step), for index batches
  (`pipeline.index_batches`, on-device data) and host batches (`pipeline.batches`, a
  64x64x3 float32 image halved), each with our read options and with grain's defaults
  (16 threads, 500 batches ahead); then batches/s read without pause. Rows: path,
  options, cpu_s (process, user + system), wall_s, batches_per_s."""
  source = [{"image": np.random.default_rng(i).random((64, 64, 3), np.float32),
             "label": np.int32(i % 10)} for i in range(num_examples)]
  halve = lambda ex: {"image": ex["image"][::2, ::2] * 2, "label": ex["label"]}
  kw = dict(batch_size=batch_size, seed=0, train=True)
  makers = {}
  for options, read_options in (("ours", None), ("grain default", grain.ReadOptions())):
    makers["index", options] = functools.partial(
        pipeline.index_batches, num_examples, read_options=read_options, **kw)
    makers["host", options] = functools.partial(
        pipeline.batches, source, transform=halve, read_options=read_options, **kw)
  rows = []
  for (path, options), make in makers.items():
    cpu, wall = _cpu_s(), time.perf_counter()
    for _ in range(runs):
      it = iter(make())
      for _ in range(steps):
        next(it)
        time.sleep(step_s)
      del it
    cpu, wall = _cpu_s() - cpu, time.perf_counter() - wall
    it, start = iter(make()), time.perf_counter()
    for _ in range(steps):
      next(it)
    rows.append({"path": path, "options": options, "cpu_s": cpu, "wall_s": wall,
                 "batches_per_s": steps / (time.perf_counter() - start)})
    del it
  return rows
