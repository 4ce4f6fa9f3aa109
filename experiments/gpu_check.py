r"""Every GPU number the project lacks, in one command that cannot lose its results.

  python -m experiments.gpu_check --out=DIR [--data_root=../shared/data] [--budget_s=480]
      [--shapes=mnist,cifar10,...] [--sections=layers,training_steps,...]

Rows run in priority order (`plan`), each written to DIR/gpu_check.jsonl the moment it
is measured (DIR/gpu_check.md is rewritten after every row; a row that fails records
its error and the check goes on). A row whose estimated cost (ESTIMATE_S, what a cold
H200 took on 2026-12-04) would end past --budget_s is recorded as skipped, and the
start prints what is estimated to fit:
1. `layers`, shape-major: for every layer shape of --shapes (default: the five of
   `renet_jax.benchmarks`' GPU_SHAPES), in fp32 (no TF32 on either side) and bf16:
   custom_vjp, PyTorch's nn.GRU (cuDNN), and the Pallas kernels wherever a compiled
   layout exists; forward+backward time, images/s, peak memory, our speed as a ratio of
   cuDNN's. `auto` is never timed: every row says what auto resolves to for its shape
   and variant (`auto_runs`) and the row that auto runs is marked `is_auto`.
2. `training_steps` of MNIST and CIFAR-10 (thesis models, data under --data_root) in
   float32 and bfloat16 with impl=auto: ms per step, images/s, the bf16/fp32 ratio.
3. As time allows: `accuracy` (every impl of both GRU forms against a float64
   reference, `python -m experiments.gpu_check_reference`, on the host CPU), the TF32
   variant of every layer shape and the kernels at 3xTF32 for fp32, the other training
   steps (embedded defaults, Horse and CamVid with VGG), and `mnist_run` (about a minute
   of real MNIST training through the CLI).
Then one `auto_table` row: per (cell, padded units, operand) timed, the smallest speed-up
of the kernels over custom_vjp (the values for recurrence.PALLAS_MEASURED_FASTER).
Every timed row has its seconds split into `prepare_s` (data), `compile_s` and `time_s`.

On a CPU (`jax.default_backend() == "cpu"`) it runs the same plan on tiny shapes (one
GRU form, the embedded configs), so CI tests it end to end. On a lent device: `bash
../shared/gpu/offline-wheels.sh .whl` here, then carry the project, .whl and the data
folders needed (docs/benchmarks.md, "The GPU check").
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from renet_jax import benchmarks, cli, files
from renet_jax.kernels import common, linear_scan, pallas_plan, recurrence
from renet_jax.nn import cells

SECTIONS = ("layers", "training_steps", "accuracy", "mnist_run")
_OUT = flags.DEFINE_string("out", None, "Folder for gpu_check.jsonl and gpu_check.md.")
_DATA_ROOT = flags.DEFINE_string("data_root", "", "Folder holding mnist/, cifar10/, "
                                 "weizmann_horse/, camvid/, vgg16/ (as ../shared/data).")
_BUDGET_S = flags.DEFINE_float("budget_s", 480.0, "Seconds for the whole check: a row whose "
                               "estimated cost would end past it is recorded as skipped.")
_SECTIONS = flags.DEFINE_list("sections", list(SECTIONS), f"Sections to run, of {SECTIONS} "
                              "(rows keep the priority order of `plan`).")
_SHAPES = flags.DEFINE_list("shapes", [], "Layer shapes (of renet_jax.benchmarks.SHAPES); "
                            "default: its GPU_SHAPES (on a CPU: one tiny shape).")
_MNIST_S = flags.DEFINE_integer("mnist_s", 60, "Training time budget of the MNIST run.")
_CONFIGS = flags.DEFINE_list("configs", [], "Training-step configs to time (names of "
                             "TRAINING_CONFIGS); default all (on a CPU: the embedded ones).")

# (config, option, data folder under --data_root, None for the embedded datasets)
TRAINING_CONFIGS = [
    ("mnist", "", "mnist"), ("cifar10", "", "cifar10"),
    ("digits", "", None), ("digits_seg", "", None), ("moving_digits_seg", "", None),
    ("weizmann_horse", "vgg", "weizmann_horse"), ("camvid", "vgg", "camvid"),
]
PRIORITY_CONFIGS = ("mnist", "cifar10")  # timed right after the layer table

# Seconds a row took on a cold H200 (2026-12-04, results/gpu/h200-2026-12-04): the
# first row of a layer shape compiles the most; a Pallas row compiles Triton kernels;
# a training-step config's first row prepares its data (MNIST 10 s, CIFAR-10 41 s on
# the host) and compiles. On a CPU, the tiny plan's rows take a few seconds each.
ESTIMATE_S = {"layer_first": 30.0, "layer": 12.0, "torch": 6.0, "pallas": 20.0,
              "step_first": 60.0, "step": 30.0, "prepare": {"mnist": 15.0, "cifar10": 45.0,
                                                            "camvid": 60.0},
              "reference": 15.0, "accuracy": 6.0, "mnist_run": 120.0}
TINY_ESTIMATE_S = 3.0


@dataclasses.dataclass
class Row:
  """One planned row: what it is, how to measure it, and its estimated cost."""
  section: str
  name: str
  fields: dict
  measure: Callable[[], dict] | None
  estimate_s: float
  skip: str = ""  # why the row cannot run here (recorded as skipped)


class Log:
  """Appends rows to DIR/gpu_check.jsonl (flushed and synced at once) and rewrites
  DIR/gpu_check.md after each. A row is skipped (and recorded so) when its estimated
  cost would end past the budget."""

  def __init__(self, out: str, budget_s: float):
    os.makedirs(out, exist_ok=True)
    self.jsonl, self.md = os.path.join(out, "gpu_check.jsonl"), os.path.join(out, "gpu_check.md")
    self.rows, self.start, self.budget_s = [], time.time(), budget_s
    open(self.jsonl, "w").close()

  def elapsed(self) -> float:
    return time.time() - self.start

  def add(self, row: dict):
    row = {"elapsed_s": round(self.elapsed(), 1), **row}
    self.rows.append(row)
    with open(self.jsonl, "a") as f:
      f.write(json.dumps(row, default=str) + "\n")
      f.flush()
      os.fsync(f.fileno())

    def write_md(tmp):
      with open(tmp, "w") as f:
        f.write(markdown(self.rows))

    files.write_atomic(self.md, write_md)
    shown = {k: v for k, v in row.items() if k not in ("traceback",)}
    print(json.dumps(shown, default=str), flush=True)

  def run(self, section: str, name: str, fn, estimate_s: float = 0.0, **fields):
    """One row: fn() -> dict of results; its exception becomes the row's error."""
    if self.elapsed() + estimate_s > self.budget_s:
      return self.add({"section": section, "name": name, **fields,
                       "skipped": f"estimated {estimate_s:g} s would end past "
                                  f"--budget_s={self.budget_s:g}"})
    start = time.time()
    try:
      result = fn()
    except Exception as e:  # pylint: disable=broad-except
      return self.add({"section": section, "name": name, **fields,
                       "error": f"{type(e).__name__}: {str(e).strip()[:600]}",
                       "traceback": traceback.format_exc()[-3000:],
                       "seconds": round(time.time() - start, 1)})
    return self.add({"section": section, "name": name, **fields, **result,
                     "seconds": round(time.time() - start, 1)})


def markdown(rows: list[dict]) -> str:
  lines = ["# GPU check", ""]
  for section in dict.fromkeys(r["section"] for r in rows):
    lines += [f"## {section}", ""]
    keys = [k for k in dict.fromkeys(k for r in rows if r["section"] == section for k in r)
            if k not in ("section", "traceback")]
    lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
      if r["section"] == section:
        lines.append("| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |")
    lines.append("")
  return "\n".join(lines)


def _cell(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return str(v).replace("|", "/").replace("\n", " ")[:200]


def fits(plan_rows: list[Row], budget_s: float) -> tuple[int, float]:
  """(rows estimated to fit in `budget_s`, in order, skipping as Log.run does; their
  estimated seconds)."""
  used, count = 0.0, 0
  for row in plan_rows:
    if not row.skip and used + row.estimate_s <= budget_s:
      used += row.estimate_s
      count += 1
  return count, used


# ----------------------------------------------------------------------------
# Accuracy against float64.
# ----------------------------------------------------------------------------


def accuracy_problem(kind: str, tiny: bool, seed: int = 0):
  """(weights, xs, cotangent) as float32 numpy arrays: L steps, B sequences, U units."""
  length, batch, units, features = (5, 3, 7, 4) if tiny else (24, 40, 100, 32)
  gates = common.num_gates(kind)
  rng = np.random.default_rng(seed)
  weights = {
      "input_kernel": 0.5 * rng.normal(size=(features, gates * units)) / np.sqrt(features),
      "kernel": rng.normal(size=(units, gates * units)) / np.sqrt(units),
      "bias": 0.5 * rng.normal(size=(gates * units,))}
  if kind == "gru_reset_after":
    weights["recurrent_bias"] = 0.5 * rng.normal(size=(gates * units,))
  weights = {k: v.astype(np.float32) for k, v in weights.items()}
  xs = rng.normal(size=(length, batch, features)).astype(np.float32)
  cot = rng.normal(size=(length, batch, units)).astype(np.float32)
  return weights, xs, cot


def _loss_and_grads(kind, impl, precision, dtype, weights, xs, cot):
  def loss(weights, xs):
    weights = jax.tree.map(lambda a: a.astype(dtype), weights)
    hs = recurrence.recurrence(kind, False, weights, xs.astype(dtype), impl=impl,
                               precision=precision)
    return jnp.sum(hs.astype(jnp.float32) * cot), hs.astype(jnp.float32)
  (_, hs), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(weights, xs)
  return np.asarray(hs, np.float64), jax.tree.map(lambda g: np.asarray(g, np.float64), grads)


def float64_reference(kind: str, tiny: bool) -> dict:
  """Outputs and gradients of the lax.scan path in float64 on the host CPU, computed by
  `python -m experiments.gpu_check_reference` (x64 is a process-wide setting)."""
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "ref.npz")
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-m", "experiments.gpu_check_reference", kind,
                    "tiny" if tiny else "full", out], env=env, check=True,
                   capture_output=True, timeout=600)
    with np.load(out) as f:
      return {k: f[k] for k in f.files}


def accuracy_row(kind, impl, precision, dtype, reference, tiny) -> dict:
  weights, xs, cot = accuracy_problem(kind, tiny)
  hs, (dweights, dxs) = _loss_and_grads(kind, impl, precision, jnp.dtype(dtype), weights, xs, cot)
  rel = lambda got, want: float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
  grads = {"dxs": rel(dxs, reference["dxs"]),
           **{f"d_{k}": rel(v, reference[f"d_{k}"]) for k, v in dweights.items()}}
  return {"forward_rel_error": rel(hs, reference["hs"]),
          "grad_rel_error": max(grads.values()), "worst_grad": max(grads, key=grads.get)}


def accuracy_rows(tiny: bool) -> list[Row]:
  """Per GRU form: the float64 reference, then every impl but auto (auto_runs names the
  one it resolves to) in fp32, fp32 at 3xTF32, and bf16."""
  rows, references = [], {}
  estimate = TINY_ESTIMATE_S if tiny else ESTIMATE_S["accuracy"]
  for kind in ("gru",) if tiny else ("gru", "gru_reset_after"):
    def reference(kind=kind):
      references[kind] = float64_reference(kind, tiny)
      return {"arrays": len(references[kind])}
    rows.append(Row("accuracy", f"{kind} float64 reference", {"kind": kind}, reference,
                    TINY_ESTIMATE_S if tiny else ESTIMATE_S["reference"]))
    _, xs, _ = accuracy_problem(kind, tiny)
    for dtype, precision in (("float32", "float32"), ("float32", "tf32x3"),
                             ("bfloat16", "float32")):
      auto_runs = recurrence.auto_impl(recurrence.lowering_platform(), kind,
                                       accuracy_problem(kind, tiny)[0]["kernel"].shape[0],
                                       xs.shape[1], dtype, precision)
      for impl in ("custom_vjp", "autodiff", "pallas"):
        def measure(kind=kind, impl=impl, precision=precision, dtype=dtype):
          if kind not in references:
            raise RuntimeError("no float64 reference (its row failed or was skipped)")
          return accuracy_row(kind, impl, precision, dtype, references[kind], tiny)
        rows.append(Row("accuracy", f"{kind} {impl}",
                        {"kind": kind, "impl": impl, "dtype": dtype, "precision": precision,
                         "auto_runs": auto_runs, "is_auto": impl == auto_runs},
                        measure, estimate))
  return rows


# ----------------------------------------------------------------------------
# Layers against PyTorch.
# ----------------------------------------------------------------------------


TINY_SHAPES = {"tiny": (2, 8, 8, 3, (2, 2), 16)}
# (variant, dtype, precision, TF32 allowed on PyTorch's side)
LAYER_VARIANTS = {"fp32": ("float32", "float32", False), "bf16": ("bfloat16", "float32", True),
                  "tf32": ("float32", "tf32", True)}
PRIORITY_VARIANTS = ("fp32", "bf16")  # the rest (tf32, and 3xTF32 kernels) as time allows


def _have_torch() -> bool:
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    return True
  except ImportError:
    return False


def layer_rows(shapes: dict, tiny: bool, variants, with_tf32x3: bool,
               times: dict) -> list[Row]:
  """Per shape (shape-major) and variant: custom_vjp, cuDNN, the kernels where a layout
  compiles (and, `with_tf32x3`, the fp32 variant's kernels at 3xTF32). Our rows' seconds
  go to `times[(shape, variant)][impl or impl_precision]` for the speed ratios and the
  auto table."""
  repeats, warmup = (2, 0) if tiny else (5, 1)
  have_torch = _have_torch()
  rows = []
  for name, shape in shapes.items():
    first = True
    for variant in variants:
      dtype, precision, allow_tf32 = LAYER_VARIANTS[variant]
      units, sequences = shape[5], shape[0] * shape[2] // shape[4][1]
      kernels = [p for p in ([] if with_tf32x3 else [precision])
                 + (["tf32x3"] if variant == "fp32" and with_tf32x3 else [])
                 if tiny or pallas_plan.plan("gru", units, sequences, dtype, p,
                                             allow_spills=True) is not None]
      auto_runs = recurrence.auto_impl(recurrence.lowering_platform(), "gru", units,
                                       sequences, dtype, precision)
      timed = times.setdefault((name, variant), {})
      runs = ([] if with_tf32x3 else [("custom_vjp", precision)]) + \
          [("pallas", p) for p in kernels]

      def ours(impl, p, timed=timed, shape=shape, dtype=dtype, precision=precision):
        r = benchmarks.bench_layer(shape, "gru", impl, "separate", jnp.dtype(dtype), repeats,
                              warmup, precision=p)
        timed[impl if p == precision else f"{impl}_{p}"] = r["forward_backward"]["seconds"]
        return _layer_fields(shape, r)

      for impl, p in runs:
        estimate = (TINY_ESTIMATE_S if tiny else ESTIMATE_S["pallas"] if impl == "pallas"
                    else ESTIMATE_S["layer_first" if first else "layer"])
        first = False
        rows.append(Row("layers", f"{name} {variant}",
                        {"shape": name, "variant": variant, "impl": impl, "precision": p,
                         "auto_runs": auto_runs, "is_auto": impl == auto_runs and p == precision},
                        lambda impl=impl, p=p, ours=ours: ours(impl, p), estimate))
      if with_tf32x3:
        continue

      def theirs(shape=shape, dtype=dtype, allow_tf32=allow_tf32, timed=timed):
        r = benchmarks.bench_torch_layer(shape, "gru", jnp.dtype(dtype), repeats, warmup,
                                    allow_tf32=allow_tf32)
        row = _layer_fields(shape, r)
        for impl, seconds in timed.items():
          row[f"{impl}_speed_vs_torch"] = r["forward_backward"]["seconds"] / seconds
        return row

      rows.append(Row("layers", f"{name} {variant}",
                      {"shape": name, "variant": variant, "impl": "torch"}, theirs,
                      TINY_ESTIMATE_S if tiny else ESTIMATE_S["torch"],
                      skip="" if have_torch else "torch is not installed"))
  return rows


def parallel_cell_rows(shapes: dict, tiny: bool, variants) -> list[Row]:
  """The parallel cells (mingru, minlstm) per shape and variant, both linear scans: the
  measurement `linear_scan.AUTO_ASSOCIATIVE_MIN_LENGTH` waits for on GPUs."""
  repeats, warmup = (2, 0) if tiny else (5, 1)
  rows = []
  for name, shape in shapes.items():
    lengths = (shape[1] // shape[4][0], shape[2] // shape[4][1])
    auto_runs = "+".join(sorted({linear_scan.auto_impl(recurrence.lowering_platform(), n)
                                 for n in lengths}))
    for variant in variants:
      dtype, precision, _ = LAYER_VARIANTS[variant]
      for cell in cells.PARALLEL_CELLS:
        for impl in ("sequential", "associative"):
          def run(cell=cell, impl=impl, shape=shape, dtype=dtype, precision=precision):
            r = benchmarks.bench_layer(shape, cell, impl, "separate", jnp.dtype(dtype),
                                       repeats, warmup, precision=precision)
            return _layer_fields(shape, r)
          rows.append(Row("layers", f"{name} {variant} {cell}",
                          {"shape": name, "variant": variant, "cell": cell, "impl": impl,
                           "lengths": list(lengths), "auto_runs": auto_runs}, run,
                          TINY_ESTIMATE_S if tiny else ESTIMATE_S["layer"]))
  return rows


def auto_table(times: dict) -> dict:
  """{"cell/padded units/operand": the smallest speed-up of the kernels over custom_vjp
  across the shapes timed}, from `layer_rows`' times."""
  speedup = {}
  for (name, variant), timed in times.items():
    dtype, precision, _ = LAYER_VARIANTS[variant]
    shape = TINY_SHAPES.get(name) or benchmarks.SHAPES[name]
    for key, seconds in timed.items():
      if key.startswith("pallas") and "custom_vjp" in timed:
        op = pallas_plan.operand(dtype, key.partition("_")[2] or precision)
        speedup.setdefault(f"gru/{pallas_plan.padded_units(shape[5])}/{op}", []).append(
            timed["custom_vjp"] / seconds)
  return {k: round(min(v), 3) for k, v in sorted(speedup.items())}


def _layer_fields(shape, r) -> dict:
  fb = r["forward_backward"]
  timing = sum(v.get("wall_incl_compile_s", 0.0) for v in r.values())
  return {"forward_ms": 1e3 * r["forward"]["seconds"], "fwd_bwd_ms": 1e3 * fb["seconds"],
          "fwd_bwd_images_per_s": shape[0] / fb["seconds"],
          "peak_mib": fb["peak_bytes"] / 2**20 if fb.get("peak_bytes") else None,
          "runs": fb.get("runs", "cudnn"), "compile_s": fb.get("compile_s"),
          "time_s": timing or None}


# ----------------------------------------------------------------------------
# Training steps; a real run.
# ----------------------------------------------------------------------------


def _config(name, option, folder, data_root, tmp):
  import importlib  # pylint: disable=import-outside-toplevel
  c = importlib.import_module(f"experiments.configs.{name}").get_config(option)
  c.data.data_dir = os.path.join(tmp, "tfds")
  if folder:
    c.data.manual_dir = os.path.join(data_root, folder)
  vgg = os.path.join(data_root, "vgg16", "vgg16-397923af-conv1_1-conv3_3.pth")
  if option == "vgg" and os.path.exists(vgg):
    c.model.vgg_weights = vgg
  return c


def training_step_rows(configs, tiny: bool, data_root: str, tmp: str) -> list[Row]:
  """float32 then bfloat16 (impl=auto) of each config; a config without its data under
  --data_root gives one skipped row."""
  rows = []
  for name, option, folder in configs:
    label = f"{name}:{option}" if option else name
    if folder and not os.path.isdir(os.path.join(data_root, folder)):
      rows.append(Row("training_steps", label, {}, None, 0.0,
                      skip=f"no {folder}/ under --data_root={data_root!r}"))
      continue
    seconds = {}
    for dtype in ("float32", "bfloat16"):
      def step(name=name, option=option, folder=folder, dtype=dtype, seconds=seconds):
        c = _config(name, option, folder, data_root, tmp)
        c.model.dtype = dtype
        if tiny:
          c.train.batch_size = min(c.train.batch_size, 4)
        run, info = benchmarks.training_step_timer(c, warmup=1)
        start = time.perf_counter()
        s = min(run(2 if tiny else 5) for _ in range(3))
        seconds[dtype] = s
        row = {"batch_size": info["batch_size"], "ms_per_step": 1e3 * s,
               "images_per_s": info["images_per_step"] / s,
               "features_cached": info["features_cached"],
               "prepare_s": info["prepare_s"], "compile_s": info["compile_s"],
               "time_s": time.perf_counter() - start}
        if dtype == "bfloat16" and "float32" in seconds:
          row["bf16_speedup"] = seconds["float32"] / s
        return row
      estimate = TINY_ESTIMATE_S if tiny else (
          ESTIMATE_S["step_first" if dtype == "float32" else "step"]
          + (ESTIMATE_S["prepare"].get(name, 0.0) if dtype == "float32" else 0.0))
      rows.append(Row("training_steps", label, {"dtype": dtype}, step, estimate))
  return rows


def mnist_run_row(tiny: bool, data_root: str, out: str, tmp: str, seconds: int) -> Row:
  """About `seconds` of training through the CLI. The run trains in `tmp` (checkpoints
  and prepared data stay out of DIR); its results.json and metrics.jsonl are copied to
  DIR/mnist_run/."""
  mnist = os.path.join(data_root, "mnist")
  workdir = os.path.join(tmp, "mnist_run")
  if not tiny and os.path.isdir(mnist):
    args = ["-m", "experiments.classify", "--config=experiments/configs/mnist.py:quick",
            f"--config.data.manual_dir={mnist}", f"--config.train.time_budget_s={seconds}"]
    name = "mnist:quick"
  else:
    args = ["-m", "experiments.classify", "--config=experiments/configs/digits.py",
            f"--config.train.time_budget_s={seconds}"]
    if tiny:
      args += ["--config.train.num_epochs=1"]
    name = "digits (no mnist/ under --data_root)" if not tiny else "digits"

  def run():
    start = time.time()
    proc = subprocess.run([sys.executable, *args, f"--config.data.data_dir={tmp}/tfds",
                           f"--workdir={workdir}"], capture_output=True, text=True,
                          timeout=max(600, 4 * seconds))
    if proc.returncode != 0:
      raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
    os.makedirs(os.path.join(out, "mnist_run"), exist_ok=True)
    for file in ("results.json", "metrics.jsonl"):
      shutil.copy(os.path.join(workdir, file), os.path.join(out, "mnist_run", file))
    with open(os.path.join(workdir, "results.json")) as f:
      results = json.load(f)
    return {"wall_s": time.time() - start, "epochs": results["epochs"],
            "test_accuracy": results["test_accuracy"],
            "train_images_per_s": results["train_images_per_s"],
            "stopped_by": results["stopped_by"], "recurrences": results.get("recurrences")}

  return Row("mnist_run", name, {}, run,
             TINY_ESTIMATE_S if tiny else ESTIMATE_S["mnist_run"] + seconds)


# ----------------------------------------------------------------------------
# The plan.
# ----------------------------------------------------------------------------


def plan(tiny: bool, shapes: dict, sections, config_names, data_root: str, out: str,
         tmp: str, times: dict, mnist_s: int = 60) -> list[Row]:
  """Every row in priority order: the fp32 and bf16 layer table (shape-major), the
  MNIST and CIFAR-10 training steps, the parallel cells' layers, then the rest
  (accuracy, TF32 layers and 3xTF32 kernels, the other training steps, the MNIST run)."""
  configs = [c for c in TRAINING_CONFIGS if (c[0] in config_names if config_names
                                              else not tiny or c[2] is None)]
  first_configs = [c for c in configs if c[0] in PRIORITY_CONFIGS]
  rest_configs = [c for c in configs if c[0] not in PRIORITY_CONFIGS]
  tiny_variants = ("fp32", "bf16")  # (a CPU has no TF32)
  rows = []
  if "layers" in sections:
    rows += layer_rows(shapes, tiny, tiny_variants if tiny else PRIORITY_VARIANTS, False,
                       times)
  if "training_steps" in sections:
    rows += training_step_rows(first_configs, tiny, data_root, tmp)
  if "layers" in sections:
    rows += parallel_cell_rows(shapes, tiny, ("fp32",) if tiny else PRIORITY_VARIANTS)
  if "accuracy" in sections:
    rows += accuracy_rows(tiny)
  if "layers" in sections and not tiny:
    rows += layer_rows(shapes, tiny, ("tf32",), False, times)
    rows += layer_rows(shapes, tiny, ("fp32",), True, times)
  if "training_steps" in sections:
    rows += training_step_rows(rest_configs, tiny, data_root, tmp)
  if "mnist_run" in sections:
    rows.append(mnist_run_row(tiny, data_root, out, tmp, mnist_s))
  return rows


def main(argv):
  del argv
  if not _OUT.value:
    raise app.UsageError("--out=DIR is required (where the results are written).")
  unknown = sorted(set(_SECTIONS.value) - set(SECTIONS))
  if unknown:
    raise app.UsageError(f"--sections: unknown {unknown}; choose from {SECTIONS}")
  tiny = jax.default_backend() == "cpu"
  if _SHAPES.value:
    missing = [s for s in _SHAPES.value if s not in benchmarks.SHAPES]
    if missing:
      raise app.UsageError(f"--shapes: unknown {missing}; choose from {list(benchmarks.SHAPES)}")
    shapes = {s: benchmarks.SHAPES[s] for s in _SHAPES.value}
  else:
    shapes = TINY_SHAPES if tiny else {k: benchmarks.SHAPES[k] for k in benchmarks.GPU_SHAPES}
  log = Log(_OUT.value, _BUDGET_S.value)
  versions = {"jax": jax.__version__, "device": jax.devices()[0].device_kind,
              "backend": jax.default_backend(), "device_count": jax.device_count(),
              "tiny_shapes": tiny}
  try:
    import torch  # pylint: disable=import-outside-toplevel
    versions["torch"] = torch.__version__
    versions["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
  except ImportError:
    versions["torch"] = None
  log.add({"section": "environment", "name": "versions", **versions})
  times = {}
  with tempfile.TemporaryDirectory() as tmp:
    rows = plan(tiny, shapes, _SECTIONS.value, _CONFIGS.value, _DATA_ROOT.value,
                _OUT.value, tmp, times, _MNIST_S.value)
    count, seconds = fits(rows, _BUDGET_S.value)
    log.add({"section": "environment", "name": "estimate", "rows": len(rows),
             "cannot_run_here": sum(bool(r.skip) for r in rows),
             "estimated_to_fit": count, "estimated_s": round(seconds, 1),
             "first_left_out": next((f"{r.section}: {r.name} {r.fields}"
                                     for r in rows[count:]), None)})
    print(f"estimate: {count} of {len(rows) - sum(bool(r.skip) for r in rows)} rows fit in "
          f"--budget_s={_BUDGET_S.value:g} (about {seconds:.0f} s, a cold H200's pace)",
          flush=True)
    for row in rows:
      if row.skip:
        log.add({"section": row.section, "name": row.name, **row.fields, "skipped": row.skip})
      else:
        log.run(row.section, row.name, row.measure, row.estimate_s, **row.fields)
    if "layers" in _SECTIONS.value:
      log.add({"section": "layers", "name": "auto_table",
               "pallas_measured_faster": auto_table(times)})
  errors = [r for r in log.rows if "error" in r]
  print(f"wrote {log.jsonl} and {log.md}: {len(log.rows)} rows, {len(errors)} errors, "
        f"{time.time() - log.start:.0f} s")


if __name__ == "__main__":
  cli.run(main)
