r"""Benchmarks: one ReNet layer at the papers' shapes (images/s, GFLOP/s, % of matmul
peak), the whole training step of an experiment config alone, or the CPU that reading
training batches costs.

  python -m experiments.bench                       # all three shapes, default variant
  python -m experiments.bench --shapes=mnist --repeats=3
  python -m experiments.bench --impls=custom_vjp,autodiff --directions=separate,stacked
  # The parallel cells beside the GRU (each cell runs the --impls it has, else auto):
  python -m experiments.bench --cells=gru,mingru,minlstm --impls=auto,associative,sequential
  python -m experiments.bench --input_pipeline   # the CPU reading batches costs
  python -m experiments.bench --model=experiments/configs/mnist.py:quick \
      --model.data.manual_dir=~/data/mnist [--model.train.batch_size=512]
  # On a GPU: the five layer shapes against PyTorch/cuDNN, both GRU forms, bf16:
  python -m experiments.bench --shapes=mnist,cifar10,mnist_n512,camvid,camvid_n20 \
      --impls=auto,custom_vjp,pallas --directions=separate,stacked --compare=torch \
      [--reset_after] [--dtype=bfloat16]

--compare=torch times the same layer written the PyTorch way (patches, a bidirectional
nn.GRU/LSTM/RNN over the columns, another over the rows; cuDNN on a GPU, TF32 allowed),
in the same process, alternating --rounds rounds with ours, and prints our speed as a
ratio of PyTorch's; peak device memory of forward+backward is reported for both sides
(ours: XLA's compiled memory analysis; PyTorch: CUDA's peak allocation).

With --model, the jitted training step of that config (the model, optimiser, on-device
preprocessing and augmentation that `experiments.classify`/`segment` run) is timed on
one synthetic batch kept on the devices: the step-alone rate that a training run's
steady-state images/s (results.json `train_images_per_s`; frames for video) should
approach. The task is built as in training (its dataset must be prepared: shapes and
statistics come from it); a VGG front end without --model.model.vgg_weights gets
random weights.

For every shape and variant it times the forward pass and forward+backward (gradients
with respect to the parameters and the input), median of --repeats runs after warm-up,
counts the matrix-product FLOPs analytically (forward: the input projections and the
recurrent products of the four RNNs, the parallel cells having no recurrent product and
their elementwise scans not counted; forward+backward: three times that, one product
for the output and two for the gradients), and compares the achieved rate with the
machine's fp32 matmul peak measured in the same run (a --peak_size^3 product).
Under each shape it also times the recurrent products alone (`recurrent_product_rate`: a
scan of h <- tanh(h @ W) with the layer's line batch), the ceiling of the sweep's
sequential part. Prints a table and rewrites the JSON at --json_out after every row; a
row that fails (say a kernel that does not compile) is an error row and the others go
on. The `runs` column says what impl="auto" ran on this platform for the layer's sweeps.
"""

import copy
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from typing import Sequence

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags

from renet_jax import cli, files, host
from renet_jax.benchmarks import (CLIP_SHAPES, GPU_SHAPES, SHAPES, bench_clip,
                                  bench_input_pipeline, bench_layer, bench_torch_layer,
                                  bench_training_step, matmul_peak, recurrent_product_rate,
                                  training_step_timer)
from renet_jax.kernels import recurrence
from renet_jax.nn import cells, renet

# name: (N, H, W, C, patch, units): MNIST and CIFAR-10 layer 1, ReSeg on CamVid VGG
# conv3_3 features, and the larger batches of the GPU comparisons.
_SHAPES = flags.DEFINE_list("shapes", ["mnist", "cifar10", "camvid"],
                            f"Shapes to run, of {list(SHAPES)} (on a GPU: {GPU_SHAPES}), "
                            f"or conv-RNN clips {list(CLIP_SHAPES)}.")
_CELLS = flags.DEFINE_list(
    "cells", ["gru"], "Recurrent cells, timed side by side (mingru, minlstm: the parallel "
    "cells; each runs the --impls it has, else auto).")
_RESET_AFTER = flags.DEFINE_bool("reset_after", False,
                                 "GRU in the cuDNN/PyTorch form (reset after the product).")
_IMPLS = flags.DEFINE_list("impls", ["auto"],
                           "Recurrence implementations to time: auto, custom_vjp, autodiff, "
                           "pallas.")
_COMPARE = flags.DEFINE_enum("compare", "none", ["none", "torch"],
                             "Also time a PyTorch ReNet layer built from nn.GRU/LSTM/RNN "
                             "(cuDNN on a GPU) at the same shapes, in alternating rounds.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds with --compare (median).")
_DIRECTIONS = flags.DEFINE_list("directions", ["separate"],
                                "Direction layouts to time: separate, stacked.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_PRECISION = flags.DEFINE_enum("precision", "float32", list(recurrence.PRECISIONS),
                               "float32 recurrence products: float32, tf32 (PyTorch's "
                               "side then allows TF32 too), tf32x3 (Pallas: 3 TF32 passes).")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed runs per measurement (median).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed runs after compilation.")
_PEAK_SIZE = flags.DEFINE_integer("peak_size", 4096, "Matrix size of the peak probe.")
_JSON_OUT = flags.DEFINE_string("json_out", "bench.json", "Where to write the results.")
_MODEL = config_flags.DEFINE_config_file(
    "model", None, "An experiment config: time its whole training step instead.")
_AB = flags.DEFINE_string(
    "ab", "", "With --model: FIELD=A,B[,...] times the training step with the config field "
    "set to each value, in alternating --rounds rounds in one process (e.g. "
    "data.cache_features=false,true).")
_AB_XLA_FLAGS = flags.DEFINE_multi_string(
    "ab_xla_flags", [], "With --model: time the training step under each of these "
    "XLA_FLAGS values (repeat the option; '' for none), each round in a fresh process, "
    "--rounds alternating rounds (e.g. --ab_xla_flags= "
    "--ab_xla_flags=--xla_cpu_use_onednn=true).")
_INPUT_PIPELINE = flags.DEFINE_bool(
    "input_pipeline", False, "Instead: the CPU that reading training batches costs, with "
    "our read options and grain's defaults (renet_jax.benchmarks.bench_input_pipeline).")
_KEEP_FREED_MEMORY = flags.DEFINE_bool(
    "keep_freed_memory", True, "Let malloc reuse freed host memory (renet_jax.host).")


def ab_variants(config, spec: str) -> tuple[str, list[tuple[str, object]]]:
  """--ab=FIELD=A,B -> (FIELD, [(text, copy of config with FIELD set to it), ...]);
  UsageError naming the problem when the spec, the field or a value does not fit."""
  field, _, values = spec.partition("=")
  texts = [v for v in values.split(",") if v]
  if not field or len(texts) < 2:
    raise app.UsageError(f"--ab={spec!r} must be FIELD=A,B[,...] (two values at least), "
                         "e.g. --ab=model.dtype=float32,bfloat16")
  variants = []
  for text in texts:
    c = copy.deepcopy(config)
    *parents, leaf = field.split(".")
    try:
      block = functools.reduce(lambda d, k: d[k], parents, c)
      old = block[leaf]
    except (KeyError, AttributeError, TypeError) as e:
      raise app.UsageError(f"--ab: the config has no field {field!r} ({e})") from None
    if isinstance(old, ml_collections.ConfigDict):
      raise app.UsageError(f"--ab: {field!r} is a block of fields; name one of its fields")
    try:
      block[leaf] = (text.lower() in ("1", "true", "yes")) if isinstance(old, bool) \
          else type(old)(text)
    except (TypeError, ValueError) as e:
      raise app.UsageError(f"--ab: {text!r} is not a value of {field} (a "
                           f"{type(old).__name__}: {e})") from None
    variants.append((text, c))
  return field, variants


def bench_ab(config, spec: str, rounds: int, repeats: int, warmup: int) -> list[dict]:
  """The training step of `config` with the --ab field set to each of its values, timed
  in alternating rounds in this one process (median seconds per step over the rounds)."""
  field, variants = ab_variants(config, spec)
  timers = []
  for text, c in variants:
    timers.append((text,) + training_step_timer(c, warmup))
  times = {text: [] for text, _, _ in timers}
  for _ in range(rounds):
    for text, run, _ in timers:
      times[text].append(run(repeats))
  return [{**info, "field": field, "value": text,
           "seconds_per_step": statistics.median(times[text]),
           "images_per_s": info["images_per_step"] / statistics.median(times[text])}
          for text, _, info in timers]


def bench_xla_flags(argv: Sequence[str], xla_flags: Sequence[str], rounds: int) -> list[dict]:
  """The training step that `argv` (this command line) times, under each XLA_FLAGS value
  in turn, one fresh process per value and round (XLA reads its flags once per process),
  in alternating rounds; median seconds per step over the rounds."""
  own = ("--ab_xla_flags", "--json_out", "--rounds")
  args = [a for a in argv[1:] if not a.startswith(own)]
  times = {value: [] for value in xla_flags}
  info = {}
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "step.json")
    for _ in range(rounds):
      for value in xla_flags:
        env = dict(os.environ, XLA_FLAGS=value)
        subprocess.run([sys.executable, "-m", "experiments.bench", *args,
                        f"--json_out={out}"], env=env, check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
          info[value] = json.load(f)["training_step"]
        times[value].append(info[value]["seconds_per_step"])
  return [{**info[v], "xla_flags": v, "rounds": times[v],
           "seconds_per_step": statistics.median(times[v]),
           "images_per_s": info[v]["images_per_step"] / statistics.median(times[v])}
          for v in xla_flags]


def _write_model_json(key: str, value):
  with open(_JSON_OUT.value, "w") as f:
    json.dump({"device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
               key: value}, f, indent=1)


def cell_impls(cell: str) -> list[str]:
  """The --impls that `cell` has (Pallas last: a kernel that fails to compile must not
  cost the other rows), else ["auto"]."""
  impls = [i for i in _IMPLS.value if i in cells.cell_impls(cell)] or ["auto"]
  return sorted(impls, key=lambda i: i == "pallas")


def torch_cell(cell: str) -> str:
  """The PyTorch layer `cell` is compared with: its own, nn.GRU for the parallel cells."""
  return "gru" if cell in cells.PARALLEL_CELLS else cell


def main(argv):
  del argv
  if _INPUT_PIPELINE.value:
    steps, runs = 74, 3
    for r in bench_input_pipeline(steps, runs):
      print(f"{r['path']:5s} batches, {r['options']:13s}: {r['cpu_s']:.2f} CPU-s for {runs} "
            f"iterators of {steps} steps ({r['wall_s']:.1f} s); {r['batches_per_s']:.0f} "
            "batches/s read without pause")
    return
  if _MODEL.value is not None:
    if _AB.value:
      ab_variants(_MODEL.value, _AB.value)  # a bad spec fails before any device starts
    if jax.default_backend() == "cpu" and _KEEP_FREED_MEMORY.value:
      host.keep_freed_memory()
    if _AB_XLA_FLAGS.value:
      rows = bench_xla_flags(sys.argv, _AB_XLA_FLAGS.value, _ROUNDS.value)
      for r in rows:
        print(f"XLA_FLAGS={r['xla_flags']!r}: {1e3 * r['seconds_per_step']:.1f} ms per step "
              f"(rounds: {', '.join(f'{1e3 * t:.0f}' for t in r['rounds'])}), "
              f"{rows[0]['seconds_per_step'] / r['seconds_per_step']:.2f}x the first")
      _write_model_json("ab_xla_flags", rows)
      return
    if _AB.value:
      rows = bench_ab(_MODEL.value, _AB.value, _ROUNDS.value, _REPEATS.value, _WARMUP.value)
      for r in rows:
        print(f"{r['field']}={r['value']}: {1e3 * r['seconds_per_step']:.1f} ms per step, "
              f"{r['images_per_s']:.2f} images/s, "
              f"{rows[0]['seconds_per_step'] / r['seconds_per_step']:.2f}x the first")
      _write_model_json("ab", rows)
      return
    r = bench_training_step(_MODEL.value, _REPEATS.value, _WARMUP.value)
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; training step of "
          f"{r['config']}/{r['model']}"
          f"{' (cached front-end features)' if r['features_cached'] else ''}, batch "
          f"{r['batch_size']}: "
          f"{1e3 * r['seconds_per_step']:.1f} ms, {r['images_per_s']:.1f} images/s")
    _write_model_json("training_step", r)
    return
  unknown = set(_SHAPES.value) - set(SHAPES) - set(CLIP_SHAPES)
  if unknown:
    raise app.UsageError(f"Unknown shapes {sorted(unknown)}; choose from "
                         f"{list(SHAPES) + list(CLIP_SHAPES)}.")
  known_impls = sorted({i for cell in cells.cell_names() for i in cells.cell_impls(cell)})
  for flag, given, known in (("cells", _CELLS.value, cells.cell_names()),
                             ("impls", _IMPLS.value, known_impls),
                             ("directions", _DIRECTIONS.value, renet.DIRECTIONS)):
    if set(given) - set(known):
      raise app.UsageError(f"--{flag}: unknown {sorted(set(given) - set(known))}; choose "
                           f"from {list(known)}")
  dtype = jnp.dtype(_DTYPE.value)
  kept = _KEEP_FREED_MEMORY.value and host.keep_freed_memory()
  device = jax.devices()[0]
  peak = matmul_peak(_PEAK_SIZE.value, max(3, _REPEATS.value // 2))
  print(f"device: {device.device_kind} x{jax.device_count()} ({jax.default_backend()}), "
        f"jax {jax.__version__}; fp32 matmul peak {peak:.1f} GFLOP/s "
        f"({_PEAK_SIZE.value}^3); malloc keeps freed memory: {kept}")
  rows = []
  report = {"device_kind": device.device_kind, "backend": jax.default_backend(),
            "device_count": jax.device_count(), "jax": jax.__version__,
            "host": platform.node(), "cells": _CELLS.value, "dtype": _DTYPE.value,
            "precision": _PRECISION.value, "reset_after": _RESET_AFTER.value,
            "compare": _COMPARE.value, "repeats": _REPEATS.value,
            "matmul_peak_gflop_per_s": peak, "keep_freed_memory": kept,
            "shapes": {k: {**SHAPES, **CLIP_SHAPES}[k] for k in _SHAPES.value}, "results": rows}

  def save():  # after every row: a failure later loses nothing measured
    files.write_json(_JSON_OUT.value, report)

  header = (f"{'shape':10} {'cell':7} {'impl':11} {'runs':11} {'dirs':8} {'pass':16} {'img/s':>9} "
            f"{'GFLOP':>7} {'GFLOP/s':>8} {'%peak':>6} {'ms':>8} {'MB':>7}")
  print(header)

  def failed(shape_name, cell, impl, directions, error):
    rows.append({"shape": shape_name, "cell": cell, "impl": impl, "directions": directions,
                 "error": error})
    print(f"{shape_name:10} {cell:7} {impl:11} {'-':11} {directions:8} error: {error}",
          flush=True)
    save()

  def show(shape_name, cell, impl, directions, pass_name, r):
    rows.append({"shape": shape_name, "cell": cell, "impl": impl, "directions": directions,
                 "pass": pass_name, **r})
    save()
    mb = f"{r['peak_bytes'] / 2**20:7.1f}" if r.get("peak_bytes") else f"{'-':>7}"
    gflop = (f"{r['gflop']:7.2f} {r['gflop_per_s']:8.1f} {100 * r['fraction_of_peak']:5.1f}%"
             if "gflop" in r else f"{'-':>7} {'-':>8} {'-':>6}")
    print(f"{shape_name:10} {cell:7} {impl:11} {r.get('runs', impl):11} {directions:8} "
          f"{pass_name:16} {r['images_per_s']:9.1f} {gflop} {1e3 * r['seconds']:8.2f} {mb}",
          flush=True)

  rounds = _ROUNDS.value if _COMPARE.value == "torch" else 1
  for shape_name in _SHAPES.value:
    if shape_name in CLIP_SHAPES:
      for cell in _CELLS.value:
        for pass_name, r in bench_clip(CLIP_SHAPES[shape_name], cell, _REPEATS.value,
                                       _WARMUP.value).items():
          show(shape_name, cell, "conv_rnn", "-", pass_name, r)
      continue
    measured, errors = {}, {}
    variants = [(cell, i, d) for cell in _CELLS.value for i in cell_impls(cell)
                for d in _DIRECTIONS.value]
    if _COMPARE.value == "torch":  # nn.GRU/LSTM/RNN; the GRU beside the parallel cells
      variants += sorted({(torch_cell(cell), "torch", "cudnn") for cell in _CELLS.value})
    for _ in range(rounds):  # alternating rounds: ours, then PyTorch's
      for cell, impl, directions in variants:
        if (cell, impl, directions) in errors:
          continue
        try:
          if impl == "torch":
            res = bench_torch_layer(SHAPES[shape_name], cell, dtype, _REPEATS.value,
                                    _WARMUP.value, allow_tf32=_PRECISION.value == "tf32")
          else:
            res = bench_layer(SHAPES[shape_name], cell, impl, directions, dtype,
                              _REPEATS.value, _WARMUP.value, _RESET_AFTER.value,
                              _PRECISION.value)
        except Exception as e:  # pylint: disable=broad-except
          errors[cell, impl, directions] = f"{type(e).__name__}: {str(e).strip()[:500]}"
          failed(shape_name, cell, impl, directions, errors[cell, impl, directions])
          continue
        measured.setdefault((cell, impl, directions), []).append(res)
    for (cell, impl, directions), results in measured.items():
      for pass_name in results[0]:
        r = dict(min(results, key=lambda res: res[pass_name]["seconds"])[pass_name])
        r["seconds"] = statistics.median(res[pass_name]["seconds"] for res in results)
        r["images_per_s"] = SHAPES[shape_name][0] / r["seconds"]
        if "gflop" in r:
          r["gflop_per_s"] = r["gflop"] / r["seconds"]
          r["fraction_of_peak"] = r["gflop_per_s"] / peak
        show(shape_name, cell, impl, directions, pass_name, r)
    for cell in sorted({c for c, _, _ in measured if c not in cells.PARALLEL_CELLS}):
      ceiling = recurrent_product_rate(SHAPES[shape_name], cell, _REPEATS.value,
                                       _WARMUP.value)
      rows.append({"shape": shape_name, "cell": cell, "pass": "recurrent_products_only",
                   **ceiling})
      save()
      print(f"  {shape_name} {cell}: the recurrent products alone (the sequential part's "
            "ceiling): " + ", ".join(
                f"{axis} {r['lines']} lines x {r['steps']} steps {r['gflop_per_s']:.1f} "
                f"GFLOP/s ({100 * r['gflop_per_s'] / peak:.0f}% of peak)"
                for axis, r in ceiling.items()))
    fb = {key: statistics.median(res["forward_backward"]["seconds"] for res in results)
          for key, results in measured.items()}
    for (cell, impl, directions), seconds in fb.items():
      if impl == "torch":
        continue
      ratios = [f"{fb[other] / seconds:.2f}x {other[0]}/{other[1]}" for other in fb
                if other[1] == "torch" and other[0] == torch_cell(cell)]
      if cell != _CELLS.value[0] and (_CELLS.value[0], impl, directions) in fb:
        ratios.append(f"{fb[_CELLS.value[0], impl, directions] / seconds:.2f}x "
                      f"{_CELLS.value[0]}/{impl}")
      if ratios:
        print(f"  {shape_name} {cell}/{impl}/{directions}: forward+backward speed "
              + ", ".join(ratios))
  save()
  print(f"wrote {_JSON_OUT.value}")


if __name__ == "__main__":
  cli.run(main)
