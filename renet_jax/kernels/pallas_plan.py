"""How the Pallas recurrence kernels are laid out for a shape, and whether they fit a GPU.

`plan(kind, units, sequences, dtype, precision)` picks the kernels' parameters for one
direction of a sweep (`sequences` lines of `units` hidden units each) or returns None
where no layout is known to fit an H100/H200 SM. It decides from real compilations, not
from a model: `pallas_sm90.json` (next to this file) holds, for every layout tried at
every (cell, padded units, operand type) the configs use, what the Triton compiler from
PyPI and ptxas report for sm_90a (registers per thread, spilled bytes, shared memory per
block), for the forward and the backward kernel. `python -m experiments.kernel_report`
rebuilds it (and can add other cells and sizes). A shape the table does not hold gets
no plan, so `impl="auto"` runs the lax.scan path for it: auto never picks a kernel that
has not been compiled.

A layout fits when both kernels compile with no register spills and their shared memory
is within `LIMITS`. The operand type of the recurrent products decides most of it:
bf16, TF32 and 3xTF32 products run on tensor cores, while IEEE fp32 products
(`precision="float32"`) are FMA loops that Triton unrolls and that spill registers from
128 padded units on. This module imports no Pallas: `renet_jax.kernels.recurrence` consults it
to choose `impl="auto"` by shape.
"""

import dataclasses
import functools
import json
import math
import os

import numpy as np

from renet_jax.kernels import common

# Hopper (sm_90) limits one program must respect.
LIMITS = {"registers_per_thread": 255, "shared_bytes_per_block": 227 * 1024}
SM_COUNT = 132  # H100 SXM / H200: the programs a sweep should fill
TABLE_PATH = os.path.join(os.path.dirname(__file__), "pallas_sm90.json")


@dataclasses.dataclass(frozen=True)
class KernelPlan:
  block_batch: int  # sequences per program (the M of every per-step product)
  num_warps: int
  resident: bool    # recurrent weights loaded once before the time loop (else per step)
  # Triton's software pipelining depth of the time loop's loads; deeper stages multiply
  # the shared memory of the per-step tiles (gru 100 units, bf16: 104 KB at 1, ~3x at 3).
  num_stages: int = 1


def padded_units(units: int) -> int:
  """U': the units padded to a power of two of at least 16 (Triton's block shapes)."""
  return max(16, 1 << (units - 1).bit_length())


def operand(dtype, precision: str) -> str:
  """How the recurrent products run: "bfloat16" (bf16 inputs), else the float32
  precision ("float32" IEEE, "tf32", "tf32x3")."""
  name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
  return "bfloat16" if name == "bfloat16" else precision


def compiles(kernel: dict) -> bool:
  """Whether one compiled kernel (a table entry's "forward" or "backward") compiled within
  the SM's limits (registers beyond 255 spill, so only spills say registers ran out)."""
  return ("error" not in kernel
          and kernel["registers"] <= LIMITS["registers_per_thread"]
          and kernel["shared_bytes"] <= LIMITS["shared_bytes_per_block"])


def fits(kernel: dict) -> bool:
  """Compiles within the limits and spills no registers."""
  return compiles(kernel) and kernel["spill_bytes"] == 0


@functools.lru_cache(maxsize=None)
def table(path: str = TABLE_PATH) -> dict:
  """The compiled layouts at `path` (default `pallas_sm90.json`, what impl="auto"
  reads); empty if the file is absent."""
  if not os.path.exists(path):
    return {"layouts": []}
  with open(path) as f:
    return json.load(f)


def layouts(kind: str, units: int, dtype, precision: str = "float32",
            table_path: str = TABLE_PATH) -> list[dict]:
  """The table's entries for this cell, padded size and operand type."""
  key = (kind, padded_units(units), operand(dtype, precision))
  return [e for e in table(table_path)["layouts"]
          if (e["kind"], e["padded_units"], e["operand"]) == key]


def plan_of_entry(entry: dict) -> KernelPlan:
  return KernelPlan(entry["block_batch"], entry["num_warps"], entry["resident"],
                    entry["num_stages"])


def plan(kind: str, units: int, sequences: int, dtype, precision: str = "float32",
         allow_spills: bool = False, table_path: str = TABLE_PATH) -> KernelPlan | None:
  """The kernels' layout for this shape, or None where no compiled layout fits
  (`table_path`: the layout table to read; kernel_report passes the one it wrote).

  `allow_spills` (an explicit impl="pallas"): where no layout fits, the compiled one that
  spills the fewest bytes (it runs, more slowly); `impl="auto"` never takes one.
  Preference among the fitting layouts: weights on chip over streamed from L2 each step
  (the per-step products then read no memory), the largest batch tile that still gives
  every SM a program (both directions of a sweep share the grid; larger tiles read the
  weights fewer times in all), else the smallest tile (most programs); then the fewest
  warps."""
  entries = layouts(kind, units, dtype, precision, table_path)
  fitting = [plan_of_entry(e) for e in entries if fits(e["forward"]) and fits(e["backward"])]
  if not fitting:
    spilling = [e for e in entries if compiles(e["forward"]) and compiles(e["backward"])]
    if not allow_spills or not spilling:
      return None
    return plan_of_entry(min(spilling, key=lambda e: e["forward"]["spill_bytes"]
                             + e["backward"]["spill_bytes"]))
  filling = [p for p in fitting if 2 * math.ceil(sequences / p.block_batch) >= SM_COUNT]
  if not filling:
    smallest = min(p.block_batch for p in fitting)
    filling = [p for p in fitting if p.block_batch == smallest]
  return max(filling, key=lambda p: (p.resident, p.block_batch, -p.num_warps,
                                     p.num_stages))


def _weight_bytes(dtype, precision: str) -> int:
  """Bytes of one recurrent weight as the kernels' products read it."""
  return 2 if operand(dtype, precision) == "bfloat16" else 4


def staging_overflow(units: int, dtype, precision: str) -> str | None:
  """Why no layout can fit, where one gate's (U', U') weight block alone outgrows shared
  memory: Triton stages a product's whole right operand there (every compiled layout
  used at least that much), so such shapes are not compiled at all."""
  padded, item = padded_units(units), _weight_bytes(dtype, precision)
  if padded * padded * item > LIMITS["shared_bytes_per_block"]:
    return (f"one ({padded}, {padded}) weight block is {padded * padded * item // 1024} KiB, "
            f"more than the {LIMITS['shared_bytes_per_block'] // 1024} KiB of shared memory")
  return None


def candidates(kind: str, units: int, dtype, precision: str) -> list[KernelPlan]:
  """The layouts `experiments.kernel_report` compiles for one (cell, size, operand): batch
  tiles 16/32/64 (Triton's products need M >= 16), 4/8/16 warps, weights resident or
  streamed, except resident weights that alone exceed an SM's shared memory."""
  padded, item = padded_units(units), _weight_bytes(dtype, precision)
  weights_fit = common.num_gates(kind) * padded * padded * item <= LIMITS["shared_bytes_per_block"]
  return [KernelPlan(bb, warps, resident)
          for resident in ((True, False) if weights_fit else (False,))
          for bb in (16, 32, 64) for warps in (4, 8, 16)]
