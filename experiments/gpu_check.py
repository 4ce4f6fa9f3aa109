r"""Every GPU number the project lacks, in one command that cannot lose its results.

  python -m experiments.gpu_check --out=DIR [--data_root=../shared/data] [--budget_s=480]

Sections, in this order (each row is written to DIR/gpu_check.jsonl the moment it is
measured, and DIR/gpu_check.md is rewritten after every row; a row that fails records
its error and the check goes on; a row that would start past its section's share of
--budget_s, SECTION_DEADLINES, is recorded as skipped):
1. `accuracy`: every recurrence impl (auto, custom_vjp, autodiff, pallas) of a GRU, both
   GRU forms (the thesis's only, on a CPU), on this device against a float64 reference (autodiff of the lax.scan
   path in float64 on the host CPU, in a subprocess with x64): outputs and gradients,
   float32 (precision float32 and tf32x3) and bfloat16; the maximum error relative to
   the reference's largest magnitude.
2. `layers`: the five ReNet layer shapes of `experiments.bench` (GPU_SHAPES), each in
   fp32 (no TF32 on either side), TF32 (allowed on both) and bf16, our impls (auto,
   custom_vjp, and pallas where a compiled layout exists) against PyTorch's nn.GRU
   (cuDNN), forward+backward time, images/s, peak memory, and our speed as a ratio
   of PyTorch's.
3. `training_steps`: the jitted training step of each paper config whose data is under
   --data_root (and the embedded defaults), in float32 and bfloat16: ms per step,
   images/s, the bf16/fp32 ratio.
4. `mnist_run`: about a minute of real MNIST training through the CLI
   (`experiments.classify`, mnist.py:quick with a time budget), its results.json
   figures; the embedded digits default when MNIST is not under --data_root.

On a CPU (`jax.default_backend() == "cpu"`) it runs the same code on tiny shapes (one
GRU form, the fp32 layer variant, the embedded configs), so CI tests it end to end. On a lent device: `bash ../shared/gpu/offline-wheels.sh .whl`
here, then carry the project, .whl and the data folders needed (README, "GPU check").
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from renet_jax import cli, files, pallas_plan, recurrence
from experiments import bench

_OUT = flags.DEFINE_string("out", None, "Folder for gpu_check.jsonl and gpu_check.md.")
_DATA_ROOT = flags.DEFINE_string("data_root", "", "Folder holding mnist/, cifar10/, "
                                 "weizmann_horse/, camvid/, vgg16/ (as ../shared/data).")
_BUDGET_S = flags.DEFINE_float("budget_s", 480.0, "Seconds for the whole check: a row that "
                               "would start past its section's share (SECTION_DEADLINES) "
                               "is recorded as skipped.")
_SECTIONS = flags.DEFINE_list("sections", ["accuracy", "layers", "training_steps",
                                           "mnist_run"], "Sections to run, in order.")
_MNIST_S = flags.DEFINE_integer("mnist_s", 60, "Training time budget of the MNIST run.")
_CONFIGS = flags.DEFINE_list("configs", [], "Training-step configs to time (names of "
                             "TRAINING_CONFIGS); default all (on a CPU: the embedded ones).")

# (config, option, data folder under --data_root, None for the embedded datasets)
TRAINING_CONFIGS = [
    ("digits", "", None), ("digits_seg", "", None), ("moving_digits_seg", "", None),
    ("mnist", "", "mnist"), ("cifar10", "", "cifar10"),
    ("weizmann_horse", "vgg", "weizmann_horse"), ("camvid", "vgg", "camvid"),
]


# The share of --budget_s by which each section's rows must have started (cumulative):
# the layer table may not eat the time of the training steps and the real run.
SECTION_DEADLINES = {"accuracy": 0.10, "layers": 0.55, "training_steps": 0.80,
                     "mnist_run": 0.85}


class Log:
  """Appends rows to DIR/gpu_check.jsonl (flushed and synced at once) and rewrites
  DIR/gpu_check.md after each. A row is skipped (and recorded so) when it would start
  after its section's deadline (SECTION_DEADLINES) or after the budget."""

  def __init__(self, out: str, budget_s: float):
    os.makedirs(out, exist_ok=True)
    self.jsonl, self.md = os.path.join(out, "gpu_check.jsonl"), os.path.join(out, "gpu_check.md")
    self.rows, self.start, self.budget_s = [], time.time(), budget_s
    open(self.jsonl, "w").close()

  def over_budget(self, section: str = "") -> bool:
    share = SECTION_DEADLINES.get(section, 1.0)
    return time.time() - self.start > share * self.budget_s

  def add(self, row: dict):
    row = {"elapsed_s": round(time.time() - self.start, 1), **row}
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

  def run(self, section: str, name: str, fn, **fields):
    """One row: fn() -> dict of results; its exception becomes the row's error."""
    if self.over_budget(section):
      share = SECTION_DEADLINES.get(section, 1.0)
      return self.add({"section": section, "name": name, **fields,
                       "skipped": f"past {share:.0%} of --budget_s={self.budget_s:g}"})
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


# ----------------------------------------------------------------------------
# 1. Accuracy against float64.
# ----------------------------------------------------------------------------


def accuracy_problem(kind: str, tiny: bool, seed: int = 0):
  """(rec, xs, cotangent) as float32 numpy arrays: L steps, B sequences, U units."""
  length, batch, units, features = (5, 3, 7, 4) if tiny else (24, 40, 100, 32)
  gates = recurrence.num_gates(kind)
  rng = np.random.default_rng(seed)
  rec = {"input_kernel": 0.5 * rng.normal(size=(features, gates * units)) / np.sqrt(features),
         "kernel": rng.normal(size=(units, gates * units)) / np.sqrt(units),
         "bias": 0.5 * rng.normal(size=(gates * units,))}
  if kind == "gru_reset_after":
    rec["recurrent_bias"] = 0.5 * rng.normal(size=(gates * units,))
  rec = {k: v.astype(np.float32) for k, v in rec.items()}
  xs = rng.normal(size=(length, batch, features)).astype(np.float32)
  cot = rng.normal(size=(length, batch, units)).astype(np.float32)
  return rec, xs, cot


def _loss_and_grads(kind, impl, precision, dtype, rec, xs, cot):
  def loss(rec, xs):
    rec = jax.tree.map(lambda a: a.astype(dtype), rec)
    hs = recurrence.recurrence(kind, False, rec, xs.astype(dtype), impl=impl,
                               precision=precision)
    return jnp.sum(hs.astype(jnp.float32) * cot), hs.astype(jnp.float32)
  (_, hs), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(rec, xs)
  return np.asarray(hs, np.float64), jax.tree.map(lambda g: np.asarray(g, np.float64), grads)


def float64_reference(kind: str, tiny: bool) -> dict:
  """Outputs and gradients of the lax.scan path in float64 on the host CPU (a
  subprocess, as x64 is a process-wide setting)."""
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "ref.npz")
    code = (
        "import numpy as np, jax, jax.numpy as jnp\n"
        "from experiments import gpu_check\n"
        "from renet_jax import recurrence\n"
        f"rec, xs, cot = gpu_check.accuracy_problem({kind!r}, {tiny})\n"
        "to64 = lambda a: jnp.asarray(a, jnp.float64)\n"
        "rec, xs, cot = jax.tree.map(to64, rec), to64(xs), to64(cot)\n"
        "def loss(rec, xs):\n"
        f"  hs = recurrence.recurrence({kind!r}, False, rec, xs, impl='autodiff')\n"
        "  return jnp.sum(hs * cot), hs\n"
        "(_, hs), (dr, dx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(rec, xs)\n"
        f"np.savez({out!r}, hs=hs, dxs=dx, **{{'d_' + k: v for k, v in dr.items()}})\n")
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                   timeout=600)
    with np.load(out) as f:
      return {k: f[k] for k in f.files}


def accuracy_row(kind, impl, precision, dtype, reference, tiny) -> dict:
  rec, xs, cot = accuracy_problem(kind, tiny)
  hs, (drec, dxs) = _loss_and_grads(kind, impl, precision, jnp.dtype(dtype), rec, xs, cot)
  rel = lambda got, want: float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
  grads = {"dxs": rel(dxs, reference["dxs"]),
           **{f"d_{k}": rel(v, reference[f"d_{k}"]) for k, v in drec.items()}}
  row = {"forward_rel_error": rel(hs, reference["hs"]),
         "grad_rel_error": max(grads.values()), "worst_grad": max(grads, key=grads.get)}
  if impl == "auto":
    row["runs"] = recurrence.auto_impl(recurrence.lowering_platform(), kind, rec["kernel"].shape[0],
                                       xs.shape[1], dtype, precision)
  return row


def section_accuracy(log: Log, tiny: bool):
  for kind in ("gru",) if tiny else ("gru", "gru_reset_after"):
    reference = {}
    log.run("accuracy", f"{kind} float64 reference", lambda: reference.update(
        float64_reference(kind, tiny)) or {"arrays": len(reference)}, kind=kind)
    if not reference:
      continue
    for impl in ("auto", "custom_vjp", "autodiff", "pallas"):
      for dtype, precision in (("float32", "float32"), ("float32", "tf32x3"),
                               ("bfloat16", "float32")):
        log.run("accuracy", f"{kind} {impl}",
                lambda: accuracy_row(kind, impl, precision, dtype, reference, tiny),
                kind=kind, impl=impl, dtype=dtype, precision=precision)


# ----------------------------------------------------------------------------
# 2. Layers against PyTorch.
# ----------------------------------------------------------------------------


TINY_SHAPES = {"tiny": (2, 8, 8, 3, (2, 2), 16)}
LAYER_VARIANTS = [("fp32", "float32", "float32", False), ("tf32", "float32", "tf32", True),
                  ("bf16", "bfloat16", "float32", True)]
TINY_VARIANTS = ("fp32",)  # (a CPU has no TF32; bf16 is the accuracy section's)


def section_layers(log: Log, tiny: bool):
  """The layer table; then one `auto_table` row: for every (cell, padded units, operand)
  timed, the smallest speed-up of the Pallas kernels over custom_vjp across shapes (the
  values for recurrence.PALLAS_MEASURED_FASTER)."""
  speedup = {}
  shapes = TINY_SHAPES if tiny else {k: bench.SHAPES[k] for k in bench.GPU_SHAPES}
  repeats, warmup = (2, 0) if tiny else (5, 1)
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    have_torch = True
  except ImportError:
    have_torch = False
  for name, shape in shapes.items():
    for variant, dtype, precision, allow_tf32 in LAYER_VARIANTS:
      if tiny and variant not in TINY_VARIANTS:
        continue
      times = {}

      def ours(impl, precision):
        r = bench.bench_layer(shape, "gru", impl, "separate", jnp.dtype(dtype), repeats,
                              warmup, precision=precision)
        times[impl if precision == variant_precision else f"{impl}_{precision}"] = \
            r["forward_backward"]["seconds"]
        return _layer_fields(shape, r)

      variant_precision = precision
      runs = [("auto", precision), ("custom_vjp", precision)]
      units, sequences = shape[5], shape[0] * shape[2] // shape[4][1]
      # The kernels at this variant's precision, and, for fp32, at fp32-grade 3xTF32.
      for p in [precision] + (["tf32x3"] if variant == "fp32" else []):
        if tiny or pallas_plan.plan("gru", units, sequences, dtype, p,
                                    allow_spills=True) is not None:
          runs.append(("pallas", p))
      for impl, p in runs:
        log.run("layers", f"{name} {variant}", lambda: ours(impl, p), shape=name,
                variant=variant, impl=impl, precision=p)
      for key, seconds in times.items():
        if key.startswith("pallas") and "custom_vjp" in times:
          op = pallas_plan.operand(dtype, key.partition("_")[2] or precision)
          speedup.setdefault(("gru", pallas_plan.padded_units(units), op), []).append(
              times["custom_vjp"] / seconds)
      if not have_torch:
        log.add({"section": "layers", "name": f"{name} {variant}", "shape": name,
                 "variant": variant, "impl": "torch", "skipped": "torch is not installed"})
        continue

      def theirs():
        r = bench.bench_torch_layer(shape, "gru", jnp.dtype(dtype), repeats, warmup,
                                    allow_tf32=allow_tf32)
        row = _layer_fields(shape, r)
        for impl, seconds in times.items():
          row[f"{impl}_speed_vs_torch"] = r["forward_backward"]["seconds"] / seconds
        return row

      log.run("layers", f"{name} {variant}", theirs, shape=name, variant=variant,
              impl="torch")
  log.add({"section": "layers", "name": "auto_table",
           "pallas_measured_faster": {f"{k[0]}/{k[1]}/{k[2]}": round(min(v), 3)
                                      for k, v in sorted(speedup.items())}})


def _layer_fields(shape, r) -> dict:
  fb = r["forward_backward"]
  return {"forward_ms": 1e3 * r["forward"]["seconds"], "fwd_bwd_ms": 1e3 * fb["seconds"],
          "fwd_bwd_images_per_s": shape[0] / fb["seconds"],
          "peak_mib": fb["peak_bytes"] / 2**20 if fb.get("peak_bytes") else None,
          "runs": fb.get("runs", "cudnn")}


# ----------------------------------------------------------------------------
# 3. Training steps; 4. a real run.
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


def section_training_steps(log: Log, tiny: bool, data_root: str, tmp: str,
                           names: list[str]):
  configs = [c for c in TRAINING_CONFIGS if c[2] is None] if tiny else TRAINING_CONFIGS
  if names:
    configs = [c for c in TRAINING_CONFIGS if c[0] in names]
  for name, option, folder in configs:
    label = f"{name}:{option}" if option else name
    if folder and not os.path.isdir(os.path.join(data_root, folder)):
      log.add({"section": "training_steps", "name": label,
               "skipped": f"no {folder}/ under --data_root={data_root!r}"})
      continue
    seconds = {}
    for dtype in ("float32", "bfloat16"):
      def step():
        c = _config(name, option, folder, data_root, tmp)
        c.model.dtype = dtype
        if tiny:
          c.train.batch_size = min(c.train.batch_size, 4)
        run, info = bench.training_step_timer(c, warmup=1)
        s = min(run(2 if tiny else 5) for _ in range(3))
        seconds[dtype] = s
        row = {"batch_size": info["batch_size"], "ms_per_step": 1e3 * s,
               "images_per_s": info["images_per_step"] / s,
               "features_cached": info["features_cached"]}
        if dtype == "bfloat16" and "float32" in seconds:
          row["bf16_speedup"] = seconds["float32"] / s
        return row
      log.run("training_steps", label, step, dtype=dtype)


def section_mnist_run(log: Log, tiny: bool, data_root: str, out: str, tmp: str):
  """The run trains in `tmp` (checkpoints and prepared data stay out of DIR); its
  results.json and metrics.jsonl are copied to DIR/mnist_run/."""
  mnist = os.path.join(data_root, "mnist")
  workdir = os.path.join(tmp, "mnist_run")
  if not tiny and os.path.isdir(mnist):
    args = ["-m", "experiments.classify", "--config=experiments/configs/mnist.py:quick",
            f"--config.data.manual_dir={mnist}", f"--config.train.time_budget_s={_MNIST_S.value}"]
    name = "mnist:quick"
  else:
    args = ["-m", "experiments.classify", "--config=experiments/configs/digits.py",
            f"--config.train.time_budget_s={_MNIST_S.value}"]
    if tiny:
      args += ["--config.train.num_epochs=1"]
    name = "digits (no mnist/ under --data_root)" if not tiny else "digits"

  def run():
    start = time.time()
    proc = subprocess.run([sys.executable, *args, f"--config.data.data_dir={tmp}/tfds",
                           f"--workdir={workdir}"], capture_output=True, text=True,
                          timeout=max(600, 4 * _MNIST_S.value))
    if proc.returncode != 0:
      raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
    os.makedirs(os.path.join(out, "mnist_run"), exist_ok=True)
    for name in ("results.json", "metrics.jsonl"):
      shutil.copy(os.path.join(workdir, name), os.path.join(out, "mnist_run", name))
    with open(os.path.join(workdir, "results.json")) as f:
      results = json.load(f)
    return {"wall_s": time.time() - start, "epochs": results["epochs"],
            "test_accuracy": results["test_accuracy"],
            "train_images_per_s": results["train_images_per_s"],
            "stopped_by": results["stopped_by"], "recurrences": results.get("recurrences")}

  log.run("mnist_run", name, run)


def main(argv):
  del argv
  if not _OUT.value:
    raise app.UsageError("--out=DIR is required (where the results are written).")
  log = Log(_OUT.value, _BUDGET_S.value)
  tiny = jax.default_backend() == "cpu"
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
  with tempfile.TemporaryDirectory() as tmp:
    for section in _SECTIONS.value:
      if section == "accuracy":
        section_accuracy(log, tiny)
      elif section == "layers":
        section_layers(log, tiny)
      elif section == "training_steps":
        section_training_steps(log, tiny, _DATA_ROOT.value, tmp, _CONFIGS.value)
      elif section == "mnist_run":
        section_mnist_run(log, tiny, _DATA_ROOT.value, _OUT.value, tmp)
      else:
        raise app.UsageError(f"Unknown section {section!r}.")
  errors = [r for r in log.rows if "error" in r]
  print(f"wrote {log.jsonl} and {log.md}: {len(log.rows)} rows, {len(errors)} errors, "
        f"{time.time() - log.start:.0f} s")


if __name__ == "__main__":
  cli.run(main)
