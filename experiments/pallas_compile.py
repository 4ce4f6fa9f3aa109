"""The Pallas recurrence kernels compiled for a real NVIDIA target, without a GPU.

`triton_kernels(fn, *args)` lowers `fn` for CUDA from any machine and returns the Triton
kernels in it (their MLIR text and launch parameters); `compile_kernel(kernel)` compiles
one with the Triton compiler from PyPI (`pip install triton`: it ships ptxas) for
sm_90 (H100/H200) and returns what ptxas reports: registers per thread, spilled bytes
and shared memory. `config_shapes()` is every recurrence shape the paper configs run.
Used by `python -m experiments.kernel_report` and its test.
"""

import os
import re
import subprocess
import tempfile

import jax
import jax.numpy as jnp

from renet_jax.kernels import common, pallas_plan, pallas_recurrence, recurrence
from renet_jax.nn import models

# The paper configs and their datasets' image shapes (H, W, C); the batch is the
# config's train.batch_size. The ReNet sweeps' shapes follow (`config_shapes`).
CONFIG_INPUTS = [
    ("digits", "", (8, 8, 1)),
    ("mnist", "", (28, 28, 1)),
    ("cifar10", "", (32, 32, 3)),
    ("svhn", "", (32, 32, 3)),
    ("digits_seg", "", (32, 32, 1)),
    ("weizmann_horse", "vgg", (128, 128, 3)),
    ("oxford_flowers17", "vgg", (128, 128, 3)),
    ("camvid", "vgg", (360, 480, 3)),
]


# The sequences and length the table's layouts are compiled at (kernel_report). Only the
# grid and constant strides depend on them (a few registers either way at other shapes).
TABLE_SHAPE = {"sequences": 64, "length": 8}


def config_shapes(dtypes=("float32", "bfloat16")) -> list[dict]:
  """The distinct recurrences of every config in CONFIG_INPUTS (at its batch size), in
  each of `dtypes`: {kind, units, sequences, length, dtype, impl, configs}."""
  import importlib
  shapes = []
  for name, option, size in CONFIG_INPUTS:
    config = importlib.import_module(f"experiments.configs.{name}").get_config(option)
    batch = config.train.batch_size
    blocks = models.CLASSIFIERS if name in ("digits", "mnist", "cifar10", "svhn") \
        else models.SEGMENTERS
    for dtype in dtypes:
      config.model.dtype = dtype
      model = models.make_model(config.model, blocks, 10)
      x = jnp.zeros((batch,) + size, jnp.float32)
      for r in recurrence.auto_choices(lambda x: model.init(jax.random.key(0), x), x):
        match = [s for s in shapes if {k: s[k] for k in r} == r]
        if match:
          match[0]["configs"].append(name)
        else:
          shapes.append({**r, "configs": [name]})
  return shapes


def kernels_of_shape(shape: dict, plan: pallas_plan.KernelPlan,
                     precision: str = "float32") -> dict:
  """{"forward": kernel, "backward": kernel} of one recurrence shape under `plan`."""
  kind, units, dtype = shape["kind"], shape["units"], jnp.dtype(shape["dtype"])
  gates = common.num_gates(kind)
  features = 8  # the input width does not reach the kernels (its product is outside)
  weights = {"input_kernel": jnp.zeros((features, gates * units), dtype),
             "kernel": jnp.zeros((units, gates * units), dtype),
             "bias": jnp.zeros((gates * units,), dtype)}
  if kind == "gru_reset_after":
    weights["recurrent_bias"] = jnp.zeros((gates * units,), dtype)
  xs = jnp.zeros((shape["length"], shape["sequences"], features), dtype)
  fn = jax.grad(lambda r, x: jnp.sum(pallas_recurrence.recurrence(
      kind, False, r, x, precision=precision, plan=plan).astype(jnp.float32)), argnums=(0, 1))
  forward, backward = triton_kernels(fn, weights, xs)
  return {"forward": forward, "backward": backward}


def triton_kernels(fn, *args) -> list[dict]:
  """The Triton kernels of `fn(*args)` lowered for CUDA, in program order:
  {"ir": MLIR text, "num_warps", "num_stages", "grid"}."""
  from jax._src.lib.mlir import ir
  from jaxlib.triton import dialect
  module = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).compiler_ir()
  configs = []

  def walk(op):
    for region in op.regions:
      for block in region.blocks:
        for child in block.operations:
          if child.operation.name == "stablehlo.custom_call" and \
              "mhlo.backend_config" in child.operation.attributes:
            configs.append(ir.DictAttr(child.operation.attributes["mhlo.backend_config"]))
          walk(child.operation)

  walk(module.operation)
  kernels = []
  for config in configs:
    with ir.Context() as context:
      dialect.register_dialect(context)
      text = str(ir.Module.parse(ir.StringAttr(config["ir"]).value_bytes))
    read = lambda key: ir.IntegerAttr(config[key]).value
    kernels.append({"ir": text, "num_warps": read("num_warps"),
                    "num_stages": read("num_stages"),
                    "grid": [read(f"grid_{a}") for a in "xyz"]})
  return kernels


def compile_kernel(kernel: dict, capability: int = 90) -> dict:
  """Compiles one kernel of `triton_kernels` for sm_<capability> with PyPI's Triton;
  returns {"registers", "spill_bytes", "shared_bytes"} as ptxas reports them."""
  import triton
  from triton.backends.compiler import GPUTarget
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "kernel.ttir")
    with open(path, "w") as f:
      f.write(kernel["ir"])
    compiled = triton.compile(path, target=GPUTarget("cuda", capability, 32),
                              options={"num_warps": kernel["num_warps"],
                                       "num_stages": kernel["num_stages"]})
    ptx = os.path.join(tmp, "kernel.ptx")
    with open(ptx, "w") as f:
      f.write(compiled.asm["ptx"])
    report = _ptxas_report(ptx, capability, tmp)
  return {**report, "shared_bytes": int(compiled.metadata.shared)}


def _ptxas_report(ptx: str, capability: int, tmp: str) -> dict:
  import triton
  folder = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
  errors = []
  for name in ("ptxas-blackwell", "ptxas"):  # the newer one reads the newer PTX
    out = subprocess.run([os.path.join(folder, name), "-v", f"--gpu-name=sm_{capability}a",
                          ptx, "-o", os.path.join(tmp, "kernel.cubin")],
                         capture_output=True, text=True)
    if out.returncode == 0:
      text = out.stdout + out.stderr
      registers = int(re.search(r"Used (\d+) registers", text).group(1))
      spills = re.search(r"(\d+) bytes spill stores", text)
      return {"registers": registers, "spill_bytes": int(spills.group(1)) if spills else 0}
    errors.append(f"{name}: {out.stderr.strip()[-300:]}")
  raise RuntimeError("ptxas failed: " + "; ".join(errors))
