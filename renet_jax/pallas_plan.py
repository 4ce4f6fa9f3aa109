"""How the Pallas recurrence kernels are laid out for a shape, and whether they fit a GPU.

`plan(kind, units, sequences, dtype)` picks the kernels' parameters for one direction
of a sweep (`sequences` lines of `units` hidden units each) or returns None where no
layout fits an H100/H200 SM (`LIMITS`); `estimate(...)` is the per-thread register and
per-block shared-memory use of a layout, read from its block sizes. This module imports
no Pallas: `renet_jax.recurrence` consults it to choose `impl="auto"` by shape.

The estimate is a model, checked (tests/test_pallas_plan.py) against what the real
Triton compiler and ptxas report for sm_90 at the configs' shapes
(`python -m experiments.kernel_report`, results/kernels/sm90.json), and sized to stay
above them:
- registers: every live (block_batch, U') fp32 tile of a step (the state, gate
  pre-activations, residuals, gate gradients) spread over the program's threads, plus a
  fixed overhead for indices and addresses; where the recurrent weights stay on chip
  (`resident`), their gate blocks also held as MMA operands in registers;
- shared memory: the pipelined buffers Triton allocates for the operands of each step's
  products (the weight block and the state tile), `NUM_STAGES` deep.
"""

import dataclasses
import math

import numpy as np

# Hopper (sm_90) per-SM limits that a single program must respect.
LIMITS = {"registers_per_thread": 255, "registers_per_sm": 65536,
          "shared_bytes_per_block": 227 * 1024}
SM_COUNT = 132  # H100 SXM / H200: the programs a sweep should fill
NUM_STAGES = 3  # Triton's default software pipelining depth (the launch uses it)
BLOCK_BATCHES = (64, 32, 16)  # Triton's dot products need M >= 16
GATES = {"rnn": 1, "gru": 3, "gru_reset_after": 3, "lstm": 4}
# Live fp32 (block_batch, U') tiles in one step of the time loop, per pass.
_LIVE_TILES = {"forward": {"rnn": 3, "gru": 7, "gru_reset_after": 8, "lstm": 9},
               "backward": {"rnn": 6, "gru": 12, "gru_reset_after": 13, "lstm": 15}}
_OVERHEAD_REGISTERS = 40


@dataclasses.dataclass(frozen=True)
class KernelPlan:
  block_batch: int  # sequences per program (the M of every per-step product)
  num_warps: int
  resident: bool    # recurrent weights loaded once before the time loop (else per step)


def padded_units(units: int) -> int:
  """U': the units padded to a power of two of at least 16 (Triton's block shapes)."""
  return max(16, 1 << (units - 1).bit_length())


def estimate(kind: str, units: int, plan: KernelPlan, dtype, pass_: str) -> dict:
  """Registers per thread and shared bytes per block of one kernel (see the module)."""
  up, gates = padded_units(units), GATES[kind]
  threads = plan.num_warps * 32
  item = np.dtype(dtype).itemsize if np.dtype(dtype).itemsize < 4 else 4
  tile = plan.block_batch * up / threads  # fp32 registers per thread for one tile
  registers = _LIVE_TILES[pass_][kind] * tile + _OVERHEAD_REGISTERS
  if plan.resident:
    registers += gates * up * up * item / 4 / threads
  shared = NUM_STAGES * (up * up * item + plan.block_batch * up * 4)
  registers = int(math.ceil(registers))
  return {"registers_per_thread": registers, "registers_per_sm": registers * threads,
          "shared_bytes_per_block": int(shared)}


def fits(usage: dict) -> bool:
  return all(usage[k] <= LIMITS[k] for k in LIMITS)


def plan(kind: str, units: int, sequences: int, dtype) -> KernelPlan | None:
  """The kernels' layout for this shape, or None where none fits an SM.

  Preference: weights on chip over streamed from L2 each step (the per-step product then
  reads no memory), the largest batch tile that still gives one program per SM (larger
  tiles read the weights fewer times in all), the fewest warps that fit."""
  candidates = []
  for resident in (True, False):
    for block_batch in BLOCK_BATCHES:
      for num_warps in (4, 8, 16):
        p = KernelPlan(block_batch, num_warps, resident)
        if all(fits(estimate(kind, units, p, dtype, pass_))
               for pass_ in ("forward", "backward")):
          candidates.append(p)
          break
  if not candidates:
    return None
  # Tiles as large as the SM count allows (both directions of a sweep share the grid),
  # else the smallest (most programs).
  filling = [p for p in candidates
             if 2 * math.ceil(sequences / p.block_batch) >= SM_COUNT] or \
      [p for p in candidates if p.block_batch == min(c.block_batch for c in candidates)]
  return max(filling, key=lambda p: (p.resident, p.block_batch, -p.num_warps))
