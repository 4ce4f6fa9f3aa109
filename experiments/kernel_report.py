r"""Compiles the Pallas recurrence kernels for sm_90 (H100/H200) without a GPU, at every
shape the paper configs run, and writes what fits.

  pip install triton   # the Triton compiler and ptxas (the `kernels` extra)
  python -m experiments.kernel_report [--out=results/kernels] \
      [--table=renet_jax/kernels/pallas_sm90.json] [--extra=lstm:128,gru:64]

For every (cell, padded units) of the configs' recurrences (`pallas_compile.CONFIG_INPUTS`)
plus --extra, and every operand type of the recurrent products (--operands: bf16 inputs,
or float32 inputs at precision float32 / tf32 / tf32x3), it lowers the forward and the
backward kernel of each candidate layout (`pallas_plan.candidates`) for CUDA, compiles
them with Triton for sm_90a and reads registers, spilled bytes and shared memory from
ptxas and Triton. A larger batch tile than one that already spills or overflows is not
tried, nor a shape one of whose weight blocks alone outgrows shared memory
(`pallas_plan.staging_overflow`: recorded as not compiled). The table (--table, what `pallas_plan.plan` and so `impl="auto"` read) is
rewritten after every (cell, units, operand), so an interrupted run keeps what it
compiled; then --out gets sm90.json and sm90.md: every config shape with the layout
auto would take on CUDA (or why none) and its resources.
"""

import json
import os
import platform
import sys
import time

from absl import app, flags

from experiments import pallas_compile
from renet_jax import files
from renet_jax.kernels import pallas_plan

_OUT = flags.DEFINE_string("out", "results/kernels", "Folder for sm90.json and sm90.md.")
_TABLE = flags.DEFINE_string("table", pallas_plan.TABLE_PATH,
                             "The compiled-layout table to write (the package reads "
                             "renet_jax/kernels/pallas_sm90.json).")
_OPERANDS = flags.DEFINE_list("operands", ["bfloat16", "float32", "tf32", "tf32x3"],
                              "Operand types of the recurrent products to compile.")
_EXTRA = flags.DEFINE_list("extra", [], "More kind:units to compile, e.g. lstm:128.")
_ONLY = flags.DEFINE_list("only", [], "Compile only these kind:units (e.g. gru:320), "
                          "keeping the table's other entries; then rewrite the report.")


def compile_layouts(kind: str, units: int, op: str) -> list[dict]:
  """Every candidate layout of (kind, units, operand) compiled: table entries."""
  dtype, precision = ("bfloat16", "float32") if op == "bfloat16" else ("float32", op)
  shape = {"kind": kind, "units": units, "dtype": dtype, **pallas_compile.TABLE_SHAPE}
  overflow = pallas_plan.staging_overflow(units, dtype, precision)
  if overflow:  # recorded, not compiled (its compilation takes minutes and cannot fit)
    print(f"  {kind} U'={pallas_plan.padded_units(units)} {op}: not compiled: {overflow}")
    return [{"kind": kind, "padded_units": pallas_plan.padded_units(units), "operand": op,
             "block_batch": 16, "num_warps": 8, "resident": False, "num_stages": 1,
             "forward": {"error": f"not compiled: {overflow}"},
             "backward": {"error": f"not compiled: {overflow}"}}]
  entries, failed = [], set()
  for plan in pallas_plan.candidates(kind, units, dtype, precision):
    group = (plan.resident, plan.num_warps)
    entry = {"kind": kind, "padded_units": pallas_plan.padded_units(units), "operand": op,
             "block_batch": plan.block_batch, "num_warps": plan.num_warps,
             "resident": plan.resident, "num_stages": plan.num_stages}
    if group in failed:
      continue  # a smaller tile of this group already spilled or overflowed
    start = time.time()
    try:
      kernels = pallas_compile.kernels_of_shape(shape, plan, precision)
    except Exception as e:  # pylint: disable=broad-except
      kernels, lowering_error = None, f"{type(e).__name__}: {str(e)[:300]}"
    for name in ("forward", "backward"):
      if kernels is None:
        entry[name] = {"error": lowering_error}
        continue
      try:
        entry[name] = pallas_compile.compile_kernel(kernels[name])
      except Exception as e:  # pylint: disable=broad-except
        entry[name] = {"error": f"{type(e).__name__}: {str(e)[-300:]}"}
    entry["compile_s"] = round(time.time() - start, 1)
    if not (pallas_plan.fits(entry["forward"]) and pallas_plan.fits(entry["backward"])):
      failed.add(group)
    entries.append(entry)
    print(f"  {kind} U'={entry['padded_units']} {op} bb={plan.block_batch} "
          f"warps={plan.num_warps} resident={plan.resident}: "
          f"{_brief(entry['forward'])} | {_brief(entry['backward'])}", flush=True)
  return entries


def _brief(kernel: dict) -> str:
  if "error" in kernel:
    return "error"
  return (f"{kernel['registers']} regs, {kernel['spill_bytes']} B spilled, "
          f"{kernel['shared_bytes'] // 1024} KiB smem")


def shape_report(shapes: list[dict], table_path: str = pallas_plan.TABLE_PATH) -> list[dict]:
  """Per config shape and operand: the layout auto takes on CUDA (strict: fits), the one
  an explicit impl="pallas" takes, and their resources, by the table at `table_path`."""
  rows = []
  for shape in shapes:
    precisions = ["float32"] if shape["dtype"] == "bfloat16" else ["float32", "tf32", "tf32x3"]
    for precision in precisions:
      args = (shape["kind"], shape["units"], shape["sequences"], shape["dtype"], precision)
      auto = pallas_plan.plan(*args, table_path=table_path)
      explicit = pallas_plan.plan(*args, allow_spills=True, table_path=table_path)
      entries = pallas_plan.layouts(shape["kind"], shape["units"], shape["dtype"], precision,
                                    table_path)
      chosen = next((e for e in entries if pallas_plan.plan_of_entry(e) == explicit), None)
      rows.append({
          "configs": shape["configs"], "kind": shape["kind"], "units": shape["units"],
          "sequences": shape["sequences"], "length": shape["length"],
          "operand": pallas_plan.operand(shape["dtype"], precision),
          "fits": auto is not None, "auto_plan": auto and vars(auto),
          "pallas_plan": explicit and vars(explicit),
          "forward": chosen and chosen["forward"], "backward": chosen and chosen["backward"],
          "layouts_compiled": len(entries)})
  return rows


def markdown(rows: list[dict], meta: dict) -> str:
  lines = [f"# Pallas recurrence kernels compiled for {meta['target']} "
           f"(Triton {meta['triton']}, no GPU)", "",
           "Limits: 255 registers per thread, 227 KiB shared memory per block; a layout "
           "fits with no spills. `auto` = what impl=\"auto\" may take on CUDA; `pallas` "
           "= what an explicit impl=\"pallas\" runs (fewest spills where none fits).", "",
           "| configs | cell | units | sequences | operand | fits | pallas layout | "
           "forward | backward |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    p = r["pallas_plan"]
    layout = (f"bb {p['block_batch']}, {p['num_warps']} warps, "
              f"{'resident' if p['resident'] else 'streamed'}") if p else "none compiles"
    lines.append(
        f"| {', '.join(r['configs'])} | {r['kind']} | {r['units']} | {r['sequences']} | "
        f"{r['operand']} | {'yes' if r['fits'] else 'no'} | {layout} | "
        f"{_brief(r['forward']) if r['forward'] else '-'} | "
        f"{_brief(r['backward']) if r['backward'] else '-'} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  try:
    import triton  # pylint: disable=import-outside-toplevel
  except ImportError:
    sys.exit("error: the Triton compiler is not installed (pip install triton, or "
             "pip install -e '.[kernels]'); it compiles the kernels for sm_90 without a GPU.")
  shapes = pallas_compile.config_shapes()
  combos = sorted({(s["kind"], pallas_plan.padded_units(s["units"])) for s in shapes})
  for item in _EXTRA.value:
    kind, units = item.split(":")
    combos.append((kind, pallas_plan.padded_units(int(units))))
  meta = {"target": "sm_90a", "triton": triton.__version__, "host": platform.node(),
          "limits": pallas_plan.LIMITS}
  table = {**meta, "layouts": []}
  if _ONLY.value:
    with open(_TABLE.value) as f:
      table["layouts"] = json.load(f)["layouts"]
    only = {(k, pallas_plan.padded_units(int(u))) for k, u in
            (item.split(":") for item in _ONLY.value)}
    combos = [c for c in combos if c in only]
  for kind, up in combos:
    for op in _OPERANDS.value:
      print(f"{kind} U'={up} {op}:", flush=True)
      table["layouts"] = [e for e in table["layouts"]
                          if (e["kind"], e["padded_units"], e["operand"]) != (kind, up, op)]
      table["layouts"] += compile_layouts(kind, up, op)
      files.write_json(_TABLE.value, table)
  pallas_plan.table.cache_clear()  # the table was rewritten
  rows = shape_report(shapes, _TABLE.value)
  os.makedirs(_OUT.value, exist_ok=True)
  files.write_json(os.path.join(_OUT.value, "sm90.json"), {**meta, "shapes": rows})
  with open(os.path.join(_OUT.value, "sm90.md"), "w") as f:
    f.write(markdown(rows, meta))
  print(markdown(rows, meta))


if __name__ == "__main__":
  app.run(main)
